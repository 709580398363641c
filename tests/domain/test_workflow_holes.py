"""Filling a logic-free template's holes gives exactly the graph that rendering it with Jinja
and parsing the JSON gives; any other template keeps rendering."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from stargraph.domain.jobs import JobParams
from stargraph.domain.types import Priority
from stargraph.domain.workflow_holes import GraphWithHoles
from stargraph.domain.workflows import WorkflowCatalog, _environment, _parse_graph
from stargraph.settings import PROJECT_ROOT

WORKFLOWS = PROJECT_ROOT / "workflows"
T2I = (WORKFLOWS / "t2i.json.j2").read_text()
VARIABLES = ("job_id", "filename_prefix", "model", "positive", "negative", "width", "height",
             "count", "steps", "cfg", "sampler", "scheduler", "seed")  # fmt: skip

json_scalars = st.one_of(
    st.text(),
    st.integers(min_value=-(2**63), max_value=2**63),
    st.floats(allow_nan=False, allow_infinity=False),
    st.booleans(),
    st.none(),
)


def compiled(source: str) -> GraphWithHoles | None:
    return GraphWithHoles.compile(_environment(), source, VARIABLES, _parse_graph)


def rendered(source: str, values: dict[str, object]) -> Any:
    return _parse_graph(_environment().from_string(source).render(**values))


@settings(max_examples=300, deadline=None)  # timings vary on a loaded CI machine
@given(st.fixed_dictionaries({name: json_scalars for name in VARIABLES}))
def test_filling_t2i_equals_rendering_it(values: dict[str, object]) -> None:
    holes = compiled(T2I)
    assert holes is not None
    filled = holes.fill(values)
    assert json.dumps(filled) == json.dumps(rendered(T2I, values))  # types and order too
    for name in ("positive", "seed", "cfg"):
        assert type(filled[_where(name)[0]]["inputs"][_where(name)[1]]) is type(values[name])


def _where(name: str) -> tuple[str, str]:
    return {"positive": ("6", "text"), "seed": ("3", "seed"), "cfg": ("3", "cfg")}[name]


def test_each_fill_is_a_new_graph() -> None:
    holes = compiled(T2I)
    assert holes is not None
    values = dict.fromkeys(VARIABLES, "x")
    first, second = holes.fill(values), holes.fill(values)
    first["6"]["inputs"]["clip"].append("changed")
    first["3"]["inputs"]["denoise"] = 0.5
    assert second["6"]["inputs"]["clip"] == ["4", 1]
    assert second["3"]["inputs"]["denoise"] == 1.0


def test_values_tojson_refuses_are_refused_and_others_round_trip() -> None:
    holes = compiled(T2I)
    assert holes is not None
    values: dict[str, object] = dict.fromkeys(VARIABLES, 1)
    with pytest.raises(ValueError):
        holes.fill({**values, "cfg": math.nan})
    with pytest.raises(TypeError):
        holes.fill({**values, "cfg": object()})
    graph = holes.fill({**values, "positive": ("a", 1)})
    assert graph["6"]["inputs"]["text"] == ["a", 1]  # a tuple becomes a list, as in JSON


@pytest.mark.parametrize(
    "source",
    [
        '{"1": {"class_type": {% if width > 512 %}"A"{% else %}"B"{% endif %}, "inputs": {}}}',
        '{"1": {"class_type": "A", "inputs": {"w": {{ (width * 2) | tojson }}}}}',
        '{"1": {"class_type": "A", "inputs": {"w": {{ width | tojson(indent=2) }}}}}',
        '{"1": {"class_type": "A", "inputs": { {{ model | tojson }}: 1}}}',
    ],
)
def test_templates_with_logic_or_keys_from_values_keep_rendering(source: str) -> None:
    assert compiled(source) is None


def test_the_catalog_fills_t2i_and_renders_a_template_with_logic(tmp_path: Path) -> None:
    (tmp_path / "t2i.toml").write_text((WORKFLOWS / "t2i.toml").read_text())
    (tmp_path / "t2i.json.j2").write_text(
        T2I.replace('"denoise": 1.0', '"denoise": {% if steps > 10 %}1.0{% else %}0.9{% endif %}')
    )
    with_logic = WorkflowCatalog.load(tmp_path)
    plain = WorkflowCatalog.load(WORKFLOWS)
    assert plain._compiled["t2i"].holes is not None
    assert with_logic._compiled["t2i"].holes is None
    params = JobParams(
        prompt="p", negative_prompt="n", count=2, width=640, height=768, steps=25, cfg=7.5,
        sampler="euler", scheduler="normal", model="m.safetensors", seed=42, workflow="t2i",
        priority=Priority.NORMAL,
    )  # fmt: skip
    job_id = "6f1c2b1e-3d4a-4b5c-8d6e-7f8091a2b3c4"
    assert with_logic.render("t2i", job_id, params, "p", "n") == plain.render(
        "t2i", job_id, params, "p", "n"
    )
