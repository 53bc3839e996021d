"""A run another process trains (`filterscope train`), watched in the page: live, with its controls absent
and the page saying why."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path
from typing import Any

from tests.conftest import FILTERSCOPE, wait_for
from tests.e2e.conftest import ROOT, Ui

CONFIG = {"dataset": "shapes", "model": "tiny", "epochs": 2, "snapshot_every": 5}


def test_a_run_trained_by_another_process_plays_live_without_its_controls(page: Any, ui: Ui,
                                                                            server_data_dir: Path) -> None:
    proc = subprocess.Popen([*FILTERSCOPE, "train", "--data-dir", str(server_data_dir), "--config",
                             json.dumps(CONFIG)], cwd=ROOT, stdout=subprocess.PIPE, text=True,
                            env={**os.environ, "FILTERSCOPE_TRAINING_THREADS": "1"})
    try:
        assert proc.stdout is not None
        run_id = proc.stdout.readline().split("training run ")[1].split()[0]
        wait_for(lambda: ui.http_run_status(run_id) == 200, 20)  # the server has seen it appear
        page.goto(f"/?run={run_id}")
        note = page.get_by_test_id("producer-note")
        note.wait_for(state="visible")
        assert f"trained by process {proc.pid} (filterscope train)" in note.inner_text()
        assert page.get_by_test_id("viewer-note").is_hidden()
        for action in ("pause", "step", "stop"):
            assert page.locator(f"button[data-action={action}]").is_hidden()
        seen = ui.seq(page)
        ui.wait_for_seq_above(page, max(seen, 0) + 3)  # its moments arrive live, as the process writes them
        page.wait_for_function("() => window.filterscope.store.status === 'finished'", timeout=120_000)
        assert proc.wait(60) == 0
        note.wait_for(state="hidden")  # once it has ended, nothing trains it any more
        index = page.evaluate("window.filterscope.store.index.length")
        assert index == ui.http_run(run_id)["snapshots"]  # every stored moment on the timeline
    finally:
        proc.kill()
        proc.communicate(timeout=30)
