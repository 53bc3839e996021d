"""Uploads of every kind become the model's input or a clear rejection; images are drawn here with Pillow."""

from __future__ import annotations

import io
import struct
import warnings
import zlib
from typing import Literal

import numpy as np
import pytest
from PIL import Image, ImageDraw, ImageFile

from filterscope.training.datasets.base import DatasetInfo, Kind
from filterscope.training.preprocess import ImageRejected, Prepared, _load, _open, prepare


def _info(kind: Kind, channels: int, size: int) -> DatasetInfo:
    mean, std = (0.5,) * channels, (0.25,) * channels
    return DatasetInfo("test", "Test", "A test set.", ("a", "b"), channels, size, mean, std, kind, "none", 1, 1)


DIGITS = _info("digits", 1, 28)
OBJECTS = _info("objects", 1, 28)
SHAPES = _info("shapes", 1, 28)
COLOUR = _info("shapes", 3, 32)


def _encode(im: Image.Image, fmt: str, **params: object) -> bytes:
    buf = io.BytesIO()
    im.save(buf, fmt, **params)
    return buf.getvalue()


def _reject(data: bytes, info: DatasetInfo = DIGITS, **kw: int) -> ImageRejected:
    with pytest.raises(ImageRejected) as caught:
        prepare(data, info, **kw)
    message = str(caught.value)
    assert message.endswith(".") and message.count(". ") == 0, message  # one sentence
    return caught.value


def _centre_of_mass(a: np.ndarray) -> tuple[float, float]:
    ys, xs = np.indices(a.shape)
    total = float(a.sum())
    return float((ys * a).sum()) / total, float((xs * a).sum()) / total


def _box(a: np.ndarray, level: int = 0) -> tuple[int, int]:
    """(height, width) of the pixels above `level`."""
    rows, cols = np.nonzero(a > level)
    return int(rows.max() - rows.min() + 1), int(cols.max() - cols.min() + 1)


def _paper_with_seven(size: tuple[int, int] = (300, 200)) -> Image.Image:
    """A thick dark '7' in the top-left corner of white paper lit unevenly (a light grey gradient)."""
    w, h = size
    paper = 255.0 - np.linspace(0.0, 45.0, w)[None, :] - np.linspace(0.0, 15.0, h)[:, None]  # (H, W)
    im = Image.fromarray(paper.astype(np.uint8))
    ImageDraw.Draw(im).line([(15, 15), (85, 15), (45, 115)], fill=30, width=11)
    return im


# --- rejections ---------------------------------------------------------------------------------


def test_empty_upload_is_rejected() -> None:
    assert _reject(b"").reason == "empty"


def test_random_bytes_are_not_an_image() -> None:
    exc = _reject(np.random.default_rng(0).bytes(5000))
    assert exc.reason == "not_an_image"
    assert "PNG, JPEG, GIF, WebP, BMP or TIFF" in str(exc)


@pytest.mark.parametrize(
    "data",
    [
        b'<?xml version="1.0"?>\n<svg xmlns="http://www.w3.org/2000/svg" width="28" height="28"><circle r="9"/></svg>',
        b"\xef\xbb\xbf  <svg viewBox='0 0 10 10'><path d='M0 0L9 9'/></svg>",
    ],
)
def test_svg_is_refused_naming_the_accepted_formats(data: bytes) -> None:
    exc = _reject(data)
    assert exc.reason == "unsupported_format"
    assert "SVG" in str(exc) and "PNG, JPEG, GIF, WebP, BMP or TIFF" in str(exc)


def test_heic_is_refused_by_name() -> None:
    exc = _reject(b"\x00\x00\x00\x18ftypheic\x00\x00\x00\x00mif1heic" + bytes(64))
    assert exc.reason == "unsupported_format" and "HEIC" in str(exc)


def test_formats_outside_the_allow_list_are_refused() -> None:
    # Pillow can read ICO and PPM, but they are not on our list.
    assert _reject(_encode(Image.new("RGB", (16, 16)), "ICO")).reason == "unsupported_format"
    assert _reject(_encode(Image.new("RGB", (16, 16)), "PPM")).reason == "not_an_image"


@pytest.mark.parametrize("fmt", ["PNG", "JPEG", "GIF", "WEBP", "BMP", "TIFF"])
def test_truncated_files_are_rejected_cleanly(fmt: str) -> None:
    noise = (np.random.default_rng(1).random((120, 160, 3)) * 255).astype(np.uint8)
    data = _encode(Image.fromarray(noise), fmt)
    exc = _reject(data[: len(data) // 2])
    assert exc.reason == "truncated"
    assert ImageFile.LOAD_TRUNCATED_IMAGES is False


def test_png_cut_inside_its_header_is_corrupt() -> None:
    data = _encode(Image.new("L", (8, 8)), "PNG")
    assert _reject(data[:20]).reason == "corrupt"


def test_damaged_files_never_escape_as_other_exceptions() -> None:
    # Every upload must either work or be refused with a reason: mutate valid files of every format.
    base = Image.new("RGB", (40, 30), (240, 240, 240))
    ImageDraw.Draw(base).line([(5, 5), (35, 25)], fill=(10, 10, 10), width=4)
    exif = Image.Exif()
    exif[0x0112] = 6
    seeds = [_encode(base, fmt) for fmt in ("PNG", "GIF", "WEBP", "BMP", "TIFF")]
    seeds += [_encode(base, "JPEG", exif=exif), _encode(base.convert("P"), "PNG", transparency=3)]
    seeds += [_encode(base.convert("1"), "TIFF", compression="group4"), _encode(base.convert("CMYK"), "JPEG")]
    rng = np.random.default_rng(3)
    outcomes = set()
    for i in range(600):
        data = bytearray(seeds[i % len(seeds)])
        if i % 3:
            for at in rng.integers(0, len(data), size=int(rng.integers(1, 6))):
                data[at] = int(rng.integers(0, 256))
        else:
            data = data[: int(rng.integers(0, len(data)))]
        try:
            outcomes.add(prepare(bytes(data), (DIGITS, OBJECTS, COLOUR)[i % 3]).pixels.dtype.name)
        except ImageRejected as exc:
            outcomes.add(exc.reason)
    assert {"uint8", "truncated", "corrupt"} <= outcomes


def _png_declaring(width: int, height: int) -> bytes:
    """A tiny valid PNG whose IHDR is patched to declare width x height (CRC recomputed)."""
    data = bytearray(_encode(Image.new("1", (8, 8)), "PNG"))
    ihdr = 8  # after the signature: length (4), b"IHDR" (4), 13 bytes of fields, CRC (4)
    assert data[ihdr + 4 : ihdr + 8] == b"IHDR"
    data[ihdr + 8 : ihdr + 16] = struct.pack(">II", width, height)
    data[ihdr + 21 : ihdr + 25] = struct.pack(">I", zlib.crc32(bytes(data[ihdr + 4 : ihdr + 21])))
    return bytes(data)


@pytest.mark.parametrize(
    ("size", "pillow_says"),
    [
        ((50_000, 50_000), "DecompressionBombError"),  # over 2x Pillow's MAX_IMAGE_PIXELS
        ((10_000, 10_000), "DecompressionBombWarning"),  # over Pillow's limit, under its error
        ((8_000, 6_000), "nothing"),  # under Pillow's limit, over ours
    ],
)
@pytest.mark.parametrize("action", ["error", "ignore"])
def test_decompression_bombs_are_refused_from_the_header(
    size: tuple[int, int], pillow_says: str, action: Literal["error", "ignore"]
) -> None:
    data = _png_declaring(*size)
    with warnings.catch_warnings():
        warnings.simplefilter(action)  # both how tests run (error) and how a server runs
        exc = _reject(data)
    assert exc.reason == "too_many_pixels", pillow_says


def test_max_pixels_is_the_callers_limit() -> None:
    data = _encode(Image.new("L", (100, 100)), "PNG")
    assert _reject(data, max_pixels=9_999).reason == "too_many_pixels"
    assert "100 x 100" in str(_reject(data, max_pixels=9_999))
    assert prepare(data, DIGITS, max_pixels=10_000).pixels.shape == (1, 28, 28)


# --- decoding every mode ------------------------------------------------------------------------


def _animated(fmt: str) -> bytes:
    frames = [Image.new("RGB", (32, 32), colour) for colour in ((255, 0, 0), (0, 0, 255))]
    return _encode(frames[0], fmt, save_all=True, append_images=frames[1:], duration=100, loop=0, lossless=True)


def _uploads() -> dict[str, bytes]:
    ramp = np.tile(np.linspace(0, 255, 48), (40, 1))  # (H, W): black on the left, white on the right
    disc = Image.new("L", (48, 40), 0)
    ImageDraw.Draw(disc).ellipse((10, 6, 38, 34), fill=255)
    palette = disc.convert("P")
    return {
        "1": _encode(disc.convert("1"), "PNG"),
        "L": _encode(disc, "PNG"),
        "LA": _encode(Image.merge("LA", (disc, disc)), "PNG"),
        "P": _encode(palette, "PNG"),
        "P+transparency": _encode(palette, "PNG", transparency=0),
        "RGB jpeg": _encode(disc.convert("RGB"), "JPEG"),
        "RGBA": _encode(Image.merge("RGBA", (disc, disc, disc, disc)), "PNG"),
        "CMYK jpeg": _encode(Image.new("CMYK", (48, 40), (0, 0, 0, 0)), "JPEG"),
        "I;16 png": _encode(Image.fromarray((ramp * 257).astype(np.uint16)), "PNG"),
        "I tiff": _encode(Image.fromarray((ramp * 1000).astype(np.int32)), "TIFF"),
        "F tiff": _encode(Image.fromarray((ramp / 255).astype(np.float32)), "TIFF"),
        "GIF animated": _animated("GIF"),
        "WebP animated": _animated("WEBP"),
        "BMP": _encode(disc, "BMP"),
        "WebP": _encode(disc, "WEBP"),
    }


@pytest.mark.parametrize("name", list(_uploads()))
@pytest.mark.parametrize("info", [DIGITS, OBJECTS, SHAPES, COLOUR], ids=["digits", "objects", "shapes", "colour"])
def test_every_mode_decodes_to_the_data_sets_shape(name: str, info: DatasetInfo) -> None:
    prepared = prepare(_uploads()[name], info)
    assert prepared.pixels.shape == (info.channels, info.size, info.size)
    assert prepared.pixels.dtype == np.uint8
    assert not prepared.pixels.flags.writeable


def test_sixteen_bit_is_scaled_not_clipped() -> None:
    for name in ("I;16 png", "I tiff", "F tiff"):
        pixels = prepare(_uploads()[name], COLOUR).pixels[0]  # a ramp from black to white, left to right
        row = pixels[16].astype(int)
        assert row[0] < 20 and row[-1] > 235, name
        assert 100 < row.mean() < 155, name  # clipping 16-bit values to 255 would make it ~255
        assert np.all(np.diff(row) >= -2), name


def test_transparency_is_composited_over_white() -> None:
    im = Image.new("RGBA", (32, 32), (0, 0, 0, 0))
    im.paste((255, 0, 0, 255), (0, 0, 16, 32))  # opaque red left half, transparent right half
    pixels = prepare(_encode(im, "PNG"), COLOUR).pixels  # (3, 32, 32)
    assert pixels[:, :, :16].reshape(3, -1).mean(axis=1).round().tolist() == [255, 0, 0]
    assert np.all(pixels[:, :, 16:] == 255)


def test_palette_transparency_is_white_too() -> None:
    im = Image.new("P", (32, 32), 0)
    im.putpalette([0, 0, 0, 0, 255, 0] + [0] * 762)
    im.paste(1, (0, 0, 32, 16))  # green top half; index 0 (black) is transparent
    pixels = prepare(_encode(im, "PNG", transparency=0), COLOUR).pixels
    assert np.all(pixels[:, 16:, :] == 255)
    assert pixels[:, :16, :].reshape(3, -1).mean(axis=1).round().tolist() == [0, 255, 0]


def test_white_strokes_on_a_transparent_canvas_still_count() -> None:
    im = Image.new("RGBA", (280, 280), (255, 255, 255, 0))
    ImageDraw.Draw(im).line([(140, 40), (140, 240)], fill=(255, 255, 255, 255), width=24)
    pixels = prepare(_encode(im, "PNG"), DIGITS).pixels[0]
    assert pixels.max() > 200 and _box(pixels, 30)[0] >= 19


def test_cmyk_jpeg_colours_survive() -> None:
    im = Image.new("CMYK", (32, 32), (0, 0, 0, 0))  # white
    im.paste((255, 0, 0, 0), (0, 0, 32, 16))  # cyan top half
    pixels = prepare(_encode(im, "JPEG", quality=95), COLOUR).pixels.astype(int)
    assert np.all(np.abs(pixels[:, 24, 16] - [255, 255, 255]) < 12)
    assert np.all(np.abs(pixels[:, 6, 16] - [0, 255, 255]) < 12)


@pytest.mark.parametrize("fmt", ["GIF", "WEBP"])
def test_animations_use_their_first_frame(fmt: str) -> None:
    pixels = prepare(_animated(fmt), COLOUR).pixels.astype(int)
    assert np.all(np.abs(pixels[:, 16, 16] - [255, 0, 0]) < 8)


def test_exif_orientation_is_applied() -> None:
    # Stored 60 wide x 100 tall with a red top; Orientation 6 means "turn 90 degrees clockwise to view".
    im = Image.new("RGB", (60, 100), (255, 255, 255))
    im.paste((255, 0, 0), (0, 0, 60, 20))
    exif = Image.Exif()
    exif[0x0112] = 6
    prepared = prepare(_encode(im, "JPEG", exif=exif, quality=95), COLOUR)
    assert prepared.original_size == (100, 60)
    pixels = prepared.pixels.astype(int)  # upright it is 100 x 60: rows 6..25 hold the picture
    assert np.all(np.abs(pixels[:, 16, 30] - [255, 0, 0]) < 20)  # the red band is now on the right
    assert np.all(np.abs(pixels[:, 16, 2] - [255, 255, 255]) < 20)


def test_a_12_megapixel_jpeg_is_decoded_at_reduced_scale() -> None:
    photo = _paper_with_seven((400, 300)).resize((4000, 3000), Image.Resampling.BILINEAR)
    data = _encode(photo, "JPEG", quality=85)
    assert _load(_open(data, 40_000_000), "L", 40_000_000).size == (500, 375)  # DCT scaling 1/8
    for info in (DIGITS, COLOUR):
        prepared = prepare(data, info)
        assert prepared.pixels.shape == (info.channels, info.size, info.size)
        assert prepared.original_size == (4000, 3000)


# --- shaping like the data sets -----------------------------------------------------------------


def test_a_dark_digit_on_paper_becomes_a_centred_mnist_glyph() -> None:
    prepared = prepare(_encode(_paper_with_seven(), "PNG"), DIGITS)
    glyph = prepared.pixels[0].astype(float)
    assert prepared.inverted
    cy, cx = _centre_of_mass(glyph)
    assert abs(cy - 14) <= 1 and abs(cx - 14) <= 1
    assert 19 <= max(_box(glyph, 30)) <= 21
    assert glyph.max() >= 200
    ink = glyph > 30
    assert glyph[~ink].mean() < 10  # the paper and its gradient are gone


def test_a_phone_photo_jpeg_of_a_digit_gives_the_same_glyph() -> None:
    photo = _paper_with_seven().resize((3000, 2000), Image.Resampling.BICUBIC)
    from_photo = prepare(_encode(photo, "JPEG", quality=80), DIGITS).pixels[0].astype(float)
    from_png = prepare(_encode(_paper_with_seven(), "PNG"), DIGITS).pixels[0].astype(float)
    assert np.abs(from_photo - from_png).mean() < 12


def test_a_canvas_drawing_is_not_inverted_and_keeps_its_aspect() -> None:
    im = Image.new("L", (280, 280), 0)
    ImageDraw.Draw(im).line([(200, 30), (200, 250)], fill=255, width=22)  # a '1' off to the right
    prepared = prepare(_encode(im, "PNG"), DIGITS)
    glyph = prepared.pixels[0].astype(float)
    assert not prepared.inverted
    height, width = _box(glyph, 30)
    assert height in (19, 20, 21) and width <= 5
    assert abs(_centre_of_mass(glyph)[1] - 14) <= 1


@pytest.mark.parametrize(("frame", "tilt"), [((420, 320), 0), ((640, 480), 0), ((480, 360), 10)])
def test_a_photo_showing_the_desk_around_the_paper_gives_the_same_glyph(frame: tuple[int, int], tilt: int) -> None:
    # The dark desk fills 55-80% of the frame, so "most of the picture is light" no longer holds.
    desk = Image.new("L", frame, 50)
    sheet = _paper_with_seven().rotate(tilt, expand=True, fillcolor=50)
    desk.paste(sheet, ((frame[0] - sheet.width) // 2, (frame[1] - sheet.height) // 2))
    prepared = prepare(_encode(desk, "JPEG", quality=90), DIGITS)
    glyph = prepared.pixels[0].astype(float)
    assert prepared.inverted
    assert 19 <= max(_box(glyph, 30)) <= 21  # the 7, not the sheet's outline
    assert glyph[glyph <= 30].mean() < 5
    if not tilt:
        reference = prepare(_encode(_paper_with_seven(), "PNG"), DIGITS).pixels[0]
        assert np.abs(glyph - reference).mean() < 12


def test_a_bold_light_digit_on_black_is_not_taken_for_paper() -> None:
    # Light in the middle and dark around, like a sheet on a desk, but strokes do not fill their box.
    im = Image.new("L", (28, 28), 0)
    draw = ImageDraw.Draw(im)
    draw.ellipse((7, 3, 21, 14), outline=255, width=5)
    draw.ellipse((6, 12, 22, 25), outline=255, width=5)
    prepared = prepare(_encode(im, "PNG"), DIGITS)
    assert not prepared.inverted
    glyph = prepared.pixels[0]
    assert glyph.max() > 240 and glyph[:3].max() == 0 and glyph[-3:].max() == 0  # strokes lit, ground black


def test_a_stroke_reaching_the_edge_is_kept() -> None:
    im = Image.new("L", (280, 280), 0)
    ImageDraw.Draw(im).line([(140, 0), (140, 280)], fill=255, width=24)  # a '1' cropped tightly
    glyph = prepare(_encode(im, "PNG"), DIGITS).pixels[0]
    assert _box(glyph, 30)[0] in (19, 20, 21)


def test_thin_pen_strokes_are_widened_to_mnist_weight() -> None:
    im = Image.new("L", (600, 600), 255)
    ImageDraw.Draw(im).line([(150, 100), (450, 100), (300, 500)], fill=0, width=3)
    glyph = prepare(_encode(im, "PNG"), DIGITS).pixels[0]
    assert glyph.max() > 200
    assert (glyph > 127).sum() >= 40  # two strokes ~20 px long, at least ~1.5 px wide


@pytest.mark.parametrize("fill", [255, 0])
def test_a_blank_picture_gives_an_empty_input_not_an_error(fill: int) -> None:
    noise = np.random.default_rng(2).normal(fill, 6, (200, 300)).clip(0, 255).astype(np.uint8)
    prepared = prepare(_encode(Image.fromarray(noise), "JPEG"), DIGITS)
    assert prepared.pixels.shape == (1, 28, 28)
    assert prepared.pixels.max() <= 10


def test_tiny_upload_is_fine() -> None:
    assert prepare(_encode(Image.new("L", (1, 1), 255), "PNG"), DIGITS).pixels.max() == 0
    assert prepare(_encode(Image.new("RGB", (1, 3), (9, 9, 9)), "PNG"), COLOUR).pixels.shape == (3, 32, 32)


def test_objects_are_inverted_and_fitted_with_background_padding() -> None:
    im = Image.new("L", (200, 100), 240)  # a dark shoe-ish blob on light grey
    ImageDraw.Draw(im).ellipse((20, 20, 180, 80), fill=40)
    prepared = prepare(_encode(im, "PNG"), OBJECTS)
    pixels = prepared.pixels[0].astype(int)
    assert prepared.inverted
    assert np.all(np.abs(pixels[:7] - 15) <= 2) and np.all(np.abs(pixels[-7:] - 15) <= 2)  # padding = backdrop
    assert pixels[14, 14] > 200


def test_shapes_pad_with_black_and_colour_is_never_inverted() -> None:
    im = Image.new("RGB", (100, 50), (0, 0, 0))
    ImageDraw.Draw(im).rectangle((30, 10, 70, 40), fill=(250, 250, 250))
    grey = prepare(_encode(im, "PNG"), SHAPES)
    assert not grey.inverted and grey.pixels.shape == (1, 28, 28)
    assert np.all(grey.pixels[0, :7] == 0) and np.all(grey.pixels[0, -7:] == 0)
    light = Image.new("RGB", (32, 32), (250, 250, 250))
    colour = prepare(_encode(light, "PNG"), COLOUR)
    assert not colour.inverted and colour.pixels.min() >= 245
    assert prepare(_encode(light, "PNG"), SHAPES).inverted


def test_normalised_applies_the_data_sets_statistics() -> None:
    prepared = Prepared(np.full((1, 2, 2), 255, np.uint8), inverted=False, original_size=(2, 2))
    x = prepared.normalised(DIGITS)
    assert x.dtype == np.float32 and x.shape == (1, 2, 2)
    assert np.allclose(x, (1.0 - 0.5) / 0.25)
    with pytest.raises(ValueError):
        prepared.normalised(COLOUR)


def test_colour_is_noticed_where_a_grey_model_cannot_see_it() -> None:
    """A colour photo on a grey model is said to be in colour; grey pictures (a grey JPEG's chroma noise
    included) and any picture on a colour model are not."""
    photo = Image.new("RGB", (200, 150), (30, 120, 200))
    ImageDraw.Draw(photo).ellipse((40, 30, 160, 120), fill=(220, 60, 40))
    grey_rgb = Image.new("RGB", (200, 150), (90, 90, 90))
    ImageDraw.Draw(grey_rgb).ellipse((40, 30, 160, 120), fill=(230, 230, 230))
    assert prepare(_encode(photo, "JPEG"), DIGITS).colour
    assert prepare(_encode(photo, "PNG"), OBJECTS).colour
    assert not prepare(_encode(photo, "PNG"), COLOUR).colour  # a colour model sees the colour
    assert not prepare(_encode(grey_rgb, "JPEG", quality=60), DIGITS).colour
    assert not prepare(_encode(photo.convert("L"), "PNG"), DIGITS).colour
