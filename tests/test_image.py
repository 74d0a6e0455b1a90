"""Tests for styletx.image: loading every kind of source and mode, safety limits, atomic saving, metadata."""

from __future__ import annotations

import io
import os
import struct
import warnings
import zlib

import numpy as np
import pytest
import tifffile
import torch
from PIL import ExifTags, Image, ImageCms, ImageFile, ImageOps

from conftest import make_image
from styletx.errors import ImageError, InputError, StyletxWarning
from styletx.io.files import default_output_path
from styletx.io.image import LoadedImage, _oriented, load_image, read_metadata, save_image, srgb_icc_profile, to_tensor
from styletx.tensors import resize_longest, resize_to, to_pil

TOL8 = 0.5 / 255 + 1e-6  # exactness of an 8-bit value after /255


def mode_of(path) -> str:
    """The Pillow mode of a file, closing it again."""
    with Image.open(path) as img:
        return img.mode


def px(t: torch.Tensor, x: int, y: int) -> list[float]:
    """RGB of pixel (x, y) of a (1, 3, H, W) tensor."""
    return t[0, :, y, x].tolist()


# ------------------------------------------------------------------------------------------ hand-made files


def _s15(v: float) -> bytes:
    return struct.pack(">i", round(v * 65536))


def _xyz(x: float, y: float, z: float) -> bytes:
    return b"XYZ " + bytes(4) + _s15(x) + _s15(y) + _s15(z)


def make_rgb_icc(primaries, gamma: float, description: str = "test RGB") -> bytes:
    """A minimal ICC v2 matrix/TRC display profile: D50-adapted colorants (rXYZ, gXYZ, bXYZ) and one gamma curve."""
    desc_text = description.encode("ascii") + b"\0"
    desc = (b"desc" + bytes(4) + struct.pack(">I", len(desc_text)) + desc_text
            + struct.pack(">II", 0, 0) + struct.pack(">HB", 0, 0) + bytes(67))
    curv = b"curv" + bytes(4) + struct.pack(">IH", 1, round(gamma * 256)) + bytes(2)
    d50 = (0.9642, 1.0, 0.8249)
    elements = [(b"desc", desc), (b"wtpt", _xyz(*d50)), (b"rXYZ", _xyz(*primaries[0])),
                (b"gXYZ", _xyz(*primaries[1])), (b"bXYZ", _xyz(*primaries[2]))]
    table_size = 4 + 12 * (len(elements) + 3)
    offset = 128 + table_size
    table, data, offsets = b"", b"", {}
    for sig, payload in elements + [(b"TRC", curv)]:
        offsets[sig] = (offset + len(data), len(payload))
        data += payload + bytes(-len(payload) % 4)
    entries = [(sig, *offsets[sig]) for sig, _ in elements]
    entries += [(c + b"TRC", *offsets[b"TRC"]) for c in (b"r", b"g", b"b")]  # the three curves share one element
    table = struct.pack(">I", len(entries)) + b"".join(struct.pack(">4sII", *e) for e in entries)
    size = 128 + len(table) + len(data)
    header = (struct.pack(">I", size) + bytes(4) + b"\x02\x10\x00\x00" + b"mntr" + b"RGB " + b"XYZ " + bytes(12)
              + b"acsp" + bytes(4 * 4) + bytes(8) + struct.pack(">I", 0) + _s15(d50[0]) + _s15(d50[1])
              + _s15(d50[2]) + bytes(4) + bytes(16) + bytes(28))
    assert len(header) == 128
    return header + table + data


# Adobe RGB (1998)-like: colorants adapted to D50, gamma 563/256.
ADOBE_LIKE = make_rgb_icc([(0.60974, 0.31111, 0.01947), (0.20528, 0.62567, 0.06087),
                           (0.14919, 0.06322, 0.74457)], 2.19921875, "Adobe-like RGB")


def write_png_header_only(path, width: int, height: int) -> None:
    """A PNG whose IHDR claims width x height (8-bit RGB) with no pixel data at all."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IEND", b""))


def write_tiff_rgb16(path, arr: np.ndarray) -> None:
    """An uncompressed little-endian 16-bit RGB TIFF of arr (H, W, 3) uint16."""
    h, w, _ = arr.shape
    pixels = arr.astype("<u2").tobytes()
    n_entries = 10
    ifd_offset = 8
    extra = ifd_offset + 2 + 12 * n_entries + 4  # BitsPerSample values, then pixels
    bps_offset, pix_offset = extra, extra + 6
    entries = [
        (256, 3, 1, w), (257, 3, 1, h), (258, 3, 3, bps_offset), (259, 3, 1, 1), (262, 3, 1, 2),
        (273, 4, 1, pix_offset), (277, 3, 1, 3), (278, 3, 1, h), (279, 4, 1, len(pixels)), (284, 3, 1, 1),
    ]
    out = b"II*\x00" + struct.pack("<I", ifd_offset) + struct.pack("<H", n_entries)
    for tag, typ, count, value in entries:
        packed = struct.pack("<HI", value, 0)[:4] if (typ == 3 and count == 1) else struct.pack("<I", value)
        out += struct.pack("<HHI", tag, typ, count) + packed
    out += struct.pack("<I", 0) + struct.pack("<HHH", 16, 16, 16) + pixels
    path.write_bytes(out)


# ----------------------------------------------------------------------------------------------- sources


def test_sources_agree_and_have_contract_shape(tmp_path, content_image):
    path = tmp_path / "c.png"
    content_image.save(path)
    arr = np.asarray(content_image)
    expected = torch.from_numpy(arr.astype(np.float32) / 255).permute(2, 0, 1)[None]
    results = [load_image(path), load_image(str(path)), load_image(content_image), load_image(arr),
               load_image(expected[0]), load_image(expected)]
    for r in results:
        assert isinstance(r, LoadedImage)
        assert r.tensor.shape == (1, 3, 40, 48) and r.tensor.dtype == torch.float32
        assert r.alpha is None
        assert r.size == (48, 40)
        torch.testing.assert_close(r.tensor, expected, atol=1e-6, rtol=0)
    assert results[0].name == str(path) and results[0].path == path
    assert results[2].name == "<PIL image>" and results[3].name == "<array>" and results[4].name == "<tensor>"
    torch.testing.assert_close(to_tensor(path), expected, atol=1e-6, rtol=0)
    assert np.array_equal(np.asarray(results[0].to_pil()), arr)


def test_array_dtypes_and_channels():
    u16 = np.array([[0, 32768, 65535]], dtype=np.uint16)
    t = load_image(u16).tensor
    assert t.shape == (1, 3, 1, 3)
    assert t[0, :, 0, 0].tolist() == [0.0] * 3 and t[0, :, 0, 2].tolist() == [1.0] * 3
    assert t[0, 0, 0, 1].item() == pytest.approx(32768 / 65535, abs=1e-6)
    f = load_image(np.array([[[-0.2, 0.25, 1.3]]])).tensor  # floats just outside [0, 1] are clamped into it
    assert px(f, 0, 0) == [0.0, 0.25, 1.0]
    with pytest.raises(ImageError, match=r"divide by 255"):  # 0..255 floats: refused, never clipped to white
        load_image(np.array([[[10.0, 128.0, 255.0]]]))
    ga = np.array([[[100, 0]]], dtype=np.uint8)  # gray + fully transparent alpha -> background
    assert px(load_image(ga, background=(0.0, 0.5, 1.0)).tensor, 0, 0) == [0.0, 0.5, 1.0]
    with pytest.raises(ImageError, match=r"<array>: unsupported dtype int64"):
        load_image(np.zeros((4, 4, 3), dtype=np.int64))
    with pytest.raises(ImageError, match=r"<array>: expected shape"):
        load_image(np.zeros((3, 8, 8), dtype=np.uint8))  # channels-first is not an (H, W, C) image


def test_tensor_sources():
    t = torch.rand(3, 5, 7)
    out = load_image(t).tensor
    assert out.shape == (1, 3, 5, 7)
    torch.testing.assert_close(out, t[None])
    u8 = torch.tensor([0, 51, 255], dtype=torch.uint8).view(3, 1, 1)
    assert px(load_image(u8).tensor, 0, 0) == pytest.approx([0.0, 0.2, 1.0])
    rgba = torch.tensor([1.0, 0.0, 0.0, 0.25]).view(4, 1, 1)
    kept = load_image(rgba, keep_alpha=True)
    assert px(kept.tensor, 0, 0) == [1.0, 0.0, 0.0] and kept.alpha.item() == 0.25
    with pytest.raises(ImageError, match=r"<tensor>: expected one image"):
        load_image(torch.rand(2, 3, 4, 4))
    with pytest.raises(ImageError, match="cannot load an image from int"):
        load_image(3)


# --------------------------------------------------------------------------------------------- PIL modes


def test_exif_orientation_is_applied(tmp_path):
    img = Image.new("RGB", (32, 16), (255, 0, 0))
    img.paste((0, 0, 255), (16, 0, 32, 16))  # left half red, right half blue
    exif = Image.Exif()
    exif[ExifTags.Base.Orientation] = 6  # stored picture must be turned 90 degrees clockwise
    path = tmp_path / "rot.jpg"
    img.save(path, exif=exif, quality=95)
    loaded = load_image(path)
    assert loaded.size == (16, 32)
    top, bottom = px(loaded.tensor, 8, 4), px(loaded.tensor, 8, 27)  # left half -> top after turning clockwise
    assert top == pytest.approx([1, 0, 0], abs=0.03) and bottom == pytest.approx([0, 0, 1], abs=0.03)


def test_palette_with_and_without_transparency(tmp_path):
    p = Image.new("P", (4, 2), 0)
    p.putpalette([255, 0, 0, 0, 255, 0] + [0] * (256 * 3 - 6))
    p.putpixel((1, 0), 1)
    t = load_image(p).tensor
    assert px(t, 0, 0) == [1, 0, 0] and px(t, 1, 0) == [0, 1, 0]

    p.info["transparency"] = 0  # index 0 (red) transparent
    path = tmp_path / "p.png"
    p.save(path, transparency=0)
    assert mode_of(path) == "P"
    comp = load_image(path, background=(0.0, 0.0, 1.0)).tensor
    assert px(comp, 0, 0) == [0, 0, 1] and px(comp, 1, 0) == [0, 1, 0]
    kept = load_image(path, keep_alpha=True)
    assert kept.alpha.shape == (1, 1, 2, 4)
    assert kept.alpha[0, 0, 0, 0].item() == 0.0 and kept.alpha[0, 0, 0, 1].item() == 1.0
    assert px(kept.tensor, 1, 0) == [0, 1, 0]


def test_grayscale_cmyk_and_alpha_modes():
    gray = load_image(Image.new("L", (2, 2), 51)).tensor
    assert px(gray, 1, 1) == pytest.approx([0.2] * 3, abs=1e-6)
    bw = Image.new("1", (2, 1), 0)
    bw.putpixel((1, 0), 1)
    assert load_image(bw).tensor[0, :, 0, :].T.tolist() == [[0, 0, 0], [1, 1, 1]]
    cmyk = load_image(Image.new("CMYK", (1, 1), (0, 255, 255, 0))).tensor  # no profile: naive conversion
    assert px(cmyk, 0, 0) == [1.0, 0.0, 0.0]

    rgba = Image.new("RGBA", (1, 1), (255, 0, 0, 128))
    a = 128 / 255
    on_white = px(load_image(rgba).tensor, 0, 0)
    assert on_white == pytest.approx([1.0, 1 - a, 1 - a], abs=1e-6)
    on_black = px(load_image(rgba, background=(0, 0, 0)).tensor, 0, 0)
    assert on_black == pytest.approx([a, 0, 0], abs=1e-6)
    kept = load_image(rgba, keep_alpha=True)
    assert px(kept.tensor, 0, 0) == [1.0, 0.0, 0.0] and kept.alpha.item() == pytest.approx(a)
    assert kept.to_pil().mode == "RGBA" and kept.to_pil().getpixel((0, 0)) == (255, 0, 0, 128)

    la = load_image(Image.new("LA", (1, 1), (0, 64)), background=(1.0, 1.0, 1.0)).tensor
    assert px(la, 0, 0) == pytest.approx([1 - 64 / 255] * 3, abs=1e-6)
    pa = Image.new("PA", (1, 1))
    pa.putpalette([0, 0, 255] + [0] * 765)
    pa.putpixel((0, 0), (0, 0))  # palette index 0 (blue), alpha 0
    assert px(load_image(pa, background=(0.0, 1.0, 0.0)).tensor, 0, 0) == [0, 1, 0]
    with pytest.raises(InputError, match="background"):
        load_image(rgba, background=(255, 255, 255))
    with pytest.raises(InputError, match="background"):
        load_image(Image.new("RGB", (1, 1)), background=(0.5, 0.5))


def test_16bit_grayscale_png_is_rescaled_not_clipped(tmp_path):
    arr = np.array([[0, 32768, 65535, 1000]], dtype=np.uint16)
    path = tmp_path / "g16.png"
    Image.fromarray(arr).save(path)
    assert mode_of(path).startswith("I;16")
    t = load_image(path).tensor
    assert t[0, :, 0, 2].tolist() == [1.0] * 3
    assert t[0, 0, 0, 1].item() == pytest.approx(0.5, abs=1e-4)
    assert t[0, 0, 0, 3].item() == pytest.approx(1000 / 65535, abs=1e-6)  # 8-bit clipping would give 1.0
    i32 = Image.fromarray(arr.astype(np.int32))
    assert i32.mode == "I"
    assert load_image(i32).tensor[0, 0, 0].tolist() == pytest.approx([0, 0.5, 1.0, 1000 / 65535], abs=1e-4)


def test_16bit_rgb_tiff(tmp_path):
    path = tmp_path / "rgb16.tif"
    arr = np.zeros((2, 2, 3), dtype=np.uint16)
    arr[0, 0] = (65535, 32768, 0)
    arr[1, 1] = (256, 65535, 65535)
    write_tiff_rgb16(path, arr)
    t = load_image(path).tensor  # Pillow >= 9.5 (our floor) reads 16-bit RGB TIFF: no skip that could hide a failure
    assert px(t, 0, 0) == pytest.approx([1.0, 0.5, 0.0], abs=1 / 255)
    assert px(t, 1, 1) == pytest.approx([1 / 255, 1.0, 1.0], abs=1 / 255)
    assert px(t, 1, 1)[0] == pytest.approx(256 / 65535, abs=1e-7)  # full precision, not the high byte (1 / 255)
    assert px(t, 0, 0)[1] == pytest.approx(32768 / 65535, abs=1e-7)


# ---------------------------------------------------------------------------------------------------- ICC


def test_icc_profile_converted_to_srgb(tmp_path):
    colours = [(200, 100, 80), (128, 128, 128), (60, 160, 90), (30, 40, 200)]
    img = Image.new("RGB", (4, 1))
    for i, c in enumerate(colours):
        img.putpixel((i, 0), c)
    path = tmp_path / "adobe.png"
    img.save(path, icc_profile=ADOBE_LIKE)

    src = ImageCms.ImageCmsProfile(io.BytesIO(ADOBE_LIKE))
    ref = ImageCms.profileToProfile(img, src, ImageCms.createProfile("sRGB"), outputMode="RGB")
    loaded = load_image(path).tensor
    expected = torch.from_numpy(np.asarray(ref, dtype=np.float32) / 255).permute(2, 0, 1)[None]
    torch.testing.assert_close(loaded, expected, atol=1e-6, rtol=0)

    naive = load_image(img).tensor  # the PIL image itself carries no profile: read as sRGB
    assert not torch.allclose(loaded, naive, atol=2 / 255)
    for i in (0, 2, 3):  # same numbers in a wider gamut are more saturated colours: spread grows in sRGB
        assert np.ptp(px(loaded, i, 0)) > np.ptp(px(naive, i, 0)) + 0.03
    grey = px(loaded, 1, 0)
    assert np.ptp(grey) < 2 / 255  # neutral stays neutral


def test_srgb_and_broken_icc_profiles(tmp_path):
    img = make_image(16, 8, seed=3)
    srgb = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    path = tmp_path / "srgb.png"
    img.save(path, icc_profile=srgb)
    torch.testing.assert_close(load_image(path).tensor, load_image(img).tensor, atol=2 / 255, rtol=0)
    bad = tmp_path / "bad.png"
    img.save(bad, icc_profile=b"not a profile at all" * 8)
    with pytest.warns(StyletxWarning, match=r"bad\.png: ICC profile could not be applied"):
        t = load_image(bad).tensor
    torch.testing.assert_close(t, load_image(img).tensor)


# ---------------------------------------------------------------------------------------- refusals, errors


def test_bomb_refused_from_header_before_decoding(tmp_path, monkeypatch):
    path = tmp_path / "big.png"
    make_image(40, 30).save(path)
    decoded = []
    real_load = ImageFile.ImageFile.load
    monkeypatch.setattr(ImageFile.ImageFile, "load", lambda self: decoded.append(1) or real_load(self))
    with pytest.raises(ImageError) as err:
        load_image(path, max_pixels=1000)
    msg = str(err.value)
    assert str(path) in msg and "40x30 = 1,200 pixels" in msg and "1,000" in msg and "\n" not in msg
    assert decoded == []  # refused from the header alone
    assert load_image(path, max_pixels=1200).size == (40, 30)


def test_pil_decompression_bomb_error_is_an_image_error(tmp_path):
    path = tmp_path / "huge.png"
    write_png_header_only(path, 100_000, 100_000)  # 10^10 pixels: Pillow itself refuses it in Image.open
    with pytest.raises(ImageError, match=r"huge\.png: refused as a possible decompression bomb"):
        load_image(path, max_pixels=10**11)
    big = tmp_path / "big.png"
    write_png_header_only(big, 12_000, 12_000)  # above our default limit, below Pillow's error threshold
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # Pillow's DecompressionBombWarning must not leak out either
        with pytest.raises(ImageError, match=r"big\.png: 12000x12000 = 144,000,000 pixels exceeds the limit"):
            load_image(big)


def test_missing_unreadable_truncated(tmp_path):
    with pytest.raises(ImageError, match=r"nope\.png: no such file$"):
        load_image(tmp_path / "nope.png")
    with pytest.raises(ImageError, match="is a folder"):
        load_image(tmp_path)
    junk = tmp_path / "junk.jpg"
    junk.write_bytes(b"this is not an image" * 10)
    with pytest.raises(ImageError, match=r"junk\.jpg: not a readable image"):
        load_image(junk)
    full = tmp_path / "full.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (64, 64, 3), dtype=np.uint8)).save(full)
    cut = tmp_path / "cut.png"
    data = full.read_bytes()
    cut.write_bytes(data[: len(data) // 2])
    with pytest.raises(ImageError) as err:
        load_image(cut)
    assert str(cut) in str(err.value) and "truncated" in str(err.value) and "\n" not in str(err.value)
    assert isinstance(err.value, InputError) and err.value.exit_code == 2


# ------------------------------------------------------------------------------------------- to_pil, resize


def test_to_pil_rounds_and_clamps():
    t = torch.tensor([-0.5, 0.5, 2.0]).view(1, 3, 1, 1)
    assert to_pil(t).getpixel((0, 0)) == (0, 128, 255)
    assert to_pil(t[0]).mode == "RGB"
    assert to_pil(torch.full((3, 1, 1), float("nan"))).getpixel((0, 0)) == (0, 0, 0)
    with pytest.raises(InputError, match="to_pil"):
        to_pil(torch.rand(2, 3, 4, 4))


def test_resize_longest_keeps_aspect_and_range():
    t = load_image(make_image(48, 40)).tensor
    out = resize_longest(t, 24)
    assert out.shape == (1, 3, 20, 24)
    tall = resize_longest(torch.rand(2, 3, 30, 10), 60)
    assert tall.shape == (2, 3, 60, 20)
    assert resize_to(t, (40, 48)) is t
    assert resize_to(t, (7, 9), mode="bilinear").shape == (1, 3, 7, 9)
    with pytest.raises(InputError, match="resize_longest"):
        resize_longest(t[0], 10)


def test_resize_is_antialiased_and_clamped():
    yy, xx = torch.meshgrid(torch.arange(64), torch.arange(64), indexing="ij")
    checker = ((yy + xx) % 2).float().expand(1, 3, 64, 64)
    down = resize_longest(checker, 16)
    assert torch.allclose(down, torch.full_like(down, 0.5), atol=0.02)  # averaged, not aliased to 0 or 1
    step = torch.zeros(1, 3, 8, 8)
    step[..., 4:] = 1.0
    up = resize_to(step, (8, 32))  # bicubic overshoots at edges; must be clamped
    assert up.min() >= 0.0 and up.max() <= 1.0


# ------------------------------------------------------------------------------------------------ saving


@pytest.mark.parametrize("ext, tol", [(".png", 0.0), (".tif", 0.0), (".jpg", 0.03), (".jpeg", 0.03),
                                      (".webp", 0.04)])
def test_save_load_round_trip(tmp_path, ext, tol):
    t = load_image(make_image(32, 24, seed=4)).tensor
    out = save_image(t, tmp_path / f"out{ext}")
    assert out == tmp_path / f"out{ext}" and out.is_file()
    back = load_image(out).tensor
    assert back.shape == t.shape
    assert (back - t).abs().mean().item() <= tol + TOL8
    assert [p.name for p in tmp_path.iterdir()] == [f"out{ext}"]  # no temporary file left


def test_jpeg_quality_and_subsampling(tmp_path):
    path = save_image(make_image(32, 32), tmp_path / "q.jpg")
    with Image.open(path) as jpg:
        from PIL import JpegImagePlugin
        assert JpegImagePlugin.get_sampling(jpg) == 0  # 4:4:4
        assert jpg.quantization[0][0] <= 4  # quality 95 luminance table starts at 2


@pytest.mark.parametrize("ext", [".png", ".jpg", ".tiff", ".webp"])
def test_metadata_round_trip(tmp_path, ext):
    meta = {"styletx": "0.1.0", "backbone": "random seed 0", "options": '{"steps": 300, "size": 512}',
            "note": "café ✓"}
    path = save_image(make_image(16, 16), tmp_path / f"m{ext}", metadata=meta)
    got = read_metadata(path)
    assert {k: got[k] for k in meta} == meta
    if ext == ".png":
        assert b"tEXt" in path.read_bytes() and b"backbone\x00random seed 0" in path.read_bytes()
    assert read_metadata(save_image(make_image(8, 8), tmp_path / f"plain{ext}")) == {}


def test_read_metadata_ignores_foreign_descriptions_and_refuses_bad_files(tmp_path):
    exif = Image.Exif()
    exif[ExifTags.Base.ImageDescription] = "holiday snap"
    exif.get_ifd(ExifTags.IFD.Exif)[ExifTags.Base.UserComment] = b"ASCII\0\0\0not json"
    camera = tmp_path / "camera.jpg"
    make_image(16, 16).save(camera, exif=exif)
    assert read_metadata(camera) == {}
    meta_png = save_image(make_image(64, 64), tmp_path / "m.png", metadata={"k": "v"})
    data = meta_png.read_bytes()
    cut = tmp_path / "cut.png"
    cut.write_bytes(data[: len(data) // 2])
    with pytest.raises(ImageError, match=r"cut\.png: cannot read metadata"):
        read_metadata(cut)


def test_save_pil_images_of_other_modes(tmp_path):
    g16 = Image.fromarray(np.array([[0, 32768, 65535]], dtype=np.uint16))
    path = save_image(g16, tmp_path / "g.png")
    with Image.open(path) as back:
        assert back.mode == "RGB" and [back.getpixel((x, 0))[0] for x in range(3)] == [0, 128, 255]
    pal = Image.new("P", (2, 1), 0)
    pal.putpalette([0, 0, 255, 255, 0, 0] + [0] * 762)
    pal.putpixel((1, 0), 1)
    pal.info["transparency"] = 1
    path = save_image(pal, tmp_path / "p.png")
    with Image.open(path) as back:
        assert back.mode == "RGBA" and back.getpixel((0, 0)) == (0, 0, 255, 255) and back.getpixel((1, 0))[3] == 0


def test_metadata_validation_and_read_errors(tmp_path):
    with pytest.raises(InputError, match="metadata: key"):
        save_image(make_image(8, 8), tmp_path / "k.png", metadata={"": "x"})
    assert not (tmp_path / "k.png").exists()
    with pytest.raises(ImageError, match="no such file"):
        read_metadata(tmp_path / "none.png")


@pytest.mark.parametrize("ext", [".png", ".webp", ".tif"])
def test_alpha_is_put_back(tmp_path, ext):
    rgba = np.zeros((8, 8, 4), dtype=np.uint8)
    rgba[..., 0] = 200
    rgba[..., 3] = np.arange(8, dtype=np.uint8)[None, :] * 36
    loaded = load_image(rgba, keep_alpha=True)
    path = save_image(loaded.tensor, tmp_path / f"a{ext}", alpha=loaded.alpha)
    with Image.open(path) as back:
        assert back.mode == "RGBA"
        a = np.asarray(back)[..., 3]
    tol = 0 if ext != ".webp" else 2
    assert np.abs(a.astype(int) - rgba[..., 3]).max() <= tol
    again = load_image(path, keep_alpha=True)
    torch.testing.assert_close(again.alpha, loaded.alpha, atol=(tol + 0.5) / 255, rtol=0)
    # alpha of another size is resized to the picture; a LoadedImage carries its own alpha
    half = save_image(loaded.tensor, tmp_path / f"h{ext}", alpha=loaded.alpha[..., ::2, ::2])
    assert mode_of(half) == "RGBA"
    assert mode_of(save_image(loaded, tmp_path / f"l{ext}")) == "RGBA"


def test_jpeg_drops_alpha_with_warning(tmp_path):
    with pytest.warns(StyletxWarning, match="JPEG has no alpha"):
        path = save_image(torch.rand(1, 3, 8, 8), tmp_path / "a.jpg", alpha=torch.full((1, 1, 8, 8), 0.5))
    assert mode_of(path) == "RGB"


def test_no_clobber_and_overwrite(tmp_path):
    path = tmp_path / "o.png"
    save_image(torch.zeros(1, 3, 4, 4), path)
    before = path.read_bytes()
    with pytest.raises(ImageError, match=r"o\.png: exists; use --overwrite"):
        save_image(torch.ones(1, 3, 4, 4), path)
    assert path.read_bytes() == before
    save_image(torch.ones(1, 3, 4, 4), path, overwrite=True)
    assert px(load_image(path).tensor, 0, 0) == [1.0, 1.0, 1.0]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["o.png"]


def test_no_clobber_when_file_appears_during_write(tmp_path, monkeypatch):
    path = tmp_path / "race.png"
    real_save = Image.Image.save

    def save_then_someone_else_writes(self, fp, *args, **kwargs):
        real_save(self, fp, *args, **kwargs)
        path.write_bytes(b"theirs")

    monkeypatch.setattr(Image.Image, "save", save_then_someone_else_writes)
    with pytest.raises(ImageError, match="exists"):
        save_image(torch.zeros(1, 3, 4, 4), path)
    assert path.read_bytes() == b"theirs"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["race.png"]


@pytest.mark.parametrize("existing", [False, True])
def test_failed_save_leaves_nothing_behind(tmp_path, monkeypatch, existing):
    path = tmp_path / "x.png"
    if existing:
        save_image(torch.zeros(1, 3, 4, 4), path)
    before = path.read_bytes() if existing else None
    seen = []

    def half_write_then_fail(self, fp, *args, **kwargs):
        fp.write(b"\x89PNG partial data")
        seen.append(getattr(fp, "name", None))
        raise OSError("No space left on device")

    monkeypatch.setattr(Image.Image, "save", half_write_then_fail)
    with pytest.raises(ImageError, match=r"x\.png: cannot write \(No space left on device\)"):
        save_image(torch.ones(1, 3, 4, 4), path, overwrite=True)
    assert seen  # the failure really happened after bytes went to a file
    assert sorted(p.name for p in tmp_path.iterdir()) == (["x.png"] if existing else [])
    if existing:
        assert path.read_bytes() == before


def test_save_errors(tmp_path):
    with pytest.raises(ImageError, match=r"output folder .*missing.* does not exist"):
        save_image(torch.zeros(1, 3, 4, 4), tmp_path / "missing" / "o.png")
    with pytest.raises(ImageError) as err:
        save_image(torch.zeros(1, 3, 4, 4), tmp_path / "o.bmp")
    msg = str(err.value)
    assert "o.bmp" in msg and "'.bmp'" in msg and all(e in msg for e in (".png", ".jpg", ".tiff", ".webp"))
    assert list(tmp_path.iterdir()) == []


def test_saved_file_permissions_follow_umask(tmp_path):
    if os.name != "posix":
        pytest.skip("POSIX permissions")
    old = os.umask(0o022)
    try:
        path = save_image(torch.zeros(1, 3, 4, 4), tmp_path / "perm.png")
    finally:
        os.umask(old)
    assert path.stat().st_mode & 0o777 == 0o644


# -------------------------------------------------------------------------------------- default_output_path


def test_default_output_path_never_clobbers(tmp_path):
    content = tmp_path / "photo.jpg"
    content.write_bytes(b"")
    first = default_output_path(content)
    assert first == tmp_path / "photo_stylized.png"
    first.write_bytes(b"")
    second = default_output_path(content)
    assert second == tmp_path / "photo_stylized-2.png"
    second.write_bytes(b"")
    assert default_output_path(content) == tmp_path / "photo_stylized-3.png"
    assert default_output_path(content, tag="mosaic", ext="jpg") == tmp_path / "photo_mosaic.jpg"


def test_libtiff_messages_become_part_of_the_one_line_error(tmp_path, capfd):
    """libtiff prints decoder errors to file descriptor 2 itself; they must not reach the terminal."""
    from styletx.errors import ImageError
    from styletx.io.image import load_image
    arr = (np.random.default_rng(0).random((64, 64, 3)) * 255).astype(np.uint8)
    path = tmp_path / "bad.tif"
    Image.fromarray(arr).save(path, compression="tiff_deflate")
    data = bytearray(path.read_bytes())
    data[200:400] = b"\x55" * 200  # inside the deflate stream
    path.write_bytes(bytes(data))
    capfd.readouterr()
    with pytest.raises(ImageError, match="truncated or corrupt.*libtiff: ZIPDecode"):
        load_image(path)
    out, err = capfd.readouterr()
    assert err == "" and out == ""
    import sys
    print("still here", file=sys.stderr)  # file descriptor 2 is restored
    assert capfd.readouterr().err == "still here\n"


# ------------------------------------------------------------------------------------------- 16-bit output

TOL16 = 1.5 / 65535  # a float saved at 16 bits and read back


def _float_image(h: int = 9, w: int = 13, seed: int = 0) -> torch.Tensor:
    return torch.rand(1, 3, h, w, generator=torch.Generator().manual_seed(seed))


def png_ihdr(path) -> tuple:
    """(width, height, bit depth, colour type, interlace) read straight from a PNG file's IHDR."""
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and data[12:16] == b"IHDR"
    width, height, depth, colour, _, _, interlace = struct.unpack(">IIBBBBB", data[16:29])
    return width, height, depth, colour, interlace


def _png_chunk(kind: bytes, payload: bytes) -> bytes:
    return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", zlib.crc32(kind + payload))


def _filtered_rows(arr: np.ndarray, filters) -> bytes:
    """The PNG row stream of (h, w, c) uint16 ``arr``: each row with a filter byte, the types cycled over rows."""
    h, w, c = arr.shape
    bpp = 2 * c
    rows = arr.astype(">u2").view(np.uint8).reshape(h, w * bpp).astype(np.int32)
    out = b""
    for r in range(h):
        x = rows[r]
        up = rows[r - 1] if r else np.zeros_like(x)
        left = np.concatenate([np.zeros(bpp, np.int32), x[:-bpp]])
        upleft = np.concatenate([np.zeros(bpp, np.int32), up[:-bpp]])
        p = left + up - upleft
        pa, pb, pc = np.abs(p - left), np.abs(p - up), np.abs(p - upleft)
        paeth = np.where((pa <= pb) & (pa <= pc), left, np.where(pb <= pc, up, upleft))
        t = filters[r % len(filters)]
        pred = [np.zeros_like(x), left, up, (left + up) // 2, paeth][t]
        out += bytes([t]) + ((x - pred) % 256).astype(np.uint8).tobytes()
    return out


ADAM7 = ((0, 0, 8, 8), (4, 0, 8, 8), (0, 4, 4, 8), (2, 0, 4, 4), (0, 2, 2, 4), (1, 0, 2, 2), (0, 1, 1, 2))


def write_png16(path, arr: np.ndarray, filters, *, interlace: bool = False) -> None:
    """A 16-bit PNG written by hand (not by styletx) with the given row filter types, cycled over the rows,
    so that the reader meets every filter a foreign encoder may choose; ``interlace``: Adam7, seven passes."""
    h, w, c = arr.shape
    if interlace:
        subs = [arr[y0::dy, x0::dx] for x0, y0, dx, dy in ADAM7]
        stream = b"".join(_filtered_rows(sub, filters) for sub in subs if sub.size)
    else:
        stream = _filtered_rows(arr, filters)
    colour = {2: 4, 3: 2, 4: 6}[c]
    ihdr = struct.pack(">IIBBBBB", w, h, 16, colour, 0, 0, int(interlace))
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", ihdr) + _png_chunk(b"IDAT", zlib.compress(stream))
                     + _png_chunk(b"IEND", b""))


def _srgb_description(icc: bytes) -> str:
    return ImageCms.getProfileDescription(ImageCms.ImageCmsProfile(io.BytesIO(icc))).strip()


@pytest.mark.parametrize("ext", [".png", ".tif"])
def test_16bit_round_trip_keeps_full_precision_and_the_srgb_profile(tmp_path, ext):
    t = _float_image()
    path = save_image(t, tmp_path / f"deep{ext}", bit_depth=16)
    if ext == ".png":
        assert png_ihdr(path) == (13, 9, 16, 2, 0)  # 16 bits per channel, RGB
    else:
        with tifffile.TiffFile(path) as tf:
            page = tf.pages[0]
            assert (page.bitspersample, page.samplesperpixel, page.dtype) == (16, 3, np.uint16)
            assert page.tags[34675].value == srgb_icc_profile()
    with Image.open(path) as im:
        icc = im.info.get("icc_profile")
    assert icc == srgb_icc_profile() and _srgb_description(icc).startswith("sRGB")
    back = load_image(path).tensor
    assert back.dtype == torch.float32 and back.shape == t.shape
    assert float((back - t).abs().max()) <= TOL16
    levels = (back * 65535).round()
    assert bool((levels % 257 != 0).any())  # not 8-bit values widened: the low bytes were read
    assert [p.name for p in tmp_path.iterdir()] == [f"deep{ext}"]  # no temporary file left


@pytest.mark.parametrize("ext", [".png", ".tif"])
def test_16bit_alpha_and_metadata_round_trip(tmp_path, ext):
    t = _float_image(8, 10, seed=1)
    alpha = torch.linspace(0, 1, 10).view(1, 1, 1, 10).expand(1, 1, 8, 10).contiguous()
    meta = {"styletx": "0.1.0", "options": '{"size": 512}', "note": "café ✓"}
    path = save_image(t, tmp_path / f"a{ext}", bit_depth=16, alpha=alpha, metadata=meta)
    if ext == ".png":
        assert png_ihdr(path)[2:4] == (16, 6)  # RGBA
    else:
        with tifffile.TiffFile(path) as tf:
            page = tf.pages[0]
            assert page.samplesperpixel == 4 and page.bitspersample == 16
            assert [int(e) for e in page.extrasamples] == [2]  # unassociated (straight) alpha
    got = load_image(path, keep_alpha=True)
    assert float((got.tensor - t).abs().max()) <= TOL16
    assert got.alpha is not None and float((got.alpha - alpha).abs().max()) <= TOL16
    assert float(got.alpha[0, 0, 0, 0]) == 0.0 and float(got.alpha[0, 0, 0, -1]) == 1.0
    on_white = load_image(path).tensor  # composited on white when alpha is not kept
    torch.testing.assert_close(on_white, t * alpha + (1 - alpha), atol=2 * TOL16, rtol=0)
    assert {k: read_metadata(path)[k] for k in meta} == meta
    assert read_metadata(save_image(t, tmp_path / f"plain{ext}", bit_depth=16)) == {}


@pytest.mark.parametrize("ext", [".jpg", ".jpeg", ".webp"])
def test_16bit_refused_for_8bit_formats_before_writing(tmp_path, ext):
    with pytest.raises(InputError) as err:
        save_image(_float_image(), tmp_path / f"x{ext}", bit_depth=16)
    message = str(err.value)
    assert "\n" not in message and "--bit-depth 16" in message and ".png or .tif" in message
    assert list(tmp_path.iterdir()) == []
    with pytest.raises(InputError, match="bit_depth: expected one of 8, 16"):
        save_image(_float_image(), tmp_path / "x.png", bit_depth=12)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("ext", [".png", ".jpg", ".tif", ".webp"])
def test_every_8bit_output_embeds_the_srgb_profile_and_reads_back_unchanged(tmp_path, ext):
    t = load_image(make_image(16, 12, seed=5)).tensor
    path = save_image(t, tmp_path / f"p{ext}")
    with Image.open(path) as im:
        assert im.mode == "RGB"
        assert im.info.get("icc_profile") == srgb_icc_profile()
    if ext in (".png", ".tif"):  # lossless: our own profile is not "converted" (which could move values)
        torch.testing.assert_close(load_image(path).tensor, t, atol=TOL8, rtol=0)


def test_the_embedded_profile_is_fixed_so_outputs_are_reproducible(tmp_path):
    icc = srgb_icc_profile()
    assert icc[24:36] == bytes(12) and icc[36:40] == b"acsp"
    assert _srgb_description(icc).startswith("sRGB")
    t = _float_image()
    for depth in (8, 16):
        a = save_image(t, tmp_path / f"a{depth}.png", bit_depth=depth).read_bytes()
        b = save_image(t, tmp_path / f"b{depth}.png", bit_depth=depth).read_bytes()
        assert a == b


def test_pil_and_loaded_images_saved_at_16_bits(tmp_path):
    rgb = make_image(6, 4, seed=2)
    path = save_image(rgb, tmp_path / "pil.png", bit_depth=16)
    levels = (load_image(path).tensor * 65535).round().to(torch.int64)
    expected = torch.from_numpy(np.asarray(rgb).astype(np.int64) * 257).permute(2, 0, 1)[None]
    assert torch.equal(levels, expected)  # 8-bit values widened exactly (x 257)
    g16 = Image.fromarray(np.array([[0, 1000, 65535]], dtype=np.uint16))
    back = load_image(save_image(g16, tmp_path / "g.tif", bit_depth=16)).tensor
    assert back[0, :, 0, 1].tolist() == pytest.approx([1000 / 65535] * 3, abs=1e-7)  # grey kept at 16 bits
    loaded = load_image(np.dstack([np.full((4, 4, 3), 40000, np.uint16), np.full((4, 4), 30000, np.uint16)]),
                        keep_alpha=True)
    again = load_image(save_image(loaded, tmp_path / "l.png", bit_depth=16), keep_alpha=True)
    assert float(again.alpha.flatten()[0]) == pytest.approx(30000 / 65535, abs=1e-7)
    assert float(again.tensor.flatten()[0]) == pytest.approx(40000 / 65535, abs=1e-7)


@pytest.mark.parametrize("filters", [[0], [1], [2], [3], [4], [0, 1, 2, 3, 4], [4, 3, 1]],
                         ids=["none", "sub", "up", "average", "paeth", "all", "mixed"])
@pytest.mark.parametrize("channels", [3, 4, 2])
def test_16bit_png_of_any_row_filter_is_read_exactly(tmp_path, filters, channels):
    rng = np.random.default_rng(channels)
    arr = rng.integers(0, 65536, (7, 11, channels), dtype=np.uint16)
    path = tmp_path / "foreign.png"
    write_png16(path, arr, filters)
    got = load_image(path, keep_alpha=True)
    has_alpha = channels in (2, 4)
    assert (got.alpha is not None) == has_alpha
    planes = [got.tensor[0].numpy()] + ([got.alpha[0].numpy()] if has_alpha else [])
    levels = np.rint(np.concatenate(planes) * 65535).astype(np.int64)
    colour = arr[..., :-1] if has_alpha else arr
    if colour.shape[2] == 1:
        colour = np.repeat(colour, 3, axis=2)
    assert np.array_equal(levels[:3].transpose(1, 2, 0), colour.astype(np.int64))
    if has_alpha:
        assert np.array_equal(levels[3], arr[..., -1].astype(np.int64))
    if channels != 2:  # Pillow, an independent decoder, sees the same high bytes
        with Image.open(path) as im:
            assert np.array_equal(np.asarray(im), (arr >> 8).astype(np.uint8))


def test_16bit_png_written_by_styletx_reads_the_same_in_pillow(tmp_path):
    t = _float_image(40, 33, seed=7)
    path = save_image(t, tmp_path / "p.png", bit_depth=16)
    levels = (t[0].permute(1, 2, 0) * 65535).round().to(torch.int64).numpy()
    with Image.open(path) as im:
        assert np.array_equal(np.asarray(im), (levels >> 8).astype(np.uint8))


def test_16bit_tiff_layouts_and_premultiplied_alpha(tmp_path):
    rng = np.random.default_rng(3)
    rgb = rng.integers(0, 65536, (5, 6, 3), dtype=np.uint16)
    planar = tmp_path / "planar.tif"
    tifffile.imwrite(planar, np.moveaxis(rgb, -1, 0), photometric="rgb", planarconfig="separate", metadata=None)
    levels = np.rint(load_image(planar).tensor[0].numpy() * 65535).astype(np.uint16).transpose(1, 2, 0)
    assert np.array_equal(levels, rgb)
    alpha = np.full((5, 6, 1), 32768, np.uint16)
    straight = np.full((5, 6, 3), 50000, np.uint16)
    premultiplied = np.rint(straight * (32768 / 65535)).astype(np.uint16)
    assoc = tmp_path / "assoc.tif"
    tifffile.imwrite(assoc, np.concatenate([premultiplied, alpha], axis=2), photometric="rgb",
                     extrasamples=["assocalpha"], metadata=None)
    got = load_image(assoc, keep_alpha=True)
    assert float(got.tensor.flatten()[0]) == pytest.approx(50000 / 65535, abs=2 / 65535)
    assert float(got.alpha.flatten()[0]) == pytest.approx(32768 / 65535, abs=1e-7)


def test_16bit_with_another_profile_is_converted_at_8_bits_with_a_warning(tmp_path):
    arr = np.zeros((1, 4, 3), np.uint16)
    arr[0] = [(51400, 25700, 20560), (32896, 32896, 32896), (15420, 41120, 23130), (7710, 10280, 51400)]
    path = tmp_path / "adobe16.tif"
    tifffile.imwrite(path, arr, photometric="rgb", metadata=None,
                     extratags=[(34675, "B", len(ADOBE_LIKE), ADOBE_LIKE, True)])
    with pytest.warns(StyletxWarning, match=r"adobe16\.tif: 16-bit image with a non-sRGB ICC profile.*8 bits"):
        t = load_image(path).tensor
    assert np.ptp(px(t, 0, 0)) > np.ptp(arr[0, 0] / 65535) + 0.03  # the wider gamut was applied


def test_corrupt_16bit_png_is_one_line_image_error(tmp_path):
    path = save_image(_float_image(20, 20), tmp_path / "ok.png", bit_depth=16)
    data = bytearray(path.read_bytes())
    idat = data.index(b"IDAT")
    data[idat + 10] ^= 0xFF
    bad = tmp_path / "bad.png"
    bad.write_bytes(bytes(data))
    with pytest.raises(ImageError, match=r"bad\.png: cannot decode image.*CRC") as err:
        load_image(bad)
    assert "\n" not in str(err.value)
    cut = tmp_path / "cut.png"
    cut.write_bytes(path.read_bytes()[: idat + 40])
    with pytest.raises(ImageError, match=r"cut\.png"):
        load_image(cut)


@pytest.mark.parametrize("orientation", range(1, 9))
def test_orientation_of_16bit_files_matches_pillow(orientation):
    arr = np.arange(3 * 5 * 3, dtype=np.uint8).reshape(3, 5, 3)
    img = Image.fromarray(arr)
    exif = img.getexif()
    exif[ExifTags.Base.Orientation] = orientation
    buf = io.BytesIO()
    img.save(buf, format="PNG", exif=exif)
    with Image.open(buf) as im:
        expected = np.asarray(ImageOps.exif_transpose(im))
    assert np.array_equal(_oriented(arr, orientation), expected)


@pytest.mark.parametrize("size", [(1, 1), (3, 2), (9, 13), (16, 17)])
def test_interlaced_16bit_png_is_read_exactly(tmp_path, size):
    arr = np.random.default_rng(size[0]).integers(0, 65536, (*size, 4), dtype=np.uint16)
    path = tmp_path / "adam7.png"
    write_png16(path, arr, [4, 1, 3, 2, 0], interlace=True)
    got = load_image(path, keep_alpha=True)
    assert np.array_equal(np.rint(got.tensor[0].numpy() * 65535).astype(np.uint16).transpose(1, 2, 0), arr[..., :3])
    assert np.array_equal(np.rint(got.alpha[0, 0].numpy() * 65535).astype(np.uint16), arr[..., 3])
    with Image.open(path) as im:  # Pillow agrees on the high bytes
        assert np.array_equal(np.asarray(im), (arr >> 8).astype(np.uint8))


@pytest.mark.parametrize("depth", [8, 16])
def test_a_pil_image_in_another_profile_is_written_in_srgb(tmp_path, depth):
    img = Image.new("RGB", (2, 1), (200, 100, 80))
    img.putpixel((1, 0), (30, 40, 200))
    img.info["icc_profile"] = ADOBE_LIKE
    path = save_image(img, tmp_path / "p.png", bit_depth=depth)
    with Image.open(path) as im:
        assert im.info.get("icc_profile") == srgb_icc_profile()  # not the source's profile over sRGB values
    expected = load_image(img).tensor  # the colours converted to sRGB
    assert not torch.allclose(expected, to_tensor(np.asarray(img)), atol=2 / 255)  # the conversion did something
    torch.testing.assert_close(load_image(path).tensor, expected, atol=TOL8, rtol=0)
