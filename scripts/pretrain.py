"""Train the run filterscope ships as a pretrained start, and write it as a bundle (app/record/bundle.py).

Usage:
    python scripts/pretrain.py            # writes app/record/data/pretrained.sqlite (about 15 s here)

The run is `tiny` (the default model: conv 8@5x5, conv 32@5x5) trained 5 epochs on Fashion-MNIST, the harder
of the shipped sets of real pictures, with the defaults otherwise (87 % test accuracy): seed 0 and one torch
thread, so the same torch on the same kind of CPU trains the same weights bit for bit. `tiny` rather than
`classic`: a `classic` frame is 260 KB against 40 KB, and its run would ship 12 MB instead of 3. It is trained by
`filterscope train` (runs/process.py) into a scratch data directory, exactly as a person's run would be, and
its rows are copied into the bundle. A server adds it to its data directory once (`FILTERSCOPE_PRETRAINED=0`
leaves it out), where it is listed like any run, so a newcomer can press "fine-tune from here" at once.
"""

from __future__ import annotations

import argparse
import logging
import sys
import tempfile
import time
from pathlib import Path

from filterscope.record.bundle import export_run, read_bundle
from filterscope.runs.process import train
from filterscope.training.config import TrainConfig
from filterscope.training.events import Status

OUT = Path(__file__).resolve().parent.parent / "app" / "record" / "data" / "pretrained.sqlite"
# Snapshots every 50 batches (and the dense start, and each epoch's end): the shipped file stays small while
# the filters' formation can still be replayed moment by moment.
# init "small" (every conv layer), the default when the shipped run was made: this script makes it again.
CONFIG = TrainConfig(model="tiny", dataset="fashion-mnist", epochs=5, seed=0, snapshot_every=50, init="small")

log = logging.getLogger("pretrain")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=OUT, help="where to write the bundle")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    with tempfile.TemporaryDirectory() as tmp:
        began = time.perf_counter()
        run_id, _token, status = train(CONFIG, Path(tmp), threads=1, say=False)
        if status is not Status.FINISHED:
            log.error("pretrain: the run ended %s", status.value)
            return 1
        args.out.parent.mkdir(parents=True, exist_ok=True)
        export_run(Path(tmp) / "runs.db", run_id, args.out)
    bundle = read_bundle(args.out)
    accuracy = bundle.rows["runs"][1][0][5]  # the epochs' JSON
    log.info("pretrain: run %s in %.0f s, %d snapshots, %.2f MB -> %s; epochs %s", run_id,
             time.perf_counter() - began, len(bundle.rows["snapshots"][1]), args.out.stat().st_size / 1e6,
             args.out, accuracy)
    return 0


if __name__ == "__main__":
    sys.exit(main())
