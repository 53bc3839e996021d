"""Transfer learning: a run that starts from another run's weights, and layers that stay as they start.

A fine-tuned run builds its model as any run does (the same seed draws the same random weights, so it and a
run from scratch see the images in the same order), then takes every layer of the source's model whose
tensors have the same names and shapes here. A layer that does not fit (a classifier with another number of
classes, a first layer with another channel count, a dense layer after a different image size) keeps its
random start: it is re-initialised, and the run says which and why. A layer is taken whole or not at all.

Frozen layers are left out of the optimizer: no step, no weight decay, no momentum; their gradients are
still computed and shown (what the loss asks of them, though nothing moves them).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn


@dataclass(frozen=True)
class Fresh:
    """A layer that keeps its random start, and why."""

    layer: str
    reason: str

    def as_dict(self) -> dict[str, str]:
        return {"layer": self.layer, "reason": self.reason}


@dataclass(frozen=True)
class Fit:
    """What a model takes from a source's weights: the layers taken, and those re-initialised."""

    taken: tuple[str, ...]
    fresh: tuple[Fresh, ...]


def layer_of(name: str) -> str:
    """The layer a parameter or buffer belongs to: `conv1.weight` -> `conv1`."""
    return name.rpartition(".")[0] or name


def layers(model: nn.Module) -> list[str]:
    """The model's layers that hold parameters, in definition order: what a person can freeze."""
    seen: dict[str, None] = {}
    for name, _ in model.named_parameters():
        seen.setdefault(layer_of(name), None)
    return list(seen)


def _shape(t: torch.Tensor) -> str:
    return "×".join(str(d) for d in t.shape) or "a scalar"


def fit(model: nn.Module, source: dict[str, torch.Tensor], what: str = "the source") -> Fit:
    """Load into `model`, layer by layer, the tensors of `source` that fit (same names, same shapes)."""
    own = model.state_dict()
    by_layer: dict[str, list[str]] = {}
    for name in own:
        by_layer.setdefault(layer_of(name), []).append(name)
    taken: list[str] = []
    fresh: list[Fresh] = []
    for layer, names in by_layer.items():
        missing = [n for n in names if n not in source]
        wrong = [n for n in names if n in source and source[n].shape != own[n].shape]
        if missing:
            fresh.append(Fresh(layer, f"{what} has no layer {layer}"))
        elif wrong:
            n = wrong[0]
            fresh.append(Fresh(layer, f"{n} is {_shape(source[n])} in {what} and {_shape(own[n])} here"))
        else:
            taken.append(layer)
    with torch.no_grad():
        for layer in taken:
            for n in by_layer[layer]:
                own[n].copy_(source[n].to(own[n].dtype))
    return Fit(tuple(taken), tuple(fresh))


def check_freeze(model: nn.Module, freeze: tuple[str, ...], fitted: Fit | None) -> None:
    """ValueError with a sentence if `freeze` names a layer the model lacks, every layer, or one that would
    stay random (a frozen random layer learns nothing: its start is noise and stays noise)."""
    known = layers(model)
    for name in freeze:
        if name not in known:
            raise ValueError(f"freeze names {name[:40]!r}, which is not a layer of this model; its layers are "
                             f"{', '.join(known)}.")
    if freeze and set(known) <= set(freeze):
        raise ValueError(f"freeze names every layer ({', '.join(known)}): nothing would train. Leave at least one "
                         "layer, usually the last, to learn.")
    if fitted is not None:
        fresh = {f.layer: f.reason for f in fitted.fresh}
        for name in freeze:
            if name in fresh:
                raise ValueError(f"{name} cannot be frozen: it does not fit the source ({fresh[name]}), so it "
                                 "starts random, and a frozen random layer learns nothing.")


def trainable(model: nn.Module, freeze: tuple[str, ...]) -> list[nn.Parameter]:
    """The parameters the optimizer moves: every one outside the frozen layers, in the model's order."""
    frozen = set(freeze)
    return [p for name, p in model.named_parameters() if layer_of(name) not in frozen]
