"""A person's own pictures on the page: a folder picked (zipped in the browser) or a zip becomes a data set, the
page shows its classes with their pictures and what was skipped, "Train on it" picks it in the run form, a run
trains on it with class names on the probe strip, a broken archive gets the server's sentence, and Delete
removes it. Inspecting a colour photo on a grey digits model says what the model can answer."""

from __future__ import annotations

import io
import secrets
import zipfile
from pathlib import Path
from typing import Any

import pytest
from PIL import Image
from playwright.sync_api import expect

from tests.api.test_datasets import picture
from tests.e2e.test_inspect import drop_file

pytestmark = pytest.mark.e2e

CLASSES = ("circles", "squares", "stripes")


def folder(root: Path, per_class: int = 8) -> Path:
    """pets/<class>/<i>.png|jpg, a text file and a broken picture: as a person's folder looks."""
    top = root / "pets"
    for c in CLASSES:
        (top / c).mkdir(parents=True)
        for i in range(per_class):
            fmt = "JPEG" if i % 2 else "PNG"
            (top / c / f"{i}.{fmt.lower()}").write_bytes(picture(c, i, fmt))
    (top / "README.txt").write_text("my pictures")
    (top / "circles" / "broken.png").write_bytes(b"\x89PNG not really")
    return top


def test_a_folder_becomes_a_data_set_a_run_trains_on_then_it_is_deleted(page: Any, ui: Any, tmp_path: Path) -> None:
    name = f"pets-{secrets.token_hex(3)}"  # the server is shared by the session's tests
    page.goto("/")
    page.get_by_test_id("own-folder").set_input_files(folder(tmp_path))
    expect(page.get_by_test_id("own-picked")).to_contain_text("pets/: 26 files in 3 folders")
    expect(page.get_by_test_id("own-name")).to_have_value("pets")
    page.get_by_test_id("own-name").fill(name)
    page.get_by_test_id("own-import").click()
    summary = page.get_by_test_id("own-summary")
    expect(summary).to_contain_text(f"Imported {name}: 3 classes, 32×32 RGB", timeout=30_000)
    expect(summary).to_contain_text("Skipped 1 (not an image file), 1 (unreadable image)")
    for c in CLASSES:
        row = page.get_by_test_id(f"own-class-{c}")
        expect(row).to_contain_text(c)
        expect(row.locator("img")).to_have_count(2)  # 8 pictures: 6 to train, 2 to test
    page.wait_for_function("() => [...document.querySelectorAll('.own-class img')].every((i) => i.naturalWidth > 0)")
    expect(page.get_by_test_id(f"own-set-{name}")).to_contain_text("3 classes")

    page.get_by_test_id(f"own-use-{name}").first.click()
    expect(page.get_by_test_id("field-dataset")).to_have_value(name)
    ui.fill(page, dataset=name, epochs="2", train_subset="")
    page.get_by_test_id("start").click()
    page.wait_for_url(lambda url: "run=" in url)
    page.wait_for_function("() => window.filterscope.store.status === 'finished'", timeout=60_000)
    assert page.evaluate("window.filterscope.store.run.config.dataset") == name
    assert page.evaluate("window.filterscope.store.snapshot.layers[0].weight.shape[1]") == 3  # RGB kernels
    labels = page.get_by_test_id("thumbs").locator(".thumb-label")
    expect(labels.first).to_be_visible()
    assert set(labels.all_inner_texts()) <= set(CLASSES) and len(set(labels.all_inner_texts())) == 3

    page.once("dialog", lambda dialog: dialog.accept())
    page.get_by_test_id(f"own-delete-{name}").click()
    expect(page.get_by_test_id(f"own-set-{name}")).to_have_count(0)
    assert name not in page.get_by_test_id("field-dataset").evaluate("s => [...s.options].map((o) => o.value)")


def test_a_zip_of_one_class_gets_the_servers_sentence(page: Any, console: Any, tmp_path: Path) -> None:
    console.allow("status of 422")  # the refusal itself, which the page turns into the server's sentence
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        for i in range(6):
            z.writestr(f"cats/{i}.png", picture("circles", i))
    path = tmp_path / "Only Cats.zip"
    path.write_bytes(buf.getvalue())
    page.goto("/")
    page.get_by_test_id("own-zip").set_input_files(path)
    expect(page.get_by_test_id("own-name")).to_have_value("only-cats")
    page.get_by_test_id("own-name").fill(f"cats-{secrets.token_hex(3)}")
    page.get_by_test_id("own-import").click()
    expect(page.get_by_test_id("own-error")).to_contain_text("class", timeout=30_000)
    expect(page.get_by_test_id("own-result")).to_be_hidden()


def test_a_colour_photo_on_a_grey_digits_model_is_told_what_the_model_can_answer(page: Any, ui: Any) -> None:
    page.goto("/")
    ui.start_run(page, dataset="mnist")
    page.wait_for_function("() => window.filterscope.store.history.length >= 1", timeout=30_000)
    photo = Image.new("RGB", (120, 90), (30, 120, 200))
    for x in range(0, 120, 10):
        photo.paste((220, 60, 40), (x, 0, x + 5, 90))
    buf = io.BytesIO()
    photo.save(buf, format="JPEG")
    drop_file(page, buf.getvalue(), "photo.jpg", "image/jpeg")
    knows = page.get_by_test_id("inspect-knows")
    expect(knows).to_contain_text("This model knows only the 10 classes it was trained on in MNIST digits: 0, 1, 2")
    expect(knows).to_contain_text("Your picture is in colour; the model was trained on grey images")
    expect(knows).to_have_class("caption knows unsure")
