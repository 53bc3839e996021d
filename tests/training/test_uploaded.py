"""The import of a person's pictures on its own (no server): orientation, crop, split and statistics."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
from PIL import Image

from filterscope.training.datasets import get_dataset, uploaded


def _portrait_taken_sideways() -> bytes:
    """A 60x40 JPEG, top half white and bottom half black as stored, whose EXIF says: turn 90 degrees (6)."""
    im = Image.new("L", (60, 40), 0)
    im.paste(255, (0, 0, 30, 40))  # left half white as stored: the top once turned clockwise
    exif = Image.Exif()
    exif[0x0112] = 6
    buf = io.BytesIO()
    im.save(buf, "JPEG", exif=exif, quality=95)
    return buf.getvalue()


def _folder(root: Path, per_class: int = 10) -> Path:
    for cls in ("a", "b"):
        (root / cls).mkdir(parents=True)
        for i in range(per_class):
            (root / cls / f"{i}.jpg").write_bytes(_portrait_taken_sideways())
    return root


def test_pictures_are_turned_cropped_split_and_normalised(tmp_path: Path) -> None:
    result = uploaded.import_images(_folder(tmp_path / "pics"), tmp_path / "data", "turned", size=16)
    try:
        data = get_dataset("turned")
        assert data.info.channels == 1 and data.x_train.shape == (16, 1, 16, 16)
        first = data.x_train[0, 0].astype(int)  # (16, 16): turned upright, the white half is on top
        assert first[:6].mean() > 200 and first[-6:].mean() < 50
        assert result.train_per_class == {"a": 8, "b": 8} and result.test_per_class == {"a": 2, "b": 2}
        assert data.info.mean[0] == round(float(data.x_train.mean() / 255), 4)
        assert data.info.std[0] == round(float((data.x_train / 255).std()), 4)
    finally:
        uploaded.forget("turned")


def test_the_same_folder_splits_the_same_way(tmp_path: Path) -> None:
    folder = tmp_path / "pics"
    for cls in ("a", "b"):
        (folder / cls).mkdir(parents=True)
        for i in range(12):
            Image.new("RGB", (20, 20), (i * 20, 0, 255 if cls == "b" else 0)).save(folder / cls / f"{i}.png")
    splits = []
    for name in ("one", "two"):
        uploaded.import_images(folder, tmp_path / "data", name)
        splits.append(get_dataset(name).x_test.copy())
        uploaded.forget(name)
    assert np.array_equal(splits[0], splits[1])


def test_an_image_to_inspect_is_shaped_as_the_import_shaped_its_pictures(tmp_path: Path) -> None:
    """Grey photos with a light background are not inverted as digits are, and are centre-cropped, not padded."""
    from filterscope.training.preprocess import prepare
    uploaded.import_images(_folder(tmp_path / "pics"), tmp_path / "data", "upright", size=16)
    try:
        data = get_dataset("upright")
        prepared = prepare(_portrait_taken_sideways(), data.info)
        assert not prepared.inverted
        assert np.abs(prepared.pixels.astype(int) - data.x_train[0].astype(int)).max() <= 2
    finally:
        uploaded.forget("upright")
