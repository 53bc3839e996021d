"""A person's own pictures as a data set: a `.zip` or a folder of `<class>/<image>` files (torchvision's
ImageFolder layout: one sub-folder per class, classes in sorted folder order) imported once into the data
directory and registered like a shipped set, so that a run config names it as `dataset`.

Stored as `<data_dir>/datasets/<name>/` holding `data.npz` (uint8 images, int64 labels) and `info.json`; the folder
is written under a temporary name and renamed into place, so a crash never leaves half a data set. Each image is
turned by its EXIF orientation, converted to grey or RGB, centre-cropped to a square (the largest centred one: no
padding, so no border the network could learn from) and resized with Lanczos. Every entry is checked (archive.py)
before anything is decoded, and nothing is ever extracted: only the finished arrays are written, inside the data
directory. Plain Python, NumPy and Pillow, as all of `training/`; the routes and the CLI are thin callers.
"""

from __future__ import annotations

import io
import json
import logging
import os
import re
import secrets
import shutil
import threading
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path, PurePosixPath
from typing import IO

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from .archive import Entry, ImportRefused, folder_entries, open_zip, zip_entries
from .base import Dataset, DatasetInfo
from .registry import names, register, unregister

log = logging.getLogger(__name__)

__all__ = ["ImportRefused", "Imported", "import_images", "load_all", "forget", "remove", "is_uploaded"]

# Bounds, each with its reason (the README repeats them).
# 200 MB of pictures decoded at a time is what a class's phone photos come to; a zip bomb declares or inflates
# to far more, and is stopped at this total (checked on the declared sizes, then again while reading).
MAX_TOTAL_BYTES = 200 * 1024 * 1024
# 20,000 images import in well under a minute and, at 64x64 RGB, are a 245 MB array: more would crowd memory.
MAX_IMAGES = 20_000
MIN_CLASSES = 2  # one class is not a classification problem: every prediction would be right
MAX_CLASSES = 100  # the page lists every class's count and probability; CIFAR-100 is the largest set people know
# 4 to train and 1 to test is the least that gives a test accuracy at all; fewer is a typo in a folder name.
MIN_PER_CLASS = 5
# One picture's pixels: 40 megapixels decodes in well under a second; more is a decompression bomb.
MAX_IMAGE_PIXELS = 40_000_000
MIN_SIZE, MAX_SIZE = 16, 64  # every preset's pools need 16 px; 64 px keeps training on a CPU interactive
TEST_FRACTION = 0.2  # about 80/20, and at least one test image per class
TEST_EXAMPLES = 4  # test images per class an import shows: enough to see that the classes are what was meant
SPLIT_SEED = 0  # fixed: the same folder always splits the same way
NAME = re.compile(r"^[a-z0-9][a-z0-9_-]{0,39}$")
IMAGE_SUFFIXES = frozenset({".png", ".jpg", ".jpeg", ".gif", ".webp", ".bmp", ".tif", ".tiff"})
ARCHIVE_SUFFIXES = frozenset({".zip", ".tar", ".gz", ".tgz", ".bz2", ".xz", ".7z", ".rar", ".zst"})
SUBDIR = "datasets"

_lock = threading.Lock()  # one import at a time reaches the final rename and the registry
_registered_here: dict[str, Path] = {}  # uploaded sets registered by this process -> their folder


@dataclass
class Imported:
    """What an import made: the data set's info, counts per class, and what was skipped and why."""

    info: DatasetInfo
    train_per_class: dict[str, int]
    test_per_class: dict[str, int]
    skipped: dict[str, int] = field(default_factory=dict)  # reason -> count
    skipped_examples: list[str] = field(default_factory=list)  # the first few skipped paths, with their reason
    test_examples: dict[str, list[int]] = field(default_factory=dict)  # class -> its first few test images


def datasets_dir(data_dir: Path) -> Path:
    return data_dir / SUBDIR


def check_name(name: str) -> None:
    """ImportRefused unless `name` is a safe folder name no registered data set has."""
    if not NAME.match(name):
        raise ImportRefused("bad_name", f"The name {name[:50]!r} is not allowed: use 1 to 40 lower-case letters, "
                                        "digits, '-' or '_', starting with a letter or digit (e.g. 'leaves').")
    if name in names():
        raise ImportRefused("taken", f"A data set named {name!r} exists already; choose another name, or delete "
                                     "that one first.")


# ---- decoding ----------------------------------------------------------------------------------------------

def _open(data: bytes) -> Image.Image:
    im = Image.open(io.BytesIO(data))
    if im.width * im.height > MAX_IMAGE_PIXELS:
        raise ValueError("too many pixels")
    return im


def _is_colour(im: Image.Image) -> bool:
    """True unless the picture is grey (grey modes, or RGB whose channels agree on a small thumbnail)."""
    if im.mode in ("1", "L", "LA", "I", "I;16", "F"):
        return False
    try:
        small = np.asarray(im.convert("RGB").resize((16, 16)), dtype=np.int16)  # (16, 16, 3)
    except (OSError, ValueError, SyntaxError):  # broken past its header: skipped later, as unreadable
        return False
    return bool(np.abs(small - small.mean(axis=2, keepdims=True)).max() > 8)


def _square(im: Image.Image, size: int, channels: int) -> np.ndarray:
    """EXIF-turned, flattened (transparency over white, as viewers show it), centre-cropped, resized: (C, S, S)."""
    if im.format == "JPEG":
        im.draft("RGB" if channels == 3 else "L", (size * 2, size * 2))  # decode at 1/2..1/8 scale: 3-5x faster
    turned = ImageOps.exif_transpose(im)
    if turned.mode in ("RGBA", "LA", "PA") or (turned.mode == "P" and "transparency" in turned.info):
        rgba = turned.convert("RGBA")
        turned = Image.alpha_composite(Image.new("RGBA", rgba.size, (255, 255, 255, 255)), rgba)
    turned = turned.convert("RGB" if channels == 3 else "L")
    w, h = turned.size
    side = min(w, h)
    box = ((w - side) / 2, (h - side) / 2, (w + side) / 2, (h + side) / 2)
    small = turned.resize((size, size), Image.Resampling.LANCZOS, box=box, reducing_gap=3.0)
    arr = np.asarray(small, dtype=np.uint8)
    return arr[None] if channels == 1 else arr.transpose(2, 0, 1)  # (C, S, S)


# ---- the import ---------------------------------------------------------------------------------------------

def _classify(entries: Iterator[Entry], skipped: Counter[str], examples: list[str]
              ) -> list[tuple[tuple[str, ...], Entry]]:
    """Image entries and their paths; everything else counted in `skipped`, nested archives refused."""
    def skip(reason: str, parts: tuple[str, ...]) -> None:
        skipped[reason] += 1
        if len(examples) < 10:
            examples.append(f"{'/'.join(parts)[:80]}: {reason}")

    kept: list[tuple[tuple[str, ...], Entry]] = []
    declared = 0
    for entry in entries:
        parts = entry.parts
        suffix = PurePosixPath(parts[-1]).suffix.lower() if parts else ""
        if any(p.startswith(".") or p == "__MACOSX" for p in parts):
            skip("hidden file", parts)
        elif entry.size < 0:
            skip("symbolic link (not followed)", parts)
        elif suffix in ARCHIVE_SUFFIXES:
            raise ImportRefused("unsafe", f"The archive holds another archive ({'/'.join(parts)[:80]!r}); archives "
                                          "inside archives are not unpacked: put the pictures in it directly.")
        elif suffix not in IMAGE_SUFFIXES:
            skip("not an image file", parts)
        else:
            declared += entry.size
            if declared > MAX_TOTAL_BYTES:
                raise ImportRefused("too_large", f"The pictures add up to more than {MAX_TOTAL_BYTES // 2**20} MB "
                                                 "uncompressed, the most one data set may hold; use fewer or "
                                                 "smaller pictures.")
            kept.append((parts, entry))
    # A zip of the folder itself has one top folder around the class folders: look inside it.
    while kept and all(len(p) > 2 for p, _ in kept) and len({p[0] for p, _ in kept}) == 1:
        kept = [(p[1:], e) for p, e in kept]
    images = []
    for parts, entry in kept:
        if len(parts) < 2:
            skip("not in a class folder", parts)
        else:
            images.append((parts, entry))
    if len(images) > MAX_IMAGES:
        raise ImportRefused("too_large", f"There are {len(images):,} pictures; a data set holds at most "
                                         f"{MAX_IMAGES:,}.")
    return images


def _check_classes(counts: Counter[str]) -> None:
    if not counts:
        raise ImportRefused("empty", "No pictures were found: put them in one folder per class (e.g. cats/tom.jpg, "
                                     "dogs/rex.png) and zip those folders.")
    if len(counts) < MIN_CLASSES:
        raise ImportRefused("classes", f"Only one class was found ({next(iter(counts))!r}); a network needs at "
                                       f"least {MIN_CLASSES} classes to tell apart: add another folder.")
    if len(counts) > MAX_CLASSES:
        raise ImportRefused("classes", f"{len(counts)} classes were found; at most {MAX_CLASSES} are allowed.")
    short = sorted(c for c, n in counts.items() if n < MIN_PER_CLASS)
    if short:
        raise ImportRefused("few", f"Each class needs at least {MIN_PER_CLASS} readable pictures (4 to train, 1 to "
                                   f"test); too few in: " + ", ".join(f"{c!r} ({counts[c]})" for c in short[:10]))


def _build(name: str, images: list[tuple[tuple[str, ...], Entry]], size: int | None, channels: int | None,
           skipped: Counter[str], examples: list[str], source: str) -> tuple[Imported, dict[str, np.ndarray]]:
    """Decode, split and describe the pictures; nothing is written."""
    budget = MAX_TOTAL_BYTES
    opened: list[tuple[str, Image.Image]] = []
    for parts, entry in images:
        data = entry.read(budget + 1)
        budget -= len(data)
        if budget < 0:
            raise ImportRefused("too_large", f"The pictures inflate to more than {MAX_TOTAL_BYTES // 2**20} MB, the "
                                             "most one data set may hold (the archive declared less).")
        try:
            im = _open(data)
        except (UnidentifiedImageError, ValueError, OSError, Image.DecompressionBombError):
            skipped["unreadable image"] += 1
            if len(examples) < 10:
                examples.append(f"{'/'.join(parts)[:80]}: unreadable image")
            continue
        opened.append((parts[0], im))
    counts = Counter(c for c, _ in opened)
    _check_classes(counts)
    if channels is None:  # colour if any of the first 200 pictures is: a grey folder stays a grey set
        channels = 3 if any(_is_colour(im) for _, im in opened[:200]) else 1
    if size is None:  # the CIFAR side for colour, MNIST's for grey, never larger than the pictures' median side
        median = int(np.median([min(im.size) for _, im in opened]))
        size = max(MIN_SIZE, min(32 if channels == 3 else 28, median))
    classes = tuple(sorted(counts))
    label = {c: i for i, c in enumerate(classes)}
    x = np.empty((len(opened), channels, size, size), dtype=np.uint8)  # (N, C, S, S)
    y = np.empty(len(opened), dtype=np.int64)
    kept = 0

    def square(im: Image.Image) -> np.ndarray | None:
        try:
            return _square(im, size, channels)
        except (OSError, ValueError, SyntaxError):  # truncated or broken past its header
            return None

    # Pillow decodes and resizes without the GIL: 2,000 pictures took 4.6 s in one thread, 2.7 s on 2 cores.
    with ThreadPoolExecutor(max(1, min(8, os.cpu_count() or 1)), thread_name_prefix="import") as pool:
        for (cls, _), pixels in zip(opened, pool.map(square, [im for _, im in opened]), strict=True):
            if pixels is None:
                skipped["unreadable image"] += 1
                continue
            x[kept], y[kept] = pixels, label[cls]
            kept += 1
    x, y = x[:kept], y[:kept]
    _check_classes(Counter(classes[i] for i in y.tolist()))
    rng = np.random.default_rng(SPLIT_SEED)
    test_mask = np.zeros(len(y), dtype=bool)
    for i in range(len(classes)):
        members = np.flatnonzero(y == i)
        n_test = max(1, round(len(members) * TEST_FRACTION))
        test_mask[rng.permutation(members)[:n_test]] = True
    x_train, y_train, x_test, y_test = x[~test_mask], y[~test_mask], x[test_mask], y[test_mask]
    scaled = x_train.astype(np.float64) / 255.0
    mean = tuple(round(float(v), 4) for v in scaled.mean(axis=(0, 2, 3)))
    std = tuple(round(max(float(v), 1e-3), 4) for v in scaled.std(axis=(0, 2, 3)))
    info = DatasetInfo(
        name=name, title=name, source="uploaded",
        description=f"Your pictures ({source}): {len(classes)} classes, {size}x{size} "
                    f"{'RGB' if channels == 3 else 'grey levels'}.",
        classes=classes, channels=channels, size=size, mean=mean, std=std, kind="photos",
        licence="Your own images, imported into this data directory; not shipped with filterscope",
        train_count=len(y_train), test_count=len(y_test))
    result = Imported(info, {c: int((y_train == i).sum()) for i, c in enumerate(classes)},
                      {c: int((y_test == i).sum()) for i, c in enumerate(classes)}, dict(skipped), examples,
                      {c: [int(j) for j in np.flatnonzero(y_test == i)[:TEST_EXAMPLES]] for i, c in enumerate(classes)})
    return result, {"x_train": x_train, "y_train": y_train, "x_test": x_test, "y_test": y_test}


def import_images(source: str | Path | IO[bytes], data_dir: Path, name: str, *, size: int | None = None,
                  channels: int | None = None, label: str = "") -> Imported:
    """Import a zip (path or file object) or a folder into `data_dir` as data set `name`, and register it."""
    check_name(name)
    if size is not None and not MIN_SIZE <= size <= MAX_SIZE:
        raise ImportRefused("option", f"size must be {MIN_SIZE} to {MAX_SIZE} pixels, not {size}.")
    if channels not in (None, 1, 3):
        raise ImportRefused("option", f"channels must be 1 (grey) or 3 (RGB), not {channels}.")
    skipped: Counter[str] = Counter()
    examples: list[str] = []
    label = label or (Path(source).name if isinstance(source, (str, Path)) else "an upload")
    if isinstance(source, (str, Path)) and Path(source).is_dir():
        images = _classify(folder_entries(Path(source)), skipped, examples)
        result, arrays = _build(name, images, size, channels, skipped, examples, label)
    else:
        with open_zip(source) as archive:
            images = _classify(zip_entries(archive), skipped, examples)
            result, arrays = _build(name, images, size, channels, skipped, examples, label)
    _store(data_dir, result, arrays)
    return result


def _store(data_dir: Path, result: Imported, arrays: dict[str, np.ndarray]) -> None:
    """Write the set under a temporary name, rename it into place and register it (taken: ImportRefused)."""
    root = datasets_dir(data_dir)
    root.mkdir(parents=True, exist_ok=True)
    name = result.info.name
    tmp = root / f".tmp-{name}-{secrets.token_hex(4)}"
    tmp.mkdir()
    try:
        np.savez(tmp / "data.npz", **arrays)  # type: ignore[arg-type]  # uncompressed: photos' pixels barely compress, loading is faster
        (tmp / "info.json").write_text(json.dumps({"info": asdict(result.info), "train_per_class":
                                                   result.train_per_class, "test_per_class": result.test_per_class,
                                                   "skipped": result.skipped}, indent=1))
        with _lock:
            check_name(name)
            final = root / name
            if final.exists():
                raise ImportRefused("taken", f"A data set named {name!r} exists already in this data directory.")
            os.replace(tmp, final)
            _register(result.info, final)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    log.info("imported data set %s: %d train, %d test, skipped %s", name, result.info.train_count,
             result.info.test_count, result.skipped or "nothing")


def _register(info: DatasetInfo, folder: Path) -> None:
    def load() -> Dataset:
        with np.load(folder / "data.npz") as data:
            return Dataset(info=info, x_train=data["x_train"], y_train=data["y_train"], x_test=data["x_test"],
                           y_test=data["y_test"])

    register(info)(load)
    _registered_here[info.name] = folder


def load_all(data_dir: Path) -> list[str]:
    """Register every data set imported earlier into `data_dir` (at server start); returns their names."""
    root = datasets_dir(data_dir)
    found: list[str] = []
    if not root.is_dir():
        return found
    for folder in sorted(root.iterdir()):
        if folder.name.startswith(".") or not folder.is_dir():
            if folder.name.startswith((".tmp-", ".gone-")):
                shutil.rmtree(folder, ignore_errors=True)  # left by a crash mid-import or mid-delete
            continue
        try:
            stored = json.loads((folder / "info.json").read_text())["info"]
            info = DatasetInfo(**{**stored, "classes": tuple(stored["classes"]), "mean": tuple(stored["mean"]),
                                  "std": tuple(stored["std"])})
        except (OSError, ValueError, KeyError, TypeError) as exc:
            log.warning("data set folder %s is unreadable (%s); skipped", folder, exc)
            continue
        with _lock:
            if _registered_here.get(info.name) == folder:
                found.append(info.name)
                continue
            if info.name in names():
                log.warning("data set %s in %s has the name of a registered one; skipped", info.name, folder)
                continue
            _register(info, folder)
        found.append(info.name)
    return found


def is_uploaded(name: str) -> bool:
    return name in _registered_here


def forget(name: str) -> None:
    """Unregister uploaded set `name` (its files stay; the server's shutdown, and tests)."""
    with _lock:
        if _registered_here.pop(name, None) is not None:
            unregister(name)


def remove(name: str) -> None:
    """Unregister uploaded set `name` and delete its folder (KeyError if it is not an uploaded set)."""
    with _lock:
        folder = _registered_here.pop(name)
        unregister(name)
    gone = folder.with_name(f".gone-{name}-{secrets.token_hex(4)}")
    os.replace(folder, gone)  # at once: the name is free, whatever the deletion of the files takes
    shutil.rmtree(gone, ignore_errors=True)
