"""What every helper process of the server runs first (the export processes, app/background.py).

Kept apart from the rest of the package on purpose: a spawned process imports this module to run `init`, and
anything heavier here (torch, ~200 MB) would be imported by every helper too.
"""

from __future__ import annotations

import os
import signal
import sys

from .memory import LIBC  # ctypes and gc only: light enough for a helper

_PR_SET_PDEATHSIG = 1  # prctl(2): a signal for this process when the thread that made it ends


def init(niceness: int) -> None:
    """Lower this process's priority, and on Linux end it with the server: a server killed outright (SIGKILL,
    out of memory) would otherwise leave its idle helpers behind, ~45 MB each, for good."""
    if hasattr(os, "setpriority"):
        os.setpriority(os.PRIO_PROCESS, 0, niceness)
    if sys.platform.startswith("linux"):
        if LIBC is not None:
            LIBC.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
        if os.getppid() == 1:  # the server died before the line above: nobody will ask this process for work
            os._exit(0)
