"""`filterscope.watch`: a person's own PyTorch model, recorded from their own training script (watcher.py)."""

from .watcher import Watcher, watch

__all__ = ["Watcher", "watch"]
