"""Image files in and out: anything image-like in, float32 (1, 3, H, W) sRGB tensors in [0, 1] out, and back to files.

Loading applies EXIF orientation, converts every Pillow mode (palette, grayscale, 16-bit, CMYK, alpha) to RGB,
converts an embedded ICC profile to sRGB and refuses decompression bombs before decoding; 16-bit RGB(A) PNG and
TIFF files, which Pillow reads at 8 bits, are read at full precision (:mod:`styletx.io.png16`, tifffile).
Saving is atomic (temporary file in the same folder, then a rename), refuses to overwrite unless asked, writes 8
or 16 bits per channel (16: PNG and TIFF), embeds the sRGB ICC profile, and stores a small str -> str metadata
dict that :func:`read_metadata` reads back.
"""

from __future__ import annotations

import functools
import io
import json
import os
import sys
import tempfile
import warnings
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Union

import numpy as np
import tifffile
import torch
from PIL import ExifTags, Image, ImageCms, ImageOps, PngImagePlugin, UnidentifiedImageError

from . import png16
from ..atomic import atomic_path, one_line as _one_line, write_or_rescue
from ..errors import ImageError, InputError, StyletxWarning
from ..options import DEFAULT_BIT_DEPTH, DEFAULT_MAX_PIXELS, check_bit_depth
from ..paths import check_writable_folder, file_problem
from ..tensors import resize_to, to_pil

__all__ = [
    "MAX_PIXELS",
    "SAVE_FORMATS",
    "DEEP_FORMATS",
    "ImageSource",
    "LoadedImage",
    "load_image",
    "to_tensor",
    "to_pil",
    "save_image",
    "read_metadata",
    "srgb_icc_profile",
]

#: Largest image (width * height) :func:`load_image` decodes unless told otherwise: 100 megapixels.
MAX_PIXELS: int = DEFAULT_MAX_PIXELS

#: A float array or tensor whose values reach beyond [-0.5, 1.5] is refused: it is almost surely 0..255 data
#: (or normalised with a mean and deviation), which clamping would turn into a white or black picture.
FLOAT_RANGE_TOLERANCE = 0.5

#: File extension -> Pillow format name, for :func:`save_image`.
SAVE_FORMATS: dict[str, str] = {
    ".png": "PNG",
    ".jpg": "JPEG",
    ".jpeg": "JPEG",
    ".tif": "TIFF",
    ".tiff": "TIFF",
    ".webp": "WEBP",
}

#: Formats :func:`save_image` writes at 16 bits per channel (``bit_depth=16``).
DEEP_FORMATS = ("PNG", "TIFF")
_ICC_TAG = 34675  # TIFF tag of the ICC profile

# Raster formats load_image will decode. Deliberately excludes EPS (runs Ghostscript), WMF and other exotica.
_READ_FORMATS = (
    "PNG", "JPEG", "TIFF", "WEBP", "BMP", "DIB", "GIF", "PPM", "TGA", "AVIF",
    "JPEG2000", "ICO", "PCX", "SGI", "QOI", "PSD", "DDS",
)

_JPEG_QUALITY = 95
_WEBP_QUALITY = 95
_META_KEY = "styletx"  # the JSON object {"styletx": {...}} stored in EXIF UserComment / TIFF ImageDescription
_EXIF_ASCII = b"ASCII\x00\x00\x00"

ImageSource = Union[str, os.PathLike, Image.Image, np.ndarray, torch.Tensor]


@dataclass(frozen=True, eq=False)
class LoadedImage:
    """A loaded picture.

    ``tensor``: (1, 3, H, W) float32 in [0, 1], sRGB (alpha composited on the background unless kept aside);
    ``alpha``: (1, 1, H, W) float32 in [0, 1], or None (None unless ``keep_alpha`` and the source had alpha);
    ``name``: the file as given, or "<PIL image>", "<array>", "<tensor>", for messages;
    ``path``: the file, or None when the source was not a file.
    """

    tensor: torch.Tensor
    alpha: torch.Tensor | None
    name: str
    path: Path | None = None

    @property
    def size(self) -> tuple[int, int]:
        """(width, height) in pixels."""
        return int(self.tensor.shape[-1]), int(self.tensor.shape[-2])

    def to_pil(self) -> Image.Image:
        """The picture as a PIL image: RGBA when alpha was kept aside, else RGB."""
        pil = to_pil(self.tensor)
        if self.alpha is not None:
            pil.putalpha(_alpha_to_pil(self.alpha, pil.size))
        return pil


# --------------------------------------------------------------------------------------------------- loading


def load_image(
    source: ImageSource | LoadedImage,
    *,
    keep_alpha: bool = False,
    background: tuple[float, float, float] = (1.0, 1.0, 1.0),
    max_pixels: int = MAX_PIXELS,
) -> LoadedImage:
    """Load a file path, PIL image, numpy array or tensor as a (1, 3, H, W) float32 sRGB tensor in [0, 1].

    Arrays are (H, W) or (H, W, C) with C in 1..4 (gray, gray+alpha, RGB, RGBA), uint8 (/255), uint16 (/65535),
    bool or float in [0, 1]. Tensors are (C, H, W) or (1, C, H, W), float in [0, 1] or uint8; they stay on
    their device. Alpha is composited on ``background`` (RGB in [0, 1]) unless ``keep_alpha``, in which case the
    colour is left straight (not composited) and the alpha comes back in ``.alpha``. Images larger than
    ``max_pixels`` (width * height) are refused before decoding. Raises ImageError naming the source.
    """
    bg = _background(background)
    if isinstance(source, LoadedImage):
        rgb, alpha, name, path = source.tensor, source.alpha, source.name, source.path
        _check_pixels(name, rgb.shape[-1], rgb.shape[-2], max_pixels)
    elif isinstance(source, (str, os.PathLike)):
        path = Path(source)
        name = str(source)
        rgb, alpha = _load_file(path, name, max_pixels)
    elif isinstance(source, Image.Image):
        path, name = None, "<PIL image>"
        _check_pixels(name, *source.size, max_pixels)
        rgb, alpha = _from_pil(source, name)
    elif isinstance(source, np.ndarray):
        path, name = None, "<array>"
        rgb, alpha = _from_array(source, name, max_pixels)
    elif isinstance(source, torch.Tensor):
        path, name = None, "<tensor>"
        rgb, alpha = _from_tensor(source, name, max_pixels)
    else:
        raise ImageError(
            f"cannot load an image from {type(source).__name__}; "
            "expected a path, PIL image, numpy array or torch tensor"
        )

    if alpha is not None and not keep_alpha:
        bg = bg.to(device=rgb.device)
        rgb = rgb * alpha + bg * (1.0 - alpha)
        alpha = None
    rgb = rgb.clamp(0.0, 1.0).contiguous()
    return LoadedImage(tensor=rgb, alpha=alpha, name=name, path=path)


def to_tensor(img: ImageSource | LoadedImage) -> torch.Tensor:
    """Any source :func:`load_image` accepts -> (1, 3, H, W) float32 in [0, 1] (alpha composited on white)."""
    return load_image(img).tensor


def _load_file(path: Path, name: str, max_pixels: int) -> tuple[torch.Tensor, torch.Tensor | None]:
    im = _open(path, name)
    with im:
        _check_pixels(name, *im.size, max_pixels)
        deep = _read_deep(path, im, name)
        if deep is not None:
            return deep
        return _from_pil(im, name)


def _read_deep(path: Path, im: Image.Image, name: str) -> tuple[torch.Tensor, torch.Tensor | None] | None:
    """A 16-bit RGB(A) PNG or TIFF read at full precision, or None for Pillow to read (any other file; a 16-bit
    file Pillow must read at 8 bits, with a warning: a TIFF tifffile cannot decode, an ICC profile other than
    sRGB, which only an 8-bit conversion applies)."""
    if im.format == "PNG":
        with open(path, "rb") as f:
            header = png16.read_header(f)
        if header is None or header.bit_depth != 16 or header.colour_type not in png16.DECODED_TYPES:
            return None
        if not _icc_allows_16_bits(im, name):
            return None
        try:
            pixels = png16.decode(path.read_bytes()).pixels
        except ValueError as e:
            raise ImageError(f"{name}: cannot decode image, the file may be truncated or corrupt ({e})") from e
    elif im.format == "TIFF" and _is_deep_tiff(im):
        if not _icc_allows_16_bits(im, name):
            return None
        pixels = _read_tiff16(path, name)
        if pixels is None:
            return None
    else:
        return None
    pixels = _oriented(pixels, _orientation(im, name))
    t = torch.from_numpy(np.ascontiguousarray(pixels.transpose(2, 0, 1)).astype(np.float32) / 65535.0)[None]
    return _split_channels(t)


def _icc_allows_16_bits(im: Image.Image, name: str) -> bool:
    """No profile or an sRGB one: the 16-bit values are read as they are. Another profile is applied by the
    8-bit path (LittleCMS through Pillow converts 8-bit images only), with a warning."""
    icc = im.info.get("icc_profile")
    if not icc or _is_srgb(icc):
        return True
    _eight_bits(name, "16-bit image with a non-sRGB ICC profile, converted to sRGB")
    return False


def _eight_bits(name: str, why: str) -> None:
    warnings.warn(f"{name}: {why}: read at 8 bits per channel", StyletxWarning, stacklevel=5)
    return None


def _is_deep_tiff(im: Image.Image) -> bool:
    """Whether a TIFF Pillow opened is 16-bit unsigned RGB or RGBA, which Pillow decodes at 8 bits."""
    tags = getattr(im, "tag_v2", {})
    bits = tags.get(258)
    bits = tuple(bits) if isinstance(bits, (tuple, list)) else (bits,)
    return (tags.get(262) == 2 and tags.get(277) in (3, 4) and set(bits) == {16}
            and tags.get(339, 1) in (1, (1,) * len(bits)))


def _read_tiff16(path: Path, name: str) -> np.ndarray | None:
    """The first page of a 16-bit RGB(A) TIFF as (H, W, 3|4) uint16 (straight alpha), or None (with a warning)
    when tifffile cannot decode it (a compression it lacks a codec for), for Pillow to read at 8 bits."""
    try:
        with tifffile.TiffFile(path) as tf:
            page = tf.pages[0]
            arr = page.asarray()
            samples = int(page.samplesperpixel)
            extra = tuple(int(e) for e in (page.extrasamples or ()))
            if int(page.planarconfig) == 2 and arr.ndim == 3 and arr.shape[0] == samples:
                arr = np.moveaxis(arr, 0, -1)
    except Exception as e:  # noqa: BLE001 - a missing codec or a damaged file: Pillow reads it or says why
        return _eight_bits(name, f"16-bit TIFF that tifffile cannot decode ({_one_line(e)})")
    if arr.ndim != 3 or arr.shape[2] != samples or arr.dtype != np.uint16:
        return _eight_bits(name, f"16-bit TIFF of shape {tuple(arr.shape)}")
    if samples == 4 and extra[:1] not in ((1,), (2,)):
        return arr[..., :3]  # an unspecified fourth sample is not transparency (Pillow: RGBX)
    if samples == 4 and extra[0] == 1:  # associated (premultiplied) alpha -> straight
        f = arr.astype(np.float64)
        a = f[..., 3:]
        colour = np.where(a > 0, f[..., :3] * 65535.0 / np.maximum(a, 1.0), 0.0)
        arr = np.concatenate([colour.clip(0, 65535).round(), a], axis=2).astype(np.uint16)
    return arr


def _orientation(im: Image.Image, name: str) -> int:
    try:
        return int(im.getexif().get(ExifTags.Base.Orientation, 1) or 1)
    except Exception as e:  # noqa: BLE001 - malformed EXIF must not make the picture unreadable
        warnings.warn(f"{name}: EXIF orientation could not be read ({_one_line(e)}); using the image as stored",
                      StyletxWarning, stacklevel=5)
        return 1


def _oriented(a: np.ndarray, orientation: int) -> np.ndarray:
    """(H, W, C) turned upright for an EXIF orientation (1..8), as :func:`PIL.ImageOps.exif_transpose` does."""
    if orientation == 2:
        return a[:, ::-1]
    if orientation == 3:
        return a[::-1, ::-1]
    if orientation == 4:
        return a[::-1]
    if orientation == 5:
        return a.transpose(1, 0, 2)
    if orientation == 6:
        return np.rot90(a, -1)
    if orientation == 7:
        return a[::-1, ::-1].transpose(1, 0, 2)
    if orientation == 8:
        return np.rot90(a, 1)
    return a


def _open(path: Path, name: str) -> Image.Image:
    """Open (read the header only), turning every failure into a one-line ImageError naming the file."""
    problem = file_problem(path)  # a FIFO or a device would block or never end: refused before opening
    if problem is not None:
        raise ImageError(f"{name}: {'is a folder, not an image file' if problem.startswith('is a folder') else problem}")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)  # we apply our own limit
            return Image.open(path, formats=_READ_FORMATS)
    except Image.DecompressionBombError as e:
        raise ImageError(f"{name}: refused as a possible decompression bomb ({e})") from e
    except UnidentifiedImageError as e:
        raise ImageError(f"{name}: not a readable image (unknown, unsupported or corrupt format)") from e
    except PermissionError as e:
        raise ImageError(f"{name}: permission denied") from e
    except Exception as e:  # noqa: BLE001 - any decoder failure is an unreadable file
        raise ImageError(f"{name}: cannot read image ({_one_line(e)})") from e


def _check_pixels(name: str, width: int, height: int, max_pixels: int) -> None:
    pixels = int(width) * int(height)
    if pixels > max_pixels:
        raise ImageError(
            f"{name}: {width}x{height} = {pixels:,} pixels exceeds the limit of {max_pixels:,} "
            "(possible decompression bomb); raise the limit with --max-pixels (max_pixels=) to allow it"
        )


@contextmanager
def _c_stderr_captured(active: bool) -> Iterator[list[str]]:
    """While active, what C code writes to file descriptor 2 goes into the yielded list (one entry, the text)
    instead of the terminal. libtiff prints its decoder messages there itself ("ZIPDecode: Decoding error at
    scanline 0 ..."), outside Python's warnings; they become part of styletx's own message instead. The
    descriptor is restored before returning; only the TIFF decode (milliseconds) runs under it."""
    captured: list[str] = []
    if not active:
        yield captured
        return
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as sink:
        os.dup2(sink.fileno(), 2)
        try:
            yield captured
        finally:
            os.dup2(saved, 2)
            os.close(saved)
            sink.seek(0)
            captured.append(sink.read().decode("utf-8", "replace").strip())


def _libtiff_said(captured: list[str]) -> str:
    """What :func:`_c_stderr_captured` caught, on one line of at most 200 characters ("" for nothing)."""
    return " ".join(" ".join(captured).split())[:200]


def _from_pil(im: Image.Image, name: str) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Decode a PIL image: EXIF orientation, mode and ICC conversion -> rgb (1,3,H,W), alpha (1,1,H,W) | None."""
    c_text: list[str] = []
    try:
        with warnings.catch_warnings(), _c_stderr_captured(im.format == "TIFF") as c_text:
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            im.load()
    except Image.DecompressionBombError as e:
        raise ImageError(f"{name}: refused as a possible decompression bomb ({e})") from e
    except Exception as e:  # noqa: BLE001 - truncated / corrupt data
        said = _libtiff_said(c_text)
        raise ImageError(f"{name}: cannot decode image, the file may be truncated or corrupt "
                         f"({_one_line(e)}{'; libtiff: ' + said if said else ''})") from e
    said = _libtiff_said(c_text)
    if said:
        warnings.warn(f"{name}: libtiff: {said}", StyletxWarning, stacklevel=3)

    icc = im.info.get("icc_profile")
    try:
        im = ImageOps.exif_transpose(im)
    except Exception as e:  # noqa: BLE001 - malformed EXIF must not make the picture unreadable
        warnings.warn(f"{name}: EXIF orientation could not be read ({_one_line(e)}); using the image as stored",
                      StyletxWarning, stacklevel=3)

    im = _normalise_mode(im)
    alpha = None
    if im.mode in ("RGBA", "LA"):
        alpha = np.asarray(im.getchannel("A"), dtype=np.float32) / 255.0
        im = im.convert("RGB" if im.mode == "RGBA" else "L")
    if (icc and not _is_builtin_srgb(icc)) or im.mode == "LAB":
        im = _to_srgb(im, icc, name)
    rgb = _pil_colour_to_array(im, name)
    rgb_t = torch.from_numpy(np.ascontiguousarray(rgb.transpose(2, 0, 1)))[None]
    alpha_t = None if alpha is None else torch.from_numpy(np.ascontiguousarray(alpha))[None, None]
    return rgb_t, alpha_t


def _normalise_mode(im: Image.Image) -> Image.Image:
    """Palette, premultiplied, 1-bit, RGBX and tRNS-transparency modes -> one of RGB(A), L(A), I;16*, I, F, CMYK..."""
    mode = im.mode
    has_trns = "transparency" in im.info
    if mode == "PA" or (mode == "P" and has_trns):
        return im.convert("RGBA")
    if mode == "P":
        return im.convert("RGB")
    if mode == "RGBa":
        return im.convert("RGBA")
    if mode == "La":
        return im.convert("LA")
    if mode == "1":
        return im.convert("L")
    if mode == "RGBX":
        return im.convert("RGB")
    if mode in ("RGB", "L") and has_trns:
        return im.convert("RGBA" if mode == "RGB" else "LA")
    return im


def _to_srgb(im: Image.Image, icc: bytes | None, name: str) -> Image.Image:
    """Convert with the embedded ICC profile (or the Lab profile for mode LAB) to sRGB, mode RGB."""
    if im.mode not in ("RGB", "L", "CMYK", "LAB"):
        warnings.warn(f"{name}: ICC profile ignored for {im.mode} images; values read as sRGB",
                      StyletxWarning, stacklevel=4)
        return im
    try:
        if icc:
            src = ImageCms.ImageCmsProfile(io.BytesIO(icc))
        else:
            src = ImageCms.ImageCmsProfile(ImageCms.createProfile("LAB"))
        return ImageCms.profileToProfile(im, src, _srgb_profile(), outputMode="RGB")
    except Exception as e:  # noqa: BLE001 - a broken profile must not make the picture unreadable
        warnings.warn(f"{name}: ICC profile could not be applied ({_one_line(e)}); colours read as sRGB",
                      StyletxWarning, stacklevel=4)
        return im


@functools.lru_cache(maxsize=1)
def _srgb_profile() -> ImageCms.ImageCmsProfile:
    return ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB"))


@functools.lru_cache(maxsize=1)
def srgb_icc_profile() -> bytes:
    """The sRGB ICC profile every output embeds: LittleCMS's built-in sRGB (``ImageCms.createProfile("sRGB")``)
    with the creation time in its header (bytes 24..35) set to zero, so that the same picture always gives the
    same file. (Its profile ID, bytes 84..99, is zero: not computed, which ICC v4 allows.)"""
    data = bytearray(_srgb_profile().tobytes())
    data[24:36] = bytes(12)
    return bytes(data)


def _is_builtin_srgb(icc: bytes) -> bool:
    """Whether ``icc`` is :func:`srgb_icc_profile` (whatever its creation time): no conversion is needed."""
    ours = srgb_icc_profile()
    return len(icc) == len(ours) and icc[:24] == ours[:24] and icc[36:] == ours[36:]


def _is_srgb(icc: bytes) -> bool:
    """Whether ``icc`` is an sRGB profile (ours, or one whose description says sRGB, such as "sRGB
    IEC61966-2.1"): 16-bit data in it is read as it is, at full precision."""
    if _is_builtin_srgb(icc):
        return True
    try:
        desc = ImageCms.getProfileDescription(ImageCms.ImageCmsProfile(io.BytesIO(icc)))
    except Exception:  # noqa: BLE001 - a broken profile: let the 8-bit path warn about it
        return False
    return desc.strip().lower().startswith("srgb")


def _pil_colour_to_array(im: Image.Image, name: str) -> np.ndarray:
    """A PIL image without alpha -> (H, W, 3) float32 in [0, 1]; 16-bit data rescaled by 65535, never clipped."""
    mode = im.mode
    if mode == "L":
        gray = np.asarray(im, dtype=np.float32) / 255.0
    elif mode.startswith("I;16"):
        gray = np.asarray(im).astype(np.float32) / 65535.0
    elif mode == "I":
        values = np.asarray(im).astype(np.float64)
        lo, hi = (float(values.min()), float(values.max())) if values.size else (0.0, 0.0)
        if lo >= 0.0 and hi <= 65535.0:
            gray = (values / 65535.0).astype(np.float32)
        else:  # true 32-bit integer data: stretch its range rather than clip it
            gray = ((values - lo) / max(hi - lo, 1.0)).astype(np.float32)
    elif mode == "F":
        gray = np.nan_to_num(np.asarray(im, dtype=np.float32)).clip(0.0, 1.0)
    else:
        if mode != "RGB":
            try:
                im = im.convert("RGB")
            except Exception as e:  # noqa: BLE001
                raise ImageError(f"{name}: cannot convert {mode} image to RGB ({_one_line(e)})") from e
        return np.asarray(im, dtype=np.float32) / 255.0
    return np.repeat(gray[:, :, None], 3, axis=2)


def _from_array(arr: np.ndarray, name: str, max_pixels: int) -> tuple[torch.Tensor, torch.Tensor | None]:
    a = np.asarray(arr)
    if a.ndim == 2:
        a = a[:, :, None]
    if a.ndim != 3 or a.shape[2] not in (1, 2, 3, 4) or a.shape[0] == 0 or a.shape[1] == 0:
        raise ImageError(f"{name}: expected shape (H, W) or (H, W, C) with C in 1..4, got {tuple(arr.shape)}")
    _check_pixels(name, a.shape[1], a.shape[0], max_pixels)
    if a.dtype == np.uint8:
        f = a.astype(np.float32) / 255.0
    elif a.dtype == np.uint16:
        f = a.astype(np.float32) / 65535.0
    elif a.dtype == np.bool_:
        f = a.astype(np.float32)
    elif np.issubdtype(a.dtype, np.floating):
        f = a.astype(np.float32)
        _check_float_values(name, torch.from_numpy(f))
        f = f.clip(0.0, 1.0)
    else:
        raise ImageError(f"{name}: unsupported dtype {a.dtype}; use uint8, uint16 or float in [0, 1]")
    t = torch.from_numpy(np.ascontiguousarray(f.transpose(2, 0, 1)))[None]
    return _split_channels(t)


def _from_tensor(t: torch.Tensor, name: str, max_pixels: int) -> tuple[torch.Tensor, torch.Tensor | None]:
    x = t.detach()
    if x.ndim == 4:
        if x.shape[0] != 1:
            raise ImageError(f"{name}: expected one image (1, 3, H, W), got a batch of shape {tuple(t.shape)}")
        x = x[0]
    if x.ndim == 2:
        x = x[None]
    if x.ndim != 3 or x.shape[0] not in (1, 3, 4) or x.shape[1] == 0 or x.shape[2] == 0:
        raise ImageError(f"{name}: expected shape (3, H, W) or (1, 3, H, W), got {tuple(t.shape)}")
    _check_pixels(name, x.shape[2], x.shape[1], max_pixels)
    if x.dtype == torch.uint8:
        x = x.float() / 255.0
    elif x.dtype == torch.bool:
        x = x.float()
    elif x.dtype.is_floating_point:
        x = x.float()
        _check_float_values(name, x)
        x = x.clamp(0.0, 1.0)
    else:
        raise ImageError(f"{name}: unsupported dtype {x.dtype}; use float in [0, 1] or uint8")
    return _split_channels(x[None])


def _check_float_values(name: str, x: torch.Tensor) -> None:
    """Refuse float pixel data that is not finite, or not in [0, 1] give or take FLOAT_RANGE_TOLERANCE (values
    just outside, such as a bicubic overshoot, are clamped)."""
    if not bool(torch.isfinite(x).all()):
        raise ImageError(f"{name}: contains NaN or infinite values; expected finite floats in [0, 1]")
    if x.numel() == 0:
        return
    lo, hi = float(x.min()), float(x.max())
    if lo < -FLOAT_RANGE_TOLERANCE or hi > 1.0 + FLOAT_RANGE_TOLERANCE:
        hint = "; for 0..255 data divide by 255 or pass uint8" if hi > 1.0 + FLOAT_RANGE_TOLERANCE else ""
        raise ImageError(f"{name}: float values in [{lo:.4g}, {hi:.4g}], expected [0, 1]{hint}")


def _split_channels(t: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
    """(1, C, H, W) with C in 1..4 (gray, gray+alpha, RGB, RGBA) -> rgb (1, 3, H, W), alpha (1, 1, H, W) | None."""
    c = t.shape[1]
    colour, alpha = (t[:, :-1], t[:, -1:]) if c in (2, 4) else (t, None)
    if colour.shape[1] == 1:
        colour = colour.expand(-1, 3, -1, -1)
    return colour.contiguous(), None if alpha is None else alpha.contiguous()


def _background(background: tuple[float, float, float]) -> torch.Tensor:
    try:
        values = [float(v) for v in background]
    except (TypeError, ValueError):
        values = []
    if len(values) != 3 or not all(0.0 <= v <= 1.0 for v in values):
        raise InputError(f"background: expected three floats in [0, 1] (R, G, B), got {background!r}")
    return torch.tensor(values, dtype=torch.float32).view(1, 3, 1, 1)


# ---------------------------------------------------------------------------------------------------- saving


def save_image(
    image: Image.Image | torch.Tensor | LoadedImage,
    path: str | os.PathLike,
    *,
    overwrite: bool = False,
    metadata: Mapping[str, str] | None = None,
    alpha: torch.Tensor | None = None,
    rescue: bool = False,
    bit_depth: int = DEFAULT_BIT_DEPTH,
) -> Path:
    """Write ``image`` ((1, 3, H, W) / (3, H, W) tensor in [0, 1], PIL image or LoadedImage) to ``path``; return it.

    Format by extension: .png, .jpg/.jpeg (quality 95, no chroma subsampling), .tif/.tiff (deflate), .webp
    (quality 95). ``bit_depth``: 8 bits per channel, or 16 (PNG and TIFF only, refused for JPEG and WebP before
    anything is written) for print: a float tensor keeps its precision (65535 levels). Every file embeds the
    sRGB ICC profile (:func:`srgb_icc_profile`). ``alpha`` ((1, 1, H, W) or (H, W) in [0, 1], resized to the
    image if needed) is put back for PNG/TIFF/WebP; JPEG drops it with a warning. ``metadata`` (str -> str, keys 1..79 Latin-1 characters) goes
    into PNG text chunks, EXIF UserComment (JPEG, WebP) or the TIFF ImageDescription, as read by
    :func:`read_metadata`. The write is atomic: a temporary file in the same folder, then a rename; nothing is
    left behind on failure. An existing file is never replaced unless ``overwrite``. An image with non-finite
    values (NaN, inf) is refused, never written as black. ``rescue``: when the write fails while writing (disk
    full), keep the picture in :func:`styletx.atomic.rescue_dir` and say where in the error.
    """
    path = check_output_path(path, overwrite=overwrite, probe=False, bit_depth=bit_depth)
    name = str(path)
    fmt = _save_format(path)
    meta = _check_metadata(metadata)
    _check_finite(image, name)
    if bit_depth == 16:
        pixels = _output_array16(image, alpha, name)

        def write(tmp: Path) -> None:
            _write16(tmp, fmt, pixels, meta)
    else:
        pil = _output_pil(image, alpha, fmt, name)
        params = _save_params(fmt, meta)

        def write(tmp: Path) -> None:
            with open(tmp, "wb") as f:
                pil.save(f, format=fmt, **params)

    try:
        if rescue:
            write_or_rescue(path, write, overwrite=overwrite)
        else:
            from_atomic_path(path, write, overwrite)
    except ImageError:
        raise
    except InputError as e:  # the writer's one-line message (folder, clobbering, disk full), as an image error
        raise ImageError(str(e)) from None
    except ValueError as e:
        raise ImageError(f"{name}: cannot write image ({_one_line(e)})") from e
    return path


def from_atomic_path(path: Path, write: Callable[[Path], None], overwrite: bool) -> None:
    """``write(temporary path)`` through the atomic writer (no rescue)."""
    with atomic_path(path, overwrite=overwrite) as tmp:
        write(tmp)


def _check_finite(image: object, name: str) -> None:
    tensor = image.tensor if isinstance(image, LoadedImage) else image
    if isinstance(tensor, torch.Tensor) and tensor.is_floating_point() and not bool(torch.isfinite(tensor).all()):
        raise ImageError(f"{name}: not written: the image has NaN or infinite values")


def check_output_path(path: str | os.PathLike, *, overwrite: bool = False, probe: bool = True,
                      bit_depth: int = DEFAULT_BIT_DEPTH) -> Path:
    """Check that an image can be written to ``path`` (not a folder, known extension, a format that stores
    ``bit_depth`` bits per channel, folder exists and is writable, no clobbering); return it. ``probe``: prove
    the folder writable by creating and removing a temporary file in it.

    Called before long runs so that a bad output path fails at once, not after the work.
    """
    path = Path(path)
    name = str(path)
    if path.is_dir():
        raise ImageError(f"{name}: is a folder; give a file name such as {str(path / 'out.png')!r}")
    fmt = _save_format(path)
    check_bit_depth(bit_depth)
    if bit_depth == 16 and fmt not in DEEP_FORMATS:
        raise ImageError(f"{name}: --bit-depth 16 (bit_depth=16) needs a .png or .tif output; {fmt} stores "
                         "8 bits per channel")
    folder = path.parent
    if not folder.is_dir():
        raise ImageError(f"{name}: output folder {str(folder)!r} does not exist")
    if not overwrite and os.path.lexists(path):
        raise ImageError(f"{name}: exists; use --overwrite (overwrite=True) to replace it")
    if probe:
        try:
            check_writable_folder(folder, name)
        except InputError as e:
            raise ImageError(str(e)) from None
    return path


def _save_format(path: Path) -> str:
    fmt = SAVE_FORMATS.get(path.suffix.lower())
    if fmt is None:
        supported = ", ".join(SAVE_FORMATS)
        raise ImageError(f"{path}: unsupported extension {path.suffix or '(none)'!r}; supported: {supported}")
    return fmt


def _check_metadata(metadata: Mapping[str, str] | None) -> dict[str, str]:
    if metadata is None:
        return {}
    if not isinstance(metadata, Mapping):
        raise InputError(f"metadata: expected a mapping of str -> str, got {type(metadata).__name__}")
    out: dict[str, str] = {}
    for key, value in metadata.items():
        ok = isinstance(key, str) and 1 <= len(key) <= 79 and key.isprintable()
        if ok:
            try:
                key.encode("latin-1")
            except UnicodeEncodeError:
                ok = False
        if not ok:
            raise InputError(f"metadata: key {key!r} must be a printable Latin-1 string of 1 to 79 characters")
        out[key] = value if isinstance(value, str) else str(value)
    return out


def _output_pil(image: Image.Image | torch.Tensor | LoadedImage, alpha: torch.Tensor | None,
                fmt: str, name: str) -> Image.Image:
    """The picture to write: RGB, or RGBA when there is alpha and the format keeps it."""
    if isinstance(image, LoadedImage):
        if alpha is None:
            alpha = image.alpha
        pil = to_pil(image.tensor)
    elif isinstance(image, torch.Tensor):
        pil = to_pil(image)
    elif isinstance(image, Image.Image):
        pil = image
        icc = pil.info.get("icc_profile")
        # palette, 16-bit, CMYK..., or colours in another profile: converted the way load_image reads them, so
        # that the values match the sRGB profile the file gets
        if pil.mode not in ("RGB", "RGBA") or (icc and not _is_builtin_srgb(icc)):
            loaded = load_image(pil, keep_alpha=True, max_pixels=pil.width * pil.height)
            pil = loaded.to_pil()
    else:
        raise ImageError(f"{name}: cannot save a {type(image).__name__}; expected a PIL image or a tensor")

    if alpha is not None:
        pil = pil.convert("RGB") if pil.mode != "RGB" else pil.copy()
        pil.putalpha(_alpha_to_pil(alpha, pil.size, name))
    if pil.mode == "RGBA" and fmt == "JPEG":
        warnings.warn(f"{name}: JPEG has no alpha channel; transparency dropped", StyletxWarning, stacklevel=3)
        pil = pil.convert("RGB")
    return pil


def _alpha_to_pil(alpha: torch.Tensor, size: tuple[int, int], name: str = "alpha") -> Image.Image:
    """(1, 1, H, W), (1, H, W) or (H, W) in [0, 1] -> PIL "L" image of ``size`` (W, H), resized if needed."""
    a8 = _alpha_plane(alpha, size, name).mul(255.0).round().to(torch.uint8).numpy()
    return Image.fromarray(np.ascontiguousarray(a8))


def _alpha_plane(alpha: torch.Tensor, size: tuple[int, int], name: str) -> torch.Tensor:
    """(1, 1, H, W), (1, H, W) or (H, W) in [0, 1] -> (H, W) float32 on the CPU of ``size`` (W, H), in [0, 1]."""
    a = alpha.detach() if isinstance(alpha, torch.Tensor) else torch.as_tensor(np.asarray(alpha))
    if a.ndim == 2:
        a = a[None, None]
    elif a.ndim == 3:
        a = a[None]
    if a.ndim != 4 or a.shape[0] != 1 or a.shape[1] != 1:
        raise ImageError(f"{name}: alpha must have shape (1, 1, H, W) or (H, W), got {tuple(alpha.shape)}")
    a = a.to("cpu", torch.float32)
    width, height = size
    if tuple(a.shape[-2:]) != (height, width):
        a = resize_to(a, (height, width), mode="bilinear")
    return a[0, 0].nan_to_num(0.0).clamp(0.0, 1.0)


def _to_uint16(x: torch.Tensor) -> np.ndarray:
    """Floats in [0, 1] (clamped, NaN -> 0) -> uint16 levels 0..65535, rounded to the nearest."""
    levels = x.to("cpu", torch.float32).nan_to_num(0.0).clamp(0.0, 1.0).mul(65535.0).round().to(torch.int32)
    return levels.numpy().astype(np.uint16)


def _output_array16(image: Image.Image | torch.Tensor | LoadedImage, alpha: torch.Tensor | None,
                    name: str) -> np.ndarray:
    """The picture to write at 16 bits: (H, W, 3) uint16, or (H, W, 4) with straight alpha."""
    if isinstance(image, Image.Image):  # 8-bit (x 257, exact), 16-bit grey, palette...: as load_image reads it
        image = load_image(image, keep_alpha=True, max_pixels=image.width * image.height)
    if isinstance(image, LoadedImage):
        if alpha is None:
            alpha = image.alpha
        image = image.tensor
    if not isinstance(image, torch.Tensor):
        raise ImageError(f"{name}: cannot save a {type(image).__name__}; expected a PIL image or a tensor")
    x = image.detach()
    if x.ndim == 4 and x.shape[0] == 1:
        x = x[0]
    if x.ndim != 3 or x.shape[0] not in (1, 3):
        raise ImageError(f"{name}: expected an image of shape (1, 3, H, W) or (3, H, W), got {tuple(image.shape)}")
    if x.dtype == torch.uint8:
        x = x.float() / 255.0
    elif not x.is_floating_point():
        raise ImageError(f"{name}: unsupported dtype {x.dtype}; use float in [0, 1] or uint8")
    colour = _to_uint16(x.expand(3, -1, -1).permute(1, 2, 0))
    if alpha is None:
        return np.ascontiguousarray(colour)
    plane = _to_uint16(_alpha_plane(alpha, (colour.shape[1], colour.shape[0]), name))
    return np.ascontiguousarray(np.concatenate([colour, plane[:, :, None]], axis=2))


def _write16(tmp: Path, fmt: str, pixels: np.ndarray, meta: dict[str, str]) -> None:
    """Write (H, W, 3|4) uint16 ``pixels`` to ``tmp``: PNG with our encoder (metadata in tEXt chunks, as the
    8-bit path), TIFF with tifffile (deflate with a horizontal predictor, metadata in ImageDescription); both
    with the sRGB ICC profile."""
    icc = srgb_icc_profile()
    if fmt == "PNG":
        with open(tmp, "wb") as f:
            png16.encode(f, pixels, icc_profile=icc, text=meta)
        return
    tifffile.imwrite(tmp, pixels, photometric="rgb", compression="zlib", predictor=True, software=False,
                     metadata=None, description=_payload(meta),
                     extrasamples=["unassalpha"] if pixels.shape[2] == 4 else None,
                     extratags=[(_ICC_TAG, "B", len(icc), icc, True)])


def _payload(meta: dict[str, str]) -> str | None:
    """The metadata as the JSON text stored in EXIF UserComment and the TIFF ImageDescription (None: none)."""
    return json.dumps({_META_KEY: meta}, ensure_ascii=True, sort_keys=True) if meta else None


def _save_params(fmt: str, meta: dict[str, str]) -> dict:
    """Pillow's save() keywords for ``fmt``: quality, compression, the metadata and the sRGB ICC profile."""
    params = _format_params(fmt, meta, _payload(meta))
    params["icc_profile"] = srgb_icc_profile()
    return params


def _format_params(fmt: str, meta: dict[str, str], payload: str | None) -> dict:
    if fmt == "PNG":
        params: dict = {}
        if meta:
            info = PngImagePlugin.PngInfo()
            for key, value in meta.items():
                info.add_text(key, value)  # tEXt, or iTXt when the value is not Latin-1
            params["pnginfo"] = info
        return params
    if fmt == "TIFF":
        params = {"compression": "tiff_deflate"}
        if payload:
            params["description"] = payload
        return params
    params = {"quality": _JPEG_QUALITY, "subsampling": 0} if fmt == "JPEG" else {"quality": _WEBP_QUALITY}
    if payload:
        exif = Image.Exif()
        exif.get_ifd(ExifTags.IFD.Exif)[ExifTags.Base.UserComment] = _EXIF_ASCII + payload.encode("ascii")
        params["exif"] = exif
    return params


# -------------------------------------------------------------------------------------------------- metadata


def read_metadata(path: str | os.PathLike) -> dict[str, str]:
    """The str -> str metadata of an image file: PNG text chunks, plus what :func:`save_image` put in EXIF
    UserComment (JPEG, WebP) or the TIFF ImageDescription. {} when there is none. Raises ImageError naming the file.
    """
    path = Path(path)
    name = str(path)
    im = _open(path, name)
    out: dict[str, str] = {}
    with im:
        _check_pixels(name, *im.size, MAX_PIXELS)  # PNG text after the pixels needs decoding
        try:
            if im.format == "PNG":
                out.update({str(k): str(v) for k, v in im.text.items()})
            exif = im.getexif()
            candidates = [exif.get_ifd(ExifTags.IFD.Exif).get(ExifTags.Base.UserComment),
                          exif.get(ExifTags.Base.ImageDescription)]
        except Exception as e:  # noqa: BLE001 - truncated or corrupt file
            raise ImageError(f"{name}: cannot read metadata, the file may be truncated or corrupt "
                             f"({_one_line(e)})") from e
    for raw in candidates:
        out.update(_parse_payload(raw))
    return out


def _parse_payload(raw: object) -> dict[str, str]:
    """Our JSON object {"styletx": {...}} from an EXIF/TIFF text field, or {} when it is something else."""
    if isinstance(raw, bytes):
        for prefix in (_EXIF_ASCII, b"\x00" * 8):
            if raw.startswith(prefix):
                raw = raw[len(prefix):]
                break
        raw = raw.decode("utf-8", errors="replace")
    if not isinstance(raw, str) or _META_KEY not in raw:
        return {}
    try:
        data = json.loads(raw.strip("\x00 "))
    except ValueError:
        return {}
    if not isinstance(data, dict) or not isinstance(data.get(_META_KEY), dict):
        return {}
    return {str(k): str(v) for k, v in data[_META_KEY].items()}
