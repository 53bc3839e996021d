"""Import time of a person's own pictures: 2,000 images (half JPEG, half PNG, 64 to 512 px on a side, photo-like
gradients with grain and a shape), in 4 class folders, zipped, imported by training/datasets/uploaded.py.

Prints the seconds of a zip and of the same folder, images a second, and the bytes the data set takes on disk
(goal: under 5 s here). Nothing passes or fails.

    .venv/bin/python -m bench.bench_import [--images 2000] [--size 32]
"""

from __future__ import annotations

import argparse
import io
import tempfile
import time
import zipfile
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from filterscope.training.datasets import uploaded

CLASSES = ("circles", "squares", "lines", "blank")


def picture(rng: np.random.Generator, cls: str) -> tuple[bytes, str]:
    """One photo-like picture of class `cls` and its suffix: JPEG or PNG, 64 to 512 px on each side."""
    w, h = (int(v) for v in rng.integers(64, 513, 2))
    y, x = np.mgrid[0:h, 0:w].astype(np.float32)
    tint = rng.uniform(40, 200, 3)
    base = tint + 40 * np.sin(x[..., None] / rng.uniform(30, 200)) + 30 * np.cos(y[..., None] / rng.uniform(30, 200))
    base += rng.normal(0, 6, (h, w, 1))
    im = Image.fromarray(np.clip(base, 0, 255).astype(np.uint8))
    draw = ImageDraw.Draw(im)
    box = (w // 4, h // 4, 3 * w // 4, 3 * h // 4)
    colour = tuple(int(c) for c in rng.integers(0, 256, 3))
    if cls == "circles":
        draw.ellipse(box, fill=colour)
    elif cls == "squares":
        draw.rectangle(box, fill=colour)
    elif cls == "lines":
        draw.line(box, fill=colour, width=max(2, w // 20))
    jpeg = bool(rng.integers(0, 2))
    buf = io.BytesIO()
    im.save(buf, "JPEG" if jpeg else "PNG", **({"quality": 90} if jpeg else {}))
    return buf.getvalue(), ".jpg" if jpeg else ".png"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=2000)
    parser.add_argument("--size", type=int, default=32)
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    work = Path(tempfile.mkdtemp(prefix="filterscope-bench-import-"))
    folder = work / "pictures"
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as archive:  # stored: JPEG and PNG are compressed already
        for i in range(args.images):
            cls = CLASSES[i % len(CLASSES)]
            data, suffix = picture(rng, cls)
            path = folder / cls / f"{i}{suffix}"
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(data)
            archive.writestr(f"pictures/{cls}/{i}{suffix}", data)
    zipped = buf.getvalue()
    print(f"{args.images} pictures, {len(zipped) / 2**20:.1f} MB zipped")  # noqa: T201
    for label, source in (("zip", io.BytesIO(zipped)), ("folder", folder)):
        name = f"bench-{label}"
        start = time.perf_counter()
        result = uploaded.import_images(source, work / "data", name, size=args.size)
        seconds = time.perf_counter() - start
        stored = sum(p.stat().st_size for p in (work / "data" / "datasets" / name).iterdir())
        info = result.info
        print(f"{label:>6}: {seconds:.2f} s ({args.images / seconds:,.0f} images/s), {info.train_count} train + "  # noqa: T201
              f"{info.test_count} test at {info.size}x{info.size}x{info.channels}, {stored / 2**20:.2f} MB on disk")
        uploaded.forget(name)


if __name__ == "__main__":
    main()
