"""Run one bench against the code as it is and as it was at another commit, alternating, so the machine's
mood falls on both (the figures a change is judged by are these ratios, not one run's numbers).

    .venv/bin/python -m bench.side_by_side --ref a4212a0 --rounds 2 bench.bench_record --rounds 1

The older code is checked out in a temporary git worktree and run with this checkout's virtual environment
(its imports resolve to the worktree: the bench runs with the worktree as its working directory).
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
from pathlib import Path

from bench.common import ROOT


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--ref", required=True, help="the commit to compare with (e.g. the one before a change)")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("bench", help="the bench module, e.g. bench.bench_record")
    parser.add_argument("args", nargs=argparse.REMAINDER, help="its arguments")
    args = parser.parse_args()
    old = Path(tempfile.mkdtemp(prefix="filterscope-ref-")) / "tree"
    subprocess.run(["git", "worktree", "add", "--detach", str(old), args.ref], cwd=ROOT, check=True,
                   capture_output=True)
    try:
        for round_ in range(args.rounds):
            order = [("now", ROOT), (args.ref, old)] if round_ % 2 == 0 else [(args.ref, old), ("now", ROOT)]
            for name, tree in order:
                done = subprocess.run([sys.executable, "-m", args.bench, *args.args], cwd=tree, text=True,
                                      capture_output=True)
                failed = done.stderr[-2000:] if done.returncode else ""
                print(f"==== round {round_ + 1}, {name} ====\n{done.stdout}{failed}", flush=True)  # noqa: T201
    finally:
        subprocess.run(["git", "worktree", "remove", "--force", str(old)], cwd=ROOT, check=False, capture_output=True)


if __name__ == "__main__":
    main()
