"""16-bit PNG files written and read with zlib and numpy: the print-quality PNG that Pillow cannot write.

Pillow writes and reads RGB and RGBA PNG at 8 bits per channel only (a 16-bit RGB file is opened as 8-bit
"RGB", its low bytes dropped). This module is the small part of the PNG format (ISO/IEC 15948) that 16-bit
output needs: :func:`encode` writes IHDR (bit depth 16, colour type 2 or 6), an iCCP profile, tEXt/iTXt text
and the IDAT stream; :func:`decode` reads any 16-bit grey+alpha, RGB or RGBA file, with each of the five row
filters, interlaced (Adam7) or not, and checks every chunk's CRC. Nothing here knows about tensors, paths or styletx's
errors: failures raise ValueError with a short reason, which :mod:`styletx.io.image` turns into its own message.
"""

from __future__ import annotations

import struct
import zlib
from dataclasses import dataclass, field
from typing import BinaryIO, Dict, Iterator, Mapping, Optional

import numpy as np

__all__ = ["SIGNATURE", "PngHeader", "Png16", "read_header", "encode", "decode"]

SIGNATURE = b"\x89PNG\r\n\x1a\n"

#: Colour type -> channels (0 grey, 2 RGB, 3 palette, 4 grey+alpha, 6 RGBA).
_CHANNELS = {0: 1, 2: 3, 3: 1, 4: 2, 6: 4}
#: Colour types :func:`decode` reads at 16 bits (grey alone Pillow reads fully itself, as mode I;16).
DECODED_TYPES = (2, 4, 6)
_ROWS_PER_CHUNK = 256  # rows filtered and compressed at a time: bounded memory for large prints
#: Adam7 interlacing: (first column, first row, column step, row step) of each of the seven passes.
_ADAM7 = ((0, 0, 8, 8), (4, 0, 8, 8), (0, 4, 4, 8), (2, 0, 4, 4), (0, 2, 2, 4), (1, 0, 2, 2), (0, 1, 1, 2))


@dataclass(frozen=True)
class PngHeader:
    """The IHDR fields of a PNG file (``interlace``: 0 none, 1 Adam7)."""

    width: int
    height: int
    bit_depth: int
    colour_type: int
    interlace: int

    @property
    def channels(self) -> int:
        return _CHANNELS.get(self.colour_type, 0)


@dataclass
class Png16:
    """A decoded 16-bit file: ``pixels`` (H, W, C) uint16 (C = 2, 3 or 4; the last is alpha when C is 2 or 4),
    the ICC profile bytes (or None), and the tEXt chunks."""

    pixels: np.ndarray
    icc_profile: Optional[bytes] = None
    text: Dict[str, str] = field(default_factory=dict)


def read_header(f: BinaryIO) -> Optional[PngHeader]:
    """The IHDR of the PNG file open in ``f`` (read from its start), or None when it is not a PNG."""
    head = f.read(8 + 8 + 13)
    if len(head) < 29 or head[:8] != SIGNATURE or head[12:16] != b"IHDR":
        return None
    width, height, depth, colour, _, _, interlace = struct.unpack(">IIBBBBB", head[16:29])
    return PngHeader(width, height, depth, colour, interlace)


# ---------------------------------------------------------------------------------------------------- writing


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


def _text_chunk(key: str, value: str) -> bytes:
    """tEXt when the value is Latin-1 (as Pillow writes it), else an uncompressed UTF-8 iTXt."""
    try:
        return _chunk(b"tEXt", key.encode("latin-1") + b"\0" + value.encode("latin-1"))
    except UnicodeEncodeError:
        return _chunk(b"iTXt", key.encode("latin-1") + b"\0\0\0\0\0" + value.encode("utf-8"))


def _up_filtered(rows: np.ndarray, previous: np.ndarray) -> bytes:
    """Rows (n, W*C*2) of big-endian bytes, each with filter type 2 ("Up": the difference from the row above,
    modulo 256), as the IDAT byte stream: one filter byte, then the row. Up undoes in one vectorised sum."""
    above = np.concatenate([previous[None], rows[:-1]])
    diff = (rows.astype(np.int16) - above).astype(np.uint8)
    out = np.empty((rows.shape[0], rows.shape[1] + 1), dtype=np.uint8)
    out[:, 0] = 2
    out[:, 1:] = diff
    return out.tobytes()


def encode(f: BinaryIO, pixels: np.ndarray, *, icc_profile: Optional[bytes] = None,
           text: Optional[Mapping[str, str]] = None, level: int = 6) -> None:
    """Write ``pixels`` ((H, W, 3) or (H, W, 4) uint16: RGB or RGBA, alpha straight) to ``f`` as a 16-bit PNG,
    with ``icc_profile`` in an iCCP chunk and ``text`` (keys of 1 to 79 Latin-1 characters) before the image
    data. Deterministic: the same pixels and text give the same bytes."""
    if pixels.dtype != np.uint16 or pixels.ndim != 3 or pixels.shape[2] not in (3, 4):
        raise ValueError(f"expected (H, W, 3|4) uint16 pixels, got {pixels.dtype} {tuple(pixels.shape)}")
    height, width, channels = pixels.shape
    if not (0 < width < 2**31 and 0 < height < 2**31):
        raise ValueError(f"cannot write a {width}x{height} PNG")
    f.write(SIGNATURE)
    f.write(_chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 16, 2 if channels == 3 else 6, 0, 0, 0)))
    if icc_profile:
        f.write(_chunk(b"iCCP", b"sRGB\0\0" + zlib.compress(icc_profile, 9)))
    for key, value in (text or {}).items():
        f.write(_text_chunk(key, value))
    compressor = zlib.compressobj(level)
    previous = np.zeros(width * channels * 2, dtype=np.uint8)
    pending = b""
    for top in range(0, height, _ROWS_PER_CHUNK):  # big-endian a stripe at a time: no full copy of a large print
        rows = pixels[top : top + _ROWS_PER_CHUNK].astype(">u2").view(np.uint8)
        rows = rows.reshape(rows.shape[0], width * channels * 2)
        pending += compressor.compress(_up_filtered(rows, previous))
        previous = rows[-1].copy()
        if len(pending) >= 1 << 20:  # IDAT chunks of about 1 MiB
            f.write(_chunk(b"IDAT", pending))
            pending = b""
    pending += compressor.flush()
    f.write(_chunk(b"IDAT", pending))
    f.write(_chunk(b"IEND", b""))


# ---------------------------------------------------------------------------------------------------- reading


def _chunks(data: bytes) -> Iterator[tuple]:
    """(type, payload) of each chunk after the signature, CRCs checked; stops after IEND."""
    pos = 8
    while pos + 12 <= len(data):
        (length,) = struct.unpack(">I", data[pos : pos + 4])
        kind = data[pos + 4 : pos + 8]
        end = pos + 12 + length
        if end > len(data):
            raise ValueError(f"truncated {kind.decode('latin-1', 'replace')} chunk")
        payload = data[pos + 8 : pos + 8 + length]
        (crc,) = struct.unpack(">I", data[pos + 8 + length : end])
        if zlib.crc32(kind + payload) & 0xFFFFFFFF != crc:
            raise ValueError(f"CRC error in the {kind.decode('latin-1', 'replace')} chunk")
        yield kind, payload
        if kind == b"IEND":
            return
        pos = end
    raise ValueError("truncated file: no IEND chunk")


def _inflate(data: bytes, size: int) -> bytes:
    """zlib data that must inflate to exactly ``size`` bytes; never more is inflated (no decompression bomb)."""
    d = zlib.decompressobj()
    try:
        out = d.decompress(data, size)
    except zlib.error as e:
        raise ValueError(f"corrupt image data ({e})") from None
    if len(out) < size:
        raise ValueError(f"truncated image data ({len(out)} of {size} bytes)")
    return out


def _paeth(a: np.ndarray, b: np.ndarray, c: np.ndarray) -> np.ndarray:
    pa, pb, pc = np.abs(b - c), np.abs(a - c), np.abs(a + b - 2 * c)
    return np.where((pa <= pb) & (pa <= pc), a, np.where(pb <= pc, b, c))


def _unfilter(raw: np.ndarray, height: int, stride: int, bpp: int) -> np.ndarray:
    """The (height, stride) bytes of the image from the (height, 1 + stride) filtered rows."""
    types = raw[:, 0]
    if types.max(initial=0) > 4:
        raise ValueError(f"unknown row filter type {int(types.max())}")
    filt = raw[:, 1:]
    if not np.isin(types, (3, 4)).any():  # None, Sub and Up: row by row, each row vectorised
        out = np.empty((height, stride), dtype=np.uint8)
        prev = np.zeros(stride, dtype=np.uint8)
        for r in range(height):
            t = types[r]
            if t == 0:
                out[r] = filt[r]
            elif t == 1:
                out[r] = np.cumsum(filt[r].reshape(-1, bpp), axis=0, dtype=np.uint64).astype(np.uint8).ravel()
            else:
                out[r] = filt[r] + prev
            prev = out[r]
        return out
    return _unfilter_wavefront(types, filt, height, stride // bpp, bpp)


def _unfilter_wavefront(types: np.ndarray, filt: np.ndarray, height: int, width: int, bpp: int) -> np.ndarray:
    """Any mix of the five filters. Average and Paeth read the pixel to the left, so a row is sequential;
    but each pixel needs only its left, upper and upper-left neighbours, so all pixels on one anti-diagonal
    (row + column = k) are computed together: height + width - 1 vectorised steps instead of one per pixel.
    In a zero-padded (height + 1, width + 1) pixel grid flattened, an anti-diagonal is a slice of step width."""
    w1 = width + 1
    rec = np.zeros(((height + 1) * w1, bpp), dtype=np.int16)
    fil = np.zeros(((height + 1) * w1, bpp), dtype=np.int16)
    fil.reshape(height + 1, w1, bpp)[1:, 1:] = filt.reshape(height, width, bpp)
    row_type = types.astype(np.int16)
    for k in range(height + width - 1):
        r0 = max(0, k - width + 1)
        n = min(height - 1, k) - r0 + 1
        s = (r0 + 1) * w1 + (k - r0 + 1)
        stop = s + (n - 1) * width + 1
        a = rec[s - 1 : stop - 1 : width]
        b = rec[s - w1 : stop - w1 : width]
        c = rec[s - w1 - 1 : stop - w1 - 1 : width]
        t = row_type[r0 : r0 + n, None]
        pred = np.where(t == 1, a, 0)
        pred = np.where(t == 2, b, pred)
        pred = np.where(t == 3, (a + b) >> 1, pred)
        pred = np.where(t == 4, _paeth(a, b, c), pred)
        rec[s:stop:width] = (fil[s:stop:width] + pred) & 0xFF
    return rec.reshape(height + 1, w1, bpp)[1:, 1:].astype(np.uint8).reshape(height, width * bpp)


def _passes(header: PngHeader) -> list:
    """(x0, y0, dx, dy, width, height) of each non-empty sub-image stored: the whole image, or the Adam7 passes."""
    if not header.interlace:
        return [(0, 0, 1, 1, header.width, header.height)]
    out = []
    for x0, y0, dx, dy in _ADAM7:
        w, h = -(-(header.width - x0) // dx), -(-(header.height - y0) // dy)
        if w > 0 and h > 0:
            out.append((x0, y0, dx, dy, w, h))
    return out


def decode(data: bytes) -> Png16:
    """Decode a whole 16-bit PNG file (bytes) of colour type 2, 4 or 6. A tRNS colour of an RGB file becomes an
    alpha channel. Raises ValueError naming what is wrong."""
    if data[:8] != SIGNATURE:
        raise ValueError("not a PNG file")
    header: Optional[PngHeader] = None
    idat: list = []
    icc: Optional[bytes] = None
    trns: Optional[bytes] = None
    text: Dict[str, str] = {}
    for kind, payload in _chunks(data):
        if kind == b"IHDR":
            if len(payload) != 13:
                raise ValueError("bad IHDR chunk")
            header = PngHeader(*(struct.unpack(">IIBBBBB", payload)[i] for i in (0, 1, 2, 3, 6)))
        elif kind == b"IDAT":
            idat.append(payload)
        elif kind == b"iCCP":
            name_end = payload.find(b"\0")
            if name_end > 0:
                try:
                    icc = zlib.decompress(payload[name_end + 2 :])
                except zlib.error:
                    icc = None  # a broken profile: the picture is still readable
        elif kind == b"tRNS":
            trns = payload
        elif kind == b"tEXt" and b"\0" in payload:
            key, value = payload.split(b"\0", 1)
            text[key.decode("latin-1")] = value.decode("latin-1")
    if header is None:
        raise ValueError("no IHDR chunk")
    if header.bit_depth != 16 or header.colour_type not in DECODED_TYPES:
        raise ValueError(f"bit depth {header.bit_depth}, colour type {header.colour_type}: not a 16-bit colour PNG")
    if header.interlace not in (0, 1):
        raise ValueError(f"unknown interlace method {header.interlace}")
    if header.width == 0 or header.height == 0:
        raise ValueError("empty image")
    channels = header.channels
    bpp = 2 * channels
    passes = _passes(header)
    raw = np.frombuffer(_inflate(b"".join(idat), sum(h * (w * bpp + 1) for *_, w, h in passes)), dtype=np.uint8)
    pixels = np.empty((header.height, header.width, channels), dtype=np.uint16)
    pos = 0
    for x0, y0, dx, dy, w, h in passes:
        size = h * (w * bpp + 1)
        rows = _unfilter(raw[pos : pos + size].reshape(h, w * bpp + 1), h, w * bpp, bpp)
        pixels[y0::dy, x0::dx] = rows.view(">u2").reshape(h, w, channels)
        pos += size
    if trns is not None and header.colour_type == 2 and len(trns) == 6:
        key = np.array(struct.unpack(">HHH", trns), dtype=np.uint16)
        alpha = np.where((pixels == key).all(axis=2), 0, 65535).astype(np.uint16)
        pixels = np.concatenate([pixels, alpha[:, :, None]], axis=2)
    return Png16(pixels=pixels, icc_profile=icc, text=text)
