"""The pages' boot data, and the run form rendered from the run config's JSON schema: the form, the API and
the docs cannot disagree on a field, a bound, a default or a choice."""

from __future__ import annotations

import json
import math
import re
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

from fastapi.testclient import TestClient

from filterscope.api.pages import OFF_FORM
from filterscope.schemas import RunConfig
from filterscope.training.config import CHOICE_TITLES
from filterscope.training.events import status_table
from tests.training.test_registry import registered_dataset

ROOT = Path(__file__).resolve().parents[2]


class FormParser(HTMLParser):
    """The run form's controls by name: their attributes, the label around them, their options; and the boot."""

    def __init__(self) -> None:
        super().__init__()
        self.fields: dict[str, dict[str, Any]] = {}
        self.label: dict[str, Any] | None = None
        self.select: dict[str, Any] | None = None
        self.option: dict[str, Any] | None = None
        self.in_form = self.in_boot = False
        self.boot = ""

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        if tag == "form" and a.get("data-testid") == "run-form":
            self.in_form = True
        elif tag == "script" and a.get("id") == "boot":
            self.in_boot = True
        elif self.in_form and tag == "label":
            self.label = {"attrs": a, "text": ""}
        elif self.in_form and tag in ("input", "select") and a.get("name"):
            field = {"tag": tag, "attrs": a, "label": self.label, "options": []}
            self.fields[str(a["name"])] = field
            self.select = field if tag == "select" else None
        elif self.select is not None and tag == "option":
            self.option = {"attrs": a, "text": ""}
            self.select["options"].append(self.option)

    def handle_endtag(self, tag: str) -> None:
        if tag == "form":
            self.in_form = False
        elif tag == "script":
            self.in_boot = False
        elif tag == "label":
            self.label = None
        elif tag == "select":
            self.select = None
        elif tag == "option":
            self.option = None

    def handle_data(self, data: str) -> None:
        if self.in_boot:
            self.boot += data
        if self.option is not None:
            self.option["text"] += data
        elif self.label is not None:
            self.label["text"] += data


def parse(html: str) -> FormParser:
    parser = FormParser()
    parser.feed(html)
    return parser


def typed(prop: dict[str, Any]) -> dict[str, Any]:
    """A nullable field's own type (anyOf [it, null])."""
    return next((p for p in prop.get("anyOf", [prop]) if p.get("type") != "null"), prop)


def number(text: str | None) -> float | None:
    return None if text is None else float(text)


def test_every_field_of_the_schema_is_on_the_form_as_the_schema_says(client: TestClient) -> None:
    page = parse(client.get("/").text)
    schema = RunConfig.model_json_schema()
    props = schema["properties"]
    assert set(page.fields) == set(props) - OFF_FORM
    datasets = {d["name"]: d for d in client.get("/api/datasets").json()}
    models = {m["name"]: m for m in client.get("/api/models").json()}
    for name, field in page.fields.items():
        prop, attrs = props[name], field["attrs"]
        own = typed(prop)
        assert attrs["data-testid"] == f"field-{name}"
        label = field["label"]
        assert label["text"].strip() == prop["title"], name
        assert label["attrs"]["title"] == prop["description"], name
        if "enum" in own:
            assert field["tag"] == "select", name
            options = field["options"]
            assert [o["attrs"]["value"] for o in options] == own["enum"], name
            assert [o["attrs"]["value"] for o in options if "selected" in o["attrs"]] == [prop["default"]], name
            infos = datasets if name == "dataset" else models if name == "model" else {}
            titles = {v: infos[v]["title"] for v in infos} or CHOICE_TITLES[name]
            assert [o["text"] for o in options] == [titles[v] for v in own["enum"]], name
        elif own["type"] == "boolean":
            assert attrs["type"] == "checkbox" and ("checked" in attrs) == prop["default"], name
        else:
            assert attrs["type"] == "number", name
            default = prop["default"]
            assert (attrs["value"] == "") if default is None else float(attrs["value"]) == default, name
            step = attrs["step"]
            assert step == "1" if own["type"] == "integer" else step == "any" or float(step) > 0, name
            for inclusive, exclusive, attr, sign in (("minimum", "exclusiveMinimum", "min", 1),
                                                     ("maximum", "exclusiveMaximum", "max", -1)):
                shown = number(attrs.get(attr))
                if inclusive in own:
                    assert shown == own[inclusive], (name, attr)
                elif exclusive in own:
                    # The last value a step can reach short of the bound (the server refuses the bound itself).
                    bound = own[exclusive]
                    assert shown is not None, (name, attr)
                    if step == "any":
                        assert shown == bound, (name, attr)
                    else:
                        assert sign * (shown - bound) > 0 and math.isclose(shown - sign * float(step), bound), name
                else:
                    assert shown is None, (name, attr)


def test_the_boot_data_carries_the_schema_and_the_statuses(client: TestClient) -> None:
    for path in ("/", "/compare"):
        boot = json.loads(parse(client.get(path).text).boot)
        assert boot["config_schema"] == RunConfig.model_json_schema()
        assert boot["statuses"] == status_table()


def test_a_data_set_registered_at_run_time_is_a_choice_of_the_form(client: TestClient) -> None:
    with registered_dataset("halves"):
        page = parse(client.get("/").text)
        (option,) = [o for o in page.fields["dataset"]["options"] if o["attrs"]["value"] == "halves"]
        assert option["text"] == "Halves"
        assert json.loads(page.boot)["config_schema"]["properties"]["dataset"]["enum"][-1] == "halves"
    assert "halves" not in [o["attrs"]["value"] for o in parse(client.get("/").text).fields["dataset"]["options"]]


def test_the_protocol_lists_every_config_field_in_order_with_its_default() -> None:
    text = (ROOT / "docs/protocol.md").read_text()
    table = text[text.index("### Run config"):text.index("### Run\n")]
    rows = [[cell.strip() for cell in line.strip("|").split("|")] for line in table.splitlines()
            if line.startswith("| `")]
    assert [row[0].strip("`") for row in rows] == list(RunConfig.model_fields)
    defaults = RunConfig().model_dump(mode="json")
    for name, default, _bounds in rows:
        word = default.strip("`").split(" ")[0]
        assert (json.loads(word) if re.match(r"[-\d\[]|true|false|null", word) else word) == defaults[name.strip("`")]
