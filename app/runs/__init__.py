"""The runs a server holds: the manager (manager.py), the queue (queue.py), a run and its handle (run.py,
handle.py), this server's training threads (local.py), and runs other processes append (follow.py)."""

from .manager import CLOSE_RUN_REMOVED, NotResumable, RunManager
from .queue import MAX_QUEUED, Sweep, TooManyRuns, Waiting
from .run import Run

__all__ = ["CLOSE_RUN_REMOVED", "MAX_QUEUED", "NotResumable", "Run", "RunManager", "Sweep", "TooManyRuns", "Waiting"]
