"""A person's own model recorded by `filterscope.watch` from their script, in the page: live and afterwards,
its sampled layers said, its top patches cut from its own images, and the controls it cannot have explained."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

from tests.conftest import wait_for
from tests.e2e.conftest import ROOT, Ui


def test_a_watched_script_is_shown_live_and_after_with_its_sampled_layers_and_no_controls(
        page: Any, ui: Ui, server_data_dir: Path, tmp_path: Path) -> None:
    # A budget small enough that the deeper layers of the small ResNet are sampled; paused after 6 steps.
    proc = subprocess.Popen([sys.executable, "-m", "tests.watching.nets", "resnet", "40", str(server_data_dir),
                             str(tmp_path / "final.pt"), "--budget", "40000", "--hang-after", "6"],
                            cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    try:
        assert proc.stdout is not None
        first = proc.stdout.readline()
        run_id = first.split("recording run ")[1].split()[0]
        wait_for(lambda: ui.http_run_status(run_id) == 200, 20)
        page.goto(f"/?run={run_id}")
        note = page.get_by_test_id("producer-note")
        note.wait_for(state="visible")
        assert "SmallResNet, a person's own model" in note.inner_text() and f"process {proc.pid}" in note.inner_text()
        for action in ("pause", "step", "stop"):
            assert page.locator(f"button[data-action={action}]").is_hidden()
        ui.wait_for_seq_above(page, 5)  # its moments arrive live, as the script records them
        heads = page.locator("[data-testid^=filters-] .dims").all_inner_texts()
        assert len(heads) == 6  # every conv: the stem, four in the blocks and the downsample
        sampled = [h for h in heads if "sampled:" in h]
        assert "sampled" not in heads[0]  # the first layers whole
        assert sampled and all(" filters" in h for h in sampled)
        proc.kill()
        proc.wait(30)
        page.wait_for_function("() => window.filterscope.store.status === 'interrupted'", timeout=60_000)
        assert page.evaluate("window.filterscope.store.index.length") == ui.http_run(run_id)["snapshots"] == 7
        page.locator("[data-mode=detects]").click()
        # The top patches (step 0's analysis) are cut from the script's own images, kept with the run.
        page.wait_for_function("id => window.filterscope.store.testPixels?.dataset === `run:${id}`", arg=run_id)
        assert "own model" in note.inner_text()  # still said once the script is gone
    finally:
        proc.kill()
        proc.communicate(timeout=30)
