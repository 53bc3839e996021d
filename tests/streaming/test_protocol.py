"""The socket's text messages: 4-significant-digit rounding as Python's own formatting does it, nulls for
missing numbers, and every message's text a JSON object with its type tag that reads back to what was sent."""

from __future__ import annotations

import dataclasses
import json
import math

import numpy as np
import pytest

from filterscope.streaming.protocol import (
    PROTOCOL_VERSION,
    Analysed,
    Epoch,
    Error,
    Hello,
    StatusChange,
    Steps,
    TextMessage,
    WarningMessage,
    finite,
    nulls,
    significant4,
)

# Where it matters (update ratios ~1e-6..10, q8s scales of feature maps) and well beyond, with the values that
# round up a digit (0.99995, 9999.5), ties, both zeros and both signs.
EDGES = [0.0, -0.0, 1.0, -1.0, 0.5, 2.5, 1.0005, 0.99995, 9999.5, 99995.0, -1.23456, 0.00012345, 123456789.0,
         1e-19, -9.99e-20, 1e25, 3e25, 1.17549435e-38, 3.4028235e38, 1e-300, 1e-30, 1e154]
# Outside 1e-19..1e25 scaling by 10**k would come back an ulp away from formatting's (1.5e-20), and past ~1e154
# or under ~1e-305 10**k overflows: those values are formatted instead.
FAR = [1.5e-20, 3.898e-36, 1e300, -1e308, 5e-324]


def by_format(values: list[float]) -> list[float]:
    return [float(f"{v:.4g}") for v in values]


def test_significant4_gives_the_doubles_of_python_formatting() -> None:
    got = significant4(np.array(EDGES))
    assert got.dtype == np.float64 and got.tolist() == by_format(EDGES)
    rng = np.random.default_rng(3)
    values = 10.0 ** rng.uniform(-19, 25, 50_000) * rng.choice([1, -1], 50_000)
    assert significant4(values).tolist() == by_format(values.tolist())
    single = values.astype(np.float32)  # what the ratios and the q8s scales are made from
    assert significant4(single).tolist() == by_format(single.tolist())


@pytest.mark.parametrize("value", FAR)
def test_significant4_far_out(value: float) -> None:
    assert significant4(np.array([value])).tolist() == by_format([value])


def test_significant4_makes_every_missing_number_nan_and_nulls_makes_it_null() -> None:
    got = significant4(np.array([np.nan, np.inf, -np.inf, 0.001234567]))
    assert np.isnan(got[:3]).all() and got[3] == 0.001235
    assert nulls(got) == [None, None, None, 0.001235]
    assert nulls(np.array([0.0, -2.5, 1e-40])) == [0.0, -2.5, 1e-40]
    assert [finite(x) for x in (None, 0.0, -1.5, math.nan, math.inf, -math.inf)] == [None, 0.0, -1.5, None, None,
                                                                                    None]


MESSAGES: list[TextMessage] = [
    Steps([1, 2, 3], [2.302, None, 0.5], {"conv1": [0.001235, None, 2e-05], "conv2": []}),
    Epoch(epoch=1, step=250, train_loss=0.41, test_loss=None, test_accuracy=0.95, lr=0.005, wall_time=3.25,
          train_accuracy=0.99),
    Epoch(epoch=2, step=500, train_loss=0.2, test_loss=0.3, test_accuracy=0.96, lr=0.0025, wall_time=6.5),
    StatusChange("paused", None, 1, 260, 0.002, 8320),
    StatusChange("failed", "RuntimeError: out of kernels", 0, 3, 0.005),
    WarningMessage("stalled", 200, "The loss has stayed at chance (2.30) for 200 steps."),
    Error("The loss became NaN at step 12: the learning rate 10 is too high."),
    Analysed(seq=7, step=250, epoch=1, analysis_seconds=0.125),
]


@pytest.mark.parametrize("message", MESSAGES, ids=lambda m: f"{m.type}")
def test_each_message_reads_back_from_its_text_with_its_type_tag(message: TextMessage) -> None:
    text = message.text()
    body = json.loads(text)
    assert body["type"] == message.type
    fields = {f.name: getattr(message, f.name) for f in dataclasses.fields(message)}
    assert body == {"type": message.type, **fields}
    assert type(message)(**{k: v for k, v in body.items() if k != "type"}) == message
    assert text == json.dumps(body, separators=(",", ":"))  # compact: no padding on the wire
    assert message.droppable is False  # only snapshot frames may be skipped by a slow client


def test_the_type_tags_are_distinct_and_what_docs_protocol_names() -> None:
    tags = [cls.type for cls in (Hello, Steps, Epoch, StatusChange, WarningMessage, Error, Analysed)]
    assert tags == ["hello", "steps", "epoch", "status", "warning", "error", "analysis"]


def test_hello_carries_the_protocol_version_and_the_run_as_it_is() -> None:
    run = {"id": "r1", "status": "finished", "history": [{"epoch": 1, "test_accuracy": 0.9}], "lr": 0.005}
    body = json.loads(Hello(run).text())
    assert body == {"type": "hello", "v": PROTOCOL_VERSION, "run": run}
    assert PROTOCOL_VERSION == 2


def test_missing_numbers_travel_as_null_never_as_nan() -> None:
    # A browser's JSON.parse refuses NaN and Infinity: finite() and nulls() are how a message is made to carry null.
    text = Steps([1], [finite(float("nan"))], {"conv1": nulls(significant4(np.array([np.inf])))}).text()
    assert "NaN" not in text and "Infinity" not in text
    assert json.loads(text) == {"type": "steps", "steps": [1], "losses": [None], "ratios": {"conv1": [None]}}
