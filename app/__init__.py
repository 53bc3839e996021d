"""filterscope: watch a convolutional network learn its filters, live in the browser.

    import filterscope
    watcher = filterscope.watch(model, optimizer=opt)   # then watcher.step(loss) after each optimizer.step()

`watch` is imported when first used, so `filterscope serve` and the CLI do not pay for it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"
__all__ = ["Watcher", "__version__", "watch"]

if TYPE_CHECKING:
    from .watching import Watcher, watch


def __getattr__(name: str) -> Any:
    if name in ("watch", "Watcher"):
        from . import watching
        return getattr(watching, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
