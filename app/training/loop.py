"""The bare training loop: one batch at a time, with every piece of state it needs to stop and go on exactly.

This is the seed's story and nothing else: pick the next batch, forward, cross-entropy loss, backward (dL/dW
for every kernel entry), optimizer step (W moves against it, scaled by the learning rate). Everything random
(initial weights, the epoch's order, augmentation, dropout) comes from the run's own generator, and
`state()` / `TrainLoop.restore` capture and bring back all of it, so a run continued from a checkpoint takes
the same steps, bit for bit on the same thread count, as one that never stopped.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from .config import TrainConfig
from .data import Tensors, augment_shift, balanced_subset, to_tensors
from .datasets import DatasetInfo, get_dataset
from .models import INIT_SCALES, build_model, init_weights
from .transfer import Fit, check_freeze, fit, trainable

# Each optimizer's settings besides lr and weight decay: one place, which the page reads (boot data
# `optimizers`) to work an update out with the same numbers. PyTorch's defaults for Adam; 0.9, the usual
# momentum, averages about the last ten gradients.
OPTIMIZERS: dict[str, dict[str, Any]] = {
    "sgd": {"momentum": 0.0},
    "momentum": {"momentum": 0.9},
    "adam": {"betas": (0.9, 0.999), "eps": 1e-8},
}


class Diverged(Exception):
    """The loss became NaN or infinite."""

    def __init__(self, value: float) -> None:
        super().__init__(value)
        self.value = value


class TrainLoop:
    """A model, its optimizer and generator, and where in the data the run is."""

    def __init__(self, config: TrainConfig, info: DatasetInfo, device: torch.device,
                 initial: dict[str, torch.Tensor] | None = None) -> None:
        """`initial`: the whole model's state at step 0, for a run that starts from another's weights (its
        start record, transfer.py); the random draws happen all the same, so the generator's state after them,
        and with it the order of the images, is the same as a run from scratch's."""
        self.config = config
        self.info = info
        self.device = device
        self.generator = torch.Generator().manual_seed(config.seed)
        self.model = build_model(config.model, info.channels, info.size, len(info.classes), config.dropout)
        init_weights(self.model, self.generator, INIT_SCALES[config.init])
        if initial is not None:
            self.model.load_state_dict(initial)
        self.model.to(device)
        self.optimizer = self._optimizer()
        self.train_count = train_count(config, info)
        self.steps_per_epoch = math.ceil(self.train_count / config.batch_size)
        self.total_steps = self.steps_per_epoch * config.epochs
        self.lr = config.lr  # the base rate a person set; the schedule scales it
        self.current_lr = config.lr  # the rate of the latest batch
        self.step_count = 0  # optimizer steps done
        self.samples_seen = 0
        self.epoch = 0  # completed epochs
        self.batch = 0  # batches done in the current epoch
        self.epoch_loss = 0.0  # sum of loss x batch size over the current epoch
        self.epoch_count = 0
        self._order: torch.Tensor | None = None  # (N,) this epoch's order, drawn at its first batch
        self._order_from: torch.Tensor | None = None  # the generator's state it was drawn from (32x smaller)
        self._data: Tensors | None = None
        self._train_sample: tuple[torch.Tensor, torch.Tensor] | None = None

    @property
    def data(self) -> Tensors:
        """The data set on the training device, loaded on first use."""
        if self._data is None:
            data = to_tensors(get_dataset(self.config.dataset), self.device)
            if self.train_count < data.x_train.shape[0]:
                keep = torch.from_numpy(balanced_subset(data.y_train.cpu().numpy(), self.train_count)).to(self.device)
                data = Tensors(data.x_train[keep], data.y_train[keep], data.x_test, data.y_test)
            self._data = data
        return self._data

    @property
    def train_sample(self) -> tuple[torch.Tensor, torch.Tensor]:
        """The fixed training images whose accuracy every epoch reports: as many as the test set has (or all)."""
        if self._train_sample is None:
            data = self.data
            count = min(data.x_train.shape[0], data.x_test.shape[0])
            keep = torch.from_numpy(balanced_subset(data.y_train.cpu().numpy(), count)).to(self.device)
            self._train_sample = (data.x_train[keep], data.y_train[keep])
        return self._train_sample

    @property
    def done(self) -> bool:
        """True once every epoch is trained."""
        return self.epoch >= self.config.epochs

    @property
    def epoch_complete(self) -> bool:
        """True after the last batch of an epoch, until `end_epoch`."""
        return self.batch >= self.steps_per_epoch

    def train_batch(self) -> float:
        """Train on the next batch; return its loss (Diverged if it is not finite)."""
        cfg, data = self.config, self.data
        if self._order is None:
            self._order_from = self.generator.get_state()
            self._order = torch.randperm(data.x_train.shape[0], generator=self.generator).to(self.device)
        idx = self._order[self.batch * cfg.batch_size:(self.batch + 1) * cfg.batch_size]
        x, y = data.x_train[idx], data.y_train[idx]  # (B, C, H, W), (B,)
        if cfg.augment:
            x = augment_shift(x, self.generator)
        self._schedule()
        self.optimizer.zero_grad(set_to_none=True)
        loss = F.cross_entropy(self.model(x), y)
        loss.backward()  # type: ignore[no-untyped-call]  # dL/dW for every kernel entry
        self.optimizer.step()  # W <- W - lr * (the optimizer's direction)
        value = float(loss.item())
        if not math.isfinite(value):
            raise Diverged(value)
        n = int(y.shape[0])
        self.step_count += 1
        self.samples_seen += n
        self.batch += 1
        self.epoch_loss += value * n
        self.epoch_count += n
        return value

    def end_epoch(self) -> float:
        """Close the epoch that just completed; return its mean training loss."""
        mean = self.epoch_loss / max(1, self.epoch_count)
        self.epoch += 1
        self.batch, self.epoch_loss, self.epoch_count, self._order, self._order_from = 0, 0.0, 0, None, None
        return mean

    def evaluate(self, observe: Callable[[int], None] | None = None) -> tuple[float, float]:
        """Test loss and accuracy, in eval mode (no generator draws: training is not disturbed).

        `observe(first)` is told the test index of each batch's first image before its forward pass, so that
        forward hooks can watch this pass (the filter analysis) instead of paying for a second one.
        """
        return self._measure(self.data.x_test, self.data.y_test, observe)

    def train_accuracy(self) -> float:
        """Accuracy on the fixed training sample, in eval mode as the test accuracy is: the two compare."""
        return self._measure(*self.train_sample)[1]

    def _measure(self, xs: torch.Tensor, ys: torch.Tensor, observe: Callable[[int], None] | None = None,
                 ) -> tuple[float, float]:
        """Mean loss and accuracy of the model on (N, C, H, W) images `xs` with labels `ys`, in eval mode."""
        model = self.model
        model.eval()
        total_loss, correct = 0.0, 0
        with torch.no_grad():
            for i in range(0, xs.shape[0], 1000):
                x, y = xs[i:i + 1000], ys[i:i + 1000]
                if observe is not None:
                    observe(i)
                logits = model(x)
                total_loss += float(F.cross_entropy(logits, y, reduction="sum"))
                correct += int((logits.argmax(1) == y).sum())
        model.train()
        n = xs.shape[0]
        return total_loss / n, correct / n

    def _optimizer(self) -> torch.optim.Optimizer:
        cfg = self.config
        params = trainable(self.model, cfg.freeze)  # a frozen layer's weights are not the optimizer's to move
        settings = OPTIMIZERS[cfg.optimizer]
        if cfg.optimizer == "adam":
            return torch.optim.Adam(params, lr=cfg.lr, weight_decay=cfg.weight_decay, betas=settings["betas"],
                                    eps=settings["eps"])
        return torch.optim.SGD(params, lr=cfg.lr, momentum=settings["momentum"], weight_decay=cfg.weight_decay)

    def _schedule(self) -> None:
        """Set this batch's learning rate: `lr` scaled by the schedule at this point of the run."""
        factor = 1.0
        if self.config.lr_schedule == "cosine":
            factor = 0.5 * (1 + math.cos(math.pi * self.step_count / self.total_steps))
        self.current_lr = self.lr * factor
        for group in self.optimizer.param_groups:
            group["lr"] = self.current_lr

    # ---- checkpoints -------------------------------------------------------------------------------------

    def model_state(self) -> dict[str, torch.Tensor]:
        """A CPU copy of the model's weights."""
        return dict(_cpu_copy(self.model.state_dict()))

    def state(self) -> dict[str, Any]:
        """Everything needed to go on exactly from here, as CPU copies."""
        return {
            "model": self.model_state(),
            "optimizer": _cpu_copy(self.optimizer.state_dict()),
            "generator": self.generator.get_state(),
            "order_from": self._order_from,  # the epoch's order is drawn again from it
            "counters": {"lr": self.lr, "current_lr": self.current_lr, "step_count": self.step_count,
                         "samples_seen": self.samples_seen, "epoch": self.epoch, "batch": self.batch,
                         "epoch_loss": self.epoch_loss, "epoch_count": self.epoch_count},
        }

    @classmethod
    def restore(cls, config: TrainConfig, info: DatasetInfo, device: torch.device,
                state: dict[str, Any]) -> TrainLoop:
        """A loop that goes on from `state` (which must hold the optimizer's state)."""
        if state.get("optimizer") is None:
            raise ValueError("This checkpoint holds the model only; training cannot go on from it.")
        loop = cls(config, info, device)  # its random start is overwritten at once: no `initial` needed
        loop.model.load_state_dict(state["model"])
        loop.optimizer.load_state_dict(state["optimizer"])
        loop.generator.set_state(state["generator"])
        if state["order_from"] is not None:
            drawn = torch.Generator()
            drawn.set_state(state["order_from"])
            loop._order_from = state["order_from"]
            loop._order = torch.randperm(loop.data.x_train.shape[0], generator=drawn).to(device)
        for name, value in state["counters"].items():
            setattr(loop, name, value)
        return loop


def train_count(config: TrainConfig, info: DatasetInfo) -> int:
    """How many training images a run trains on (ValueError if its subset asks for more than there are)."""
    subset = config.train_subset
    if subset is None:
        return info.train_count
    if subset > info.train_count:
        raise ValueError(f"train_subset {subset} is larger than the {config.dataset} training set "
                         f"({info.train_count} images); ask for at most {info.train_count}, or leave it empty.")
    return subset


def _cpu_copy(value: Any) -> Any:
    """A deep copy of a (nested) state dict with every tensor cloned to the CPU."""
    if isinstance(value, torch.Tensor):
        return value.detach().to("cpu", copy=True)
    if isinstance(value, dict):
        return {k: _cpu_copy(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_cpu_copy(v) for v in value]
    return value


def model_only(config: TrainConfig, info: DatasetInfo, state: dict[str, Any]) -> nn.Module:
    """A CPU model in eval mode with the weights of `state["model"]`."""
    model = build_model(config.model, info.channels, info.size, len(info.classes), config.dropout)
    model.load_state_dict(state["model"])
    model.eval()
    return model


def fine_tune_start(config: TrainConfig, info: DatasetInfo, source: dict[str, torch.Tensor],
                    what: str) -> tuple[dict[str, torch.Tensor], Fit]:
    """A fine-tuned run's whole model at step 0: its own random start (drawn from its seed, as any run's),
    with every layer of `source` (named `what` in messages) that fits. ValueError with a sentence if nothing
    fits, or `config.freeze` names a layer that would stay random."""
    model = TrainLoop(config, info, torch.device("cpu")).model
    fitted = fit(model, source, what)
    if not fitted.taken:
        first = fitted.fresh[0]
        raise ValueError(f"Nothing of {what} fits a {config.model} model for {config.dataset}: {first.reason}. "
                         "Start from a run of the same model.")
    check_freeze(model, config.freeze, fitted)
    return dict(_cpu_copy(model.state_dict())), fitted
