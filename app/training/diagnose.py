"""Warnings that explain: a run that has died, stalled at chance or is blowing up, said in one sentence with
its likely cause and what to try.

The three failures a learning rate causes look alike at the end (loss about ln(classes), 10 % accuracy) and
differ in how they get there. Too large: the loss jumps up (overshoot), or the ReLUs are pushed where they
never fire again and no gradient flows (dead). Too small: the loss stays at chance because each step moves
the weights by almost nothing. So the diagnosis watches, per batch, the loss and each conv layer's update
ratio ||dW_step|| / ||W|| (about 1e-3 is the usual healthy size), and per snapshot how many filters got no
gradient at all. Each warning is raised once per run; a healthy default run raises none (tests hold it to
that for every data set). Advice never suggests what the run already uses: a learning rate it has, or the
initial weights it started from.
"""

from __future__ import annotations

import math
from collections import deque

import numpy as np

from .events import WarningEvent

# Learning rates that train `tiny` on mnist within an epoch, per optimizer (what a message suggests; measured by
# bench/bench_lrs.py from the default initial weights, small in the first layer): SGD sits at chance for the
# whole first epoch at 0.01, learns at 0.05-0.5 (88-94 %, best at 0.1-0.3) and diverges at 1.0 (from small
# weights in every layer it dies there); momentum learns at 0.01-0.05 (91-95 %) and dies at 0.3; Adam learns
# at 0.0005-0.05 (best at 0.005) and dies at 1.0.
GOOD_LR = {"sgd": (0.1, 0.3), "momentum": (0.02, 0.05), "adam": (0.0005, 0.005)}
OPTIMIZER_NAMES = {"sgd": "SGD", "momentum": "SGD with momentum", "adam": "Adam"}

# The network has died when, at every snapshot for DEAD_STEPS steps, a conv layer's filters all get no gradient
# at all (their ReLU is zero for every image of the batch: nothing flows back through it, ever again), or more
# than DEAD_SHARE of them do while the loss sits at chance. A silent majority alone is no death: with small
# initial weights a healthy `classic` run has 59 of conv3's 64 filters silent at step 120, and half of tiny's
# conv2 is silent for its first dozen batches.
DEAD_SHARE = 0.5
DEAD_STEPS = 100
STALL_STEPS = 200  # how long a run may sit at chance before it is told so
STALL_WINDOW = 100  # batches averaged to decide it sits there
STALL_SHARE = 0.9  # "at chance": mean loss at least this share of ln(classes)
EXPLODE_WINDOW = 10
EXPLODE_FACTOR = 2.0  # the loss is exploding above this multiple of chance (confidently wrong)
SMALL_RATIO = 1e-4  # update ratios below this: steps too small to learn in a reasonable time
LARGE_RATIO = 1e-2  # above this: every step rewrites a good part of the weights



INIT_NAMES = {"small-first": "small initial weights in the first layer only",
              "small": "small initial weights in every layer", "default": "PyTorch's default initial weights"}


def diverged(value: float, step: int, epoch: int, lr: float, optimizer: str) -> str:
    """Why a run whose loss became `value` at `step` (1-based, in `epoch`) ended, and what to try."""
    lo, hi = GOOD_LR.get(optimizer, GOOD_LR["sgd"])
    name = OPTIMIZER_NAMES.get(optimizer, optimizer)
    # Smaller than the one that diverged, whatever it was: the good range if it lies below, else a tenth of it.
    advice = f"{lo:g}-{hi:g}" if hi < lr else f"{lo:g}" if lo < lr else f"{lr / 10:g}"
    return (f"The loss became {value} at step {step} (epoch {epoch}): the learning rate {lr:g} is too high for "
            f"{name}. Start again with a smaller one (try {advice}).")


def _lr_advice(optimizer: str, lr: float | None = None) -> str:
    """The learning rates that train `tiny` on mnist for `optimizer`; the other end of them if `lr` is within."""
    lo, hi = GOOD_LR.get(optimizer, GOOD_LR["sgd"])
    if lr is not None and lo <= lr <= hi:
        other = lo if lr - lo > hi - lr else hi  # the end farther from what the run already uses
        return f"try {other:g} (the learning rates that train tiny on mnist: {lo:g}-{hi:g})"
    return f"try {lo:g}-{hi:g}"


def _other_init(init: str | None) -> str:
    """', or X,' naming the initial weights the run did not start from ('' when they are not known)."""
    other = {"small-first": "default", "small": "small-first", "default": "small-first"}.get(init or "")
    return f", or {INIT_NAMES[other]}," if other else ""


class Diagnosis:
    """Watches one run's batches and snapshots (training thread); returns the warnings due, each once."""

    def __init__(self, classes: int, optimizer: str, init: str | None = None) -> None:
        self.chance = math.log(classes)  # the cross-entropy of a uniform guess
        self.optimizer = optimizer
        self.init = init  # the run's initial weights (config.InitName; None: not known, not advised on)
        self.raised: set[str] = set()
        self._losses: deque[float] = deque(maxlen=STALL_WINDOW)
        self._sum = 0.0  # of the losses in the window, and of its last EXPLODE_WINDOW: kept as they come
        self._recent = 0.0
        self._ratios: deque[float] = deque(maxlen=STALL_WINDOW)  # the largest layer's ratio of each batch
        self._first: float | None = None  # the first batch's loss: the network as it began (before any step told)
        self._dead_since: dict[str, int] = {}  # per layer, the step since which most of its filters are silent

    def _name(self) -> str:
        return OPTIMIZER_NAMES.get(self.optimizer, self.optimizer)

    def _too_high(self, lr: float) -> bool:
        return lr > GOOD_LR.get(self.optimizer, GOOD_LR["sgd"])[1]

    def _too_low(self, lr: float) -> bool:
        return lr < GOOD_LR.get(self.optimizer, GOOD_LR["sgd"])[0]

    def batch(self, step: int, loss: float, ratios: dict[str, float], lr: float) -> list[WarningEvent]:
        """Take one batch's loss and update ratios; the warnings that are due now."""
        out: list[WarningEvent] = []
        if math.isfinite(loss):
            if len(self._losses) == STALL_WINDOW:
                self._sum -= self._losses[0]
            if len(self._losses) >= EXPLODE_WINDOW:
                self._recent -= self._losses[-EXPLODE_WINDOW]
            self._losses.append(loss)
            self._sum += loss
            self._recent += loss
            if self._first is None:
                self._first = loss
        finite = [r for r in ratios.values() if math.isfinite(r)]
        if finite:
            self._ratios.append(max(finite))
        if "exploding" not in self.raised and len(self._losses) >= EXPLODE_WINDOW and self._first is not None:
            now, start = self._recent / EXPLODE_WINDOW, self._first
            if now > EXPLODE_FACTOR * max(self.chance, start):
                cause = (f"the learning rate {lr:g} is too high for {self._name()}: each step overshoots; "
                         f"{_lr_advice(self.optimizer)}") if self._too_high(lr) else \
                    f"each step overshoots; try a smaller learning rate than {lr:g}"
                out.append(self._raise("exploding", step,
                                       f"The loss is exploding ({now:.3g} over the last {EXPLODE_WINDOW} batches "
                                       f"at step {step}, against {start:.3g} at the first batch; chance is "
                                       f"{self.chance:.3g}): {cause}."))
        if "stalled" not in self.raised and "dead" not in self.raised and step >= STALL_STEPS \
                and len(self._losses) == STALL_WINDOW:
            mean = self._sum / STALL_WINDOW
            if mean >= STALL_SHARE * self.chance:
                out.append(self._raise("stalled", step, self._stalled(step, mean, lr)))
        return out

    def _at_chance(self) -> bool:
        """The recent loss is about that of a uniform guess."""
        recent = list(self._losses)[-STALL_WINDOW // 2:]
        return bool(recent) and float(np.mean(recent)) >= STALL_SHARE * self.chance

    def _stalled(self, step: int, mean: float, lr: float) -> str:
        ratio = float(np.median(self._ratios)) if self._ratios else float("nan")
        where = (f"The loss has stayed at chance ({mean:.3g} over the last {STALL_WINDOW} batches, "
                 f"ln(classes) = {self.chance:.3g}) after {step} steps")
        if (math.isfinite(ratio) and ratio < SMALL_RATIO) or self._too_low(lr):
            return (f"{where}: the learning rate {lr:g} is too small for {self._name()}, each step moves the conv "
                    f"weights by {ratio:.1e} of their size, too little to leave the start; "
                    f"{_lr_advice(self.optimizer)}.")
        if (math.isfinite(ratio) and ratio > LARGE_RATIO) or self._too_high(lr):
            return (f"{where}: the learning rate {lr:g} is too high for {self._name()}, each step overshoots "
                    f"(it moves the conv weights by {ratio:.1e} of their size; about 1e-3 learns); "
                    f"{_lr_advice(self.optimizer)}.")
        return (f"{where}: the weights move (by {ratio:.1e} of their size a step) but the loss does not follow; "
                f"try another learning rate than {lr:g} for {self._name()} ({_lr_advice(self.optimizer, lr)})"
                f"{_other_init(self.init).rstrip(',')}.")

    def snapshot(self, step: int, grads: dict[str, np.ndarray], lr: float) -> list[WarningEvent]:
        """Take one trained snapshot's dL/dW per conv layer, (O, I, kh, kw) each; the warnings due now."""
        dying: list[tuple[str, int, int]] = []
        for name, grad in grads.items():
            filters = grad.shape[0]
            silent = int((np.abs(grad.reshape(filters, -1)).max(axis=1) == 0).sum()) if grad.size else 0
            if not filters or silent <= DEAD_SHARE * filters:
                self._dead_since.pop(name, None)
                continue
            since = self._dead_since.setdefault(name, step)
            if step - since >= DEAD_STEPS and (silent == filters or self._at_chance()):
                dying.append((name, silent, filters))
        if not dying or "dead" in self.raised:
            return []
        what = ", ".join(f"{silent} of {filters} filters of {name}" for name, silent, filters in dying)
        if self._too_high(lr):
            cause = f"the learning rate {lr:g} is too high for {self._name()}; {_lr_advice(self.optimizer)}"
        else:
            cause = f"a smaller learning rate than {lr:g}{_other_init(self.init)} may keep them alive"
        return [self._raise("dead", step, f"The ReLUs have died: {what} got no gradient at all for "
                                          f"{DEAD_STEPS} steps (they never fire, so they cannot learn again); "
                                          f"{cause}.")]

    def _raise(self, kind: str, step: int, message: str) -> WarningEvent:
        self.raised.add(kind)
        return WarningEvent(kind, step, message)
