"""Turn an uploaded image file into the input a model trained on one of our data sets expects.

Uploads are untrusted and messy (phone photos, scans, canvas drawings): `prepare` either returns the
pixels the model will see or raises `ImageRejected` with one sentence a person can act on. Decoding is
bounded before any pixel is read: formats are allow-listed, the size declared in the header is checked
against `max_pixels`, and large JPEGs are decoded at 1/2 to 1/8 scale by libjpeg's DCT scaling. The
picture is then shaped like the data set's images: a digit as MNIST's digits were (light ink on dark,
cropped, scaled into a 20 px box, centred by mass: see glyph.py); objects and shapes are fitted whole,
keeping their aspect ratio.
"""

from __future__ import annotations

import io
import logging
import math
from dataclasses import dataclass
from typing import Literal

import numpy as np
from PIL import ExifTags, Image, ImageOps, UnidentifiedImageError

from .datasets.base import DatasetInfo
from .glyph import MIN_CONTRAST, digit_glyph

logger = logging.getLogger(__name__)

Reason = Literal["empty", "not_an_image", "unsupported_format", "too_many_pixels", "truncated", "corrupt"]

# Pillow's names for the formats we decode, most common first (Image.open tries them in order).
FORMATS = ("PNG", "JPEG", "GIF", "WEBP", "BMP", "TIFF")
_ACCEPTED = "upload a PNG, JPEG, GIF, WebP, BMP or TIFF file"

# A working image whose longer side is 320-640 px keeps a glyph that fills a tenth of a photo at
# 30+ px (enough for a 20 px box) while every numpy step stays around a millisecond.
_WORK_SIDE = 320


class ImageRejected(Exception):
    """An upload that cannot be used; `.reason` says why, `str(exc)` is one sentence for a person.

    Each reason and the HTTP status the web layer should answer with:
    - "empty" -> 400: no bytes were sent.
    - "not_an_image" -> 415: the bytes are not an image format we recognise at all.
    - "unsupported_format" -> 415: an image, but not one we decode (SVG, HEIC, PDF, ...) or in a
      colour format we cannot convert.
    - "too_many_pixels" -> 413: the header declares more than `max_pixels`; nothing was decoded.
    - "truncated" -> 422: the file ends before its image data does (an interrupted upload).
    - "corrupt" -> 422: a recognised format whose data cannot be decoded.
    """

    def __init__(self, reason: Reason, message: str) -> None:
        super().__init__(message)
        self.reason: Reason = reason


@dataclass(frozen=True)
class Prepared:
    """An upload as the model sees it, plus what was done to it."""

    pixels: np.ndarray  # (C, H, W) uint8, read-only: the model's input before normalisation
    inverted: bool  # dark-on-light was turned into light-on-dark to match the data set
    original_size: tuple[int, int]  # (width, height) after EXIF orientation
    colour: bool = False  # the upload has colour that a model of grey images does not see

    def normalised(self, info: DatasetInfo) -> np.ndarray:
        """The pixels as the model's input: (C, H, W) float32, (x / 255 - mean) / std per channel."""
        channels = self.pixels.shape[0]
        if len(info.mean) != channels or len(info.std) != channels:
            raise ValueError(f"{info.name} has {len(info.mean)} channels' statistics, pixels have {channels}")
        mean = np.asarray(info.mean, dtype=np.float32).reshape(-1, 1, 1)  # (C, 1, 1)
        std = np.asarray(info.std, dtype=np.float32).reshape(-1, 1, 1)  # (C, 1, 1)
        return (self.pixels.astype(np.float32) / 255.0 - mean) / std


def prepare(data: bytes, info: DatasetInfo, *, max_pixels: int = 40_000_000) -> Prepared:
    """Decode an uploaded file and shape it like `info`'s images, or raise `ImageRejected`."""
    if not data:
        raise ImageRejected("empty", "The file is empty; choose an image file and upload it again.")
    im = _open(data, max_pixels)
    width, height = im.size  # as declared: a JPEG may be decoded smaller
    target = "L" if info.channels == 1 or info.kind == "digits" else "RGB"
    colour = target == "L" and im.mode not in _GREY_MODES and _has_colour(data, max_pixels)
    im, turned = _orient(_load(im, target, max_pixels))
    original_size = (height, width) if turned else (width, height)
    im = _to_8bit(im)
    factor = max(im.size) // _WORK_SIDE
    if factor >= 2:
        im = im.reduce(factor)  # box average; premultiplies alpha first
    seen = _flatten(im, target)  # (H, W) or (H, W, 3) uint8
    if info.kind == "digits":
        glyph, inverted = digit_glyph(seen if seen.ndim == 2 else _luma(seen), info.size)
        pixels = np.repeat(glyph[None], info.channels, axis=0)  # (C, size, size)
    elif info.kind == "photos":  # a person's own photos: shaped as their import shaped them, never inverted
        pixels, inverted = _centre_square(seen, info.size), False
    else:
        # Fashion-MNIST and grey shapes are bright on black; colour shapes keep their colours.
        may_invert = info.kind == "objects" or info.channels == 1
        pixels, inverted = _fit(seen, info.size, may_invert, pad_with_background=info.kind == "objects")
    pixels.setflags(write=False)
    return Prepared(pixels=pixels, inverted=inverted, original_size=original_size, colour=colour)


_GREY_MODES = frozenset({"1", "L", "LA", "La", "I", "F", "I;16", "I;16L", "I;16B", "I;16N"})
# A pixel is coloured when its channels differ by more than this (of 255): JPEG's chroma noise on a grey
# picture stays well below it. A picture is in colour when more than 5 % of its pixels are.
_CHROMA = 24


def _has_colour(data: bytes, max_pixels: int) -> bool:
    """Whether the picture shows colour: a small RGB copy, decoded apart from the grey one the model sees."""
    im = _to_8bit(_orient(_load(_open(data, max_pixels), "RGB", max_pixels))[0]).convert("RGB")
    im.thumbnail((64, 64))
    rgb = np.asarray(im, dtype=np.int16)  # (H, W, 3)
    spread = rgb.max(axis=2) - rgb.min(axis=2)
    return bool(np.mean(spread > _CHROMA) > 0.05)


# --- decoding -----------------------------------------------------------------------------------

# Signatures of formats we accept (to tell "damaged PNG" from "not an image") and of common ones we
# do not (to name them in the message): (offset, magic, name).
_OURS = ((0, b"\x89PNG", "PNG"), (0, b"\xff\xd8", "JPEG"), (0, b"GIF8", "GIF"), (8, b"WEBP", "WebP"),
         (0, b"BM", "BMP"), (0, b"II*\x00", "TIFF"), (0, b"MM\x00*", "TIFF"))  # fmt: skip
_OTHERS = ((0, b"%PDF", "PDF"), (0, b"8BPS", "Photoshop"), (0, b"\xff\x0a", "JPEG XL"), (4, b"JXL ", "JPEG XL"),
           (4, b"jP  ", "JPEG 2000"), (0, b"\xff\x4f\xff\x51", "JPEG 2000"), (0, b"\x00\x00\x01\x00", "ICO"),
           (0, b"%!PS", "PostScript"), (0, b"qoif", "QOI"))  # fmt: skip
_HEIF_BRANDS = {b"heic", b"heix", b"heim", b"heis", b"hevc", b"hevx", b"mif1", b"msf1"}


def _sniff(data: bytes) -> tuple[str | None, str | None]:
    """(name of an accepted format the bytes claim to be, name of a known format we refuse)."""
    ours = next((name for at, magic, name in _OURS if data[at : at + len(magic)] == magic), None)
    others = next((name for at, magic, name in _OTHERS if data[at : at + len(magic)] == magic), None)
    if data[4:8] == b"ftyp":
        others = "AVIF" if data[8:12] in (b"avif", b"avis") else "HEIC" if data[8:12] in _HEIF_BRANDS else None
    head = data[:1024].lstrip(b"\xef\xbb\xbf \t\r\n").lower()
    if head.startswith(b"<") and b"<svg" in head:
        others = "SVG (vector)"
    return ours, others


def _open(data: bytes, max_pixels: int) -> Image.Image:
    """Read the header only; refuse unknown formats and oversize images before any pixel is decoded."""
    try:
        im = Image.open(io.BytesIO(data), formats=FORMATS)
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        # Pillow's own ceiling (MAX_IMAGE_PIXELS) is above ours; the warning is only an exception
        # where warnings are errors, elsewhere our check below catches the same file.
        raise _too_many(None, max_pixels) from exc
    except UnidentifiedImageError as exc:
        ours, others = _sniff(data)
        if others is not None:
            raise ImageRejected("unsupported_format", f"{others} images are not supported; {_ACCEPTED}.") from exc
        if ours is not None:
            raise _broken(ours, cut_off=False) from exc
        raise ImageRejected("not_an_image", f"This file is not an image; {_ACCEPTED}.") from exc
    except (OSError, ValueError, EOFError, ArithmeticError, Warning) as exc:
        # A recognised format whose header its decoder rejects (libwebp checks the whole file here),
        # or one Pillow warns about (bad TIFF tags) where warnings are errors.
        logger.debug("header of an upload failed to parse", exc_info=True)
        name = _sniff(data)[0] or "image"
        riff_short = name == "WebP" and int.from_bytes(data[4:8], "little") + 8 > len(data)
        raise _broken(name, cut_off=riff_short) from exc
    width, height = im.size
    if width * height > max_pixels:
        raise _too_many((width, height), max_pixels)
    if width < 1 or height < 1:
        raise ImageRejected("corrupt", "The image declares no pixels; save it again and upload it.")
    return im


def _too_many(size: tuple[int, int] | None, max_pixels: int) -> ImageRejected:
    what = f"{size[0]} x {size[1]} pixels" if size else "too many pixels"
    limit = f"{max_pixels / 1e6:g} million"
    return ImageRejected("too_many_pixels", f"The image has {what}, over the {limit} allowed; shrink it and try again.")


def _broken(name: str, *, cut_off: bool) -> ImageRejected:
    if cut_off:
        return ImageRejected("truncated", f"This {name} file is cut off before its end; upload the complete file.")
    return ImageRejected("corrupt", f"This {name} file is damaged or incomplete; save it again and upload it.")


def _load(im: Image.Image, target: str, max_pixels: int) -> Image.Image:
    """Decode the first frame's pixels, at reduced scale when the format allows it (JPEG)."""
    width, height = im.size
    try:
        if max(width, height) >= 2 * _WORK_SIDE:
            # Smallest DCT scale (1/2..1/8) that keeps the longer side >= _WORK_SIDE; also decodes
            # luma only when we want grey. A no-op for formats other than JPEG.
            scale = _WORK_SIDE / max(width, height)
            im.draft(target, (max(1, math.ceil(width * scale)), max(1, math.ceil(height * scale))))
        im.load()
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise _too_many(im.size, max_pixels) from exc
    except MemoryError:
        raise
    except Exception as exc:
        # Untrusted bytes reach C decoders here: any failure is the file's fault, not ours.
        logger.debug("decoding an upload failed", exc_info=True)
        name = "JPEG" if im.format == "MPO" else im.format or "image"  # MPO: a phone's JPEG with extras
        raise _broken(name, cut_off="truncated" in str(exc) or isinstance(exc, EOFError)) from exc
    return im


def _orient(im: Image.Image) -> tuple[Image.Image, bool]:
    """Apply the EXIF orientation so a phone photo is upright -> (image, whether it turned a quarter)."""
    try:
        orientation = im.getexif().get(ExifTags.Base.Orientation, 1)
        if orientation in range(2, 9):
            return ImageOps.exif_transpose(im), orientation >= 5  # 5..8 swap width and height
    except Exception:
        logger.debug("ignoring an unreadable EXIF block", exc_info=True)  # better unturned than refused
    return im, False


def _to_8bit(im: Image.Image) -> Image.Image:
    """Any Pillow mode -> L, LA, RGB or RGBA, keeping transparency and scaling deep images."""
    mode = im.mode
    if mode in ("L", "RGB") and "transparency" in im.info:
        return im.convert("LA" if mode == "L" else "RGBA")  # a tRNS colour key
    if mode in ("L", "LA", "RGB", "RGBA"):
        return im
    if mode == "P":
        return im.convert("RGBA" if "transparency" in im.info else "RGB")
    if mode in ("1", "PA", "La", "RGBa"):
        return im.convert({"1": "L", "PA": "RGBA", "La": "LA", "RGBa": "RGBA"}[mode])
    if mode.startswith("I") or mode == "F":
        return Image.fromarray(_scale_deep(np.asarray(im), mode))
    try:
        return im.convert("RGB")  # CMYK, YCbCr, LAB, HSV, RGBX
    except ValueError as exc:
        message = f"Images in the {mode} colour format are not supported; save it as RGB and upload it again."
        raise ImageRejected("unsupported_format", message) from exc


def _scale_deep(a: np.ndarray, mode: str) -> np.ndarray:
    """16-bit, 32-bit integer or float grey (H, W) -> uint8 (H, W), scaled rather than clipped."""
    a = np.nan_to_num(a.astype(np.float32), nan=0.0, posinf=0.0, neginf=0.0)
    lo, hi = float(a.min()), float(a.max())
    if mode.startswith("I;16"):
        span = (0.0, 65535.0)  # PNG/TIFF 16-bit samples are full range by definition
    elif lo >= 0 and hi <= (1.0 if mode == "F" else 255.0):
        span = (0.0, 1.0 if mode == "F" else 255.0)  # already 0..1 floats or 8-bit values
    elif lo >= 0 and hi <= 65535:
        span = (0.0, 65535.0)
    else:
        span = (lo, max(hi, lo + 1e-6))  # no convention: stretch what is there
    scaled = (a - span[0]) * (255.0 / (span[1] - span[0]))
    return np.clip(np.rint(scaled), 0, 255).astype(np.uint8)


def _flatten(im: Image.Image, target: str) -> np.ndarray:
    """L/LA/RGB/RGBA -> (H, W) or (H, W, 3) uint8 in `target`'s channels, alpha composited over white."""
    colour = np.asarray(im.convert(target), dtype=np.float32)  # (H, W) or (H, W, 3)
    if im.mode not in ("LA", "RGBA"):
        return colour.astype(np.uint8)
    alpha = np.asarray(im.getchannel("A"), dtype=np.float32) / 255.0  # (H, W)
    if colour.ndim == 3:
        alpha = alpha[..., None]
    seen = colour * alpha + 255.0 * (1.0 - alpha)
    if np.ptp(seen) < MIN_CONTRAST and np.ptp(alpha) > 0.5:
        seen = colour * alpha  # white strokes on a transparent canvas vanish over white: use black
    flat: np.ndarray = np.clip(np.rint(seen), 0, 255).astype(np.uint8)
    return flat


def _luma(rgb: np.ndarray) -> np.ndarray:
    """(H, W, 3) uint8 -> (H, W) uint8, ITU-R 601 like Pillow's convert("L")."""
    return np.asarray(Image.fromarray(rgb).convert("L"))


# --- shaping like the data set ------------------------------------------------------------------


def _border(grey: np.ndarray) -> np.ndarray:
    """The outer ring of a (H, W) image (4% of each side, at least 1 px), flattened."""
    h, w = grey.shape
    k = max(1, round(0.04 * min(h, w)))
    return np.concatenate([grey[:k].ravel(), grey[-k:].ravel(), grey[:, :k].ravel(), grey[:, -k:].ravel()])


def _centre_square(seen: np.ndarray, size: int) -> np.ndarray:
    """The largest centred square, resized to size x size -> (C, size, size) uint8 (datasets/uploaded.py's way)."""
    h, w = seen.shape[:2]
    side = min(h, w)
    box = ((w - side) / 2, (h - side) / 2, (w + side) / 2, (h + side) / 2)
    small = np.asarray(Image.fromarray(seen).resize((size, size), Image.Resampling.LANCZOS, box=box), np.uint8)
    return np.ascontiguousarray(small[None] if small.ndim == 2 else small.transpose(2, 0, 1))


def _fit(seen: np.ndarray, size: int, may_invert: bool, *, pad_with_background: bool) -> tuple[np.ndarray, bool]:
    """Whole picture into size x size keeping its aspect ratio -> ((C, size, size) uint8, inverted)."""
    grey = seen if seen.ndim == 2 else _luma(seen)
    inverted = may_invert and float(np.median(_border(grey))) > 127.5
    if inverted:
        seen = 255 - seen
    h, w = seen.shape[:2]
    scale = size / max(h, w)
    new_w, new_h = max(1, round(w * scale)), max(1, round(h * scale))
    small = Image.fromarray(seen).resize((new_w, new_h), Image.Resampling.LANCZOS)
    if pad_with_background:  # the picture's own backdrop, so the padding adds no edge
        ring = seen.reshape(h, w, -1)
        fill = tuple(int(np.median(_border(ring[..., c]))) for c in range(ring.shape[2]))
    else:
        fill = (0,) * (1 if seen.ndim == 2 else 3)
    canvas = Image.new(small.mode, (size, size), fill if len(fill) > 1 else fill[0])
    canvas.paste(small, ((size - new_w) // 2, (size - new_h) // 2))
    pixels = np.asarray(canvas, dtype=np.uint8)
    pixels = pixels[None] if pixels.ndim == 2 else pixels.transpose(2, 0, 1)  # (C, size, size)
    return np.ascontiguousarray(pixels), inverted
