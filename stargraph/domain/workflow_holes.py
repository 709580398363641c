"""A workflow template without logic, compiled once into a graph with holes.

A template with no tags (`{% … %}`) whose every `{{ … }}` is a plain variable through
`tojson` renders the same JSON each time but for those values, each a whole JSON value.
`GraphWithHoles.compile` renders it once with a marker for each variable and records where
the markers land; `fill` then builds fresh containers around the values: the graph that
rendering with Jinja and parsing the JSON would give, without either (they were most of a
submission's CPU outside I/O). Any other template returns None and keeps rendering.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from jinja2 import nodes
from jinja2.sandbox import ImmutableSandboxedEnvironment

_MARKER = "\x00stargraph-hole\x00"
_SCALARS = frozenset({str, int, float, bool, type(None)})  # exact types: no subclasses

Build = Callable[[Mapping[str, object]], Any]


class GraphWithHoles:
    """The compiled form of a logic-free template."""

    def __init__(self, build: Build) -> None:
        self._build = build

    @classmethod
    def compile(
        cls,
        env: ImmutableSandboxedEnvironment,
        source: str,
        variables: Iterable[str],
        parse: Callable[[str], Any],
    ) -> GraphWithHoles | None:
        """None unless `source` is logic-free. `parse` reads the rendered text (the
        catalog's strict JSON reader); its errors propagate."""
        if not _logic_free(env.parse(source)):
            return None
        markers = {name: _MARKER + name for name in variables}
        skeleton = parse(env.from_string(source).render(**markers))
        holes = {marker: name for name, marker in markers.items()}
        build = _builder(skeleton, holes)
        return None if build is None else cls(build)

    def fill(self, values: Mapping[str, object]) -> dict[str, Any]:
        """A new graph with `values` in the holes (ValueError for a value `tojson` refuses)."""
        graph: dict[str, Any] = self._build(values)
        return graph


def _logic_free(tree: nodes.Template) -> bool:
    for statement in tree.body:
        if not isinstance(statement, nodes.Output):
            return False
        for child in statement.nodes:
            if isinstance(child, nodes.TemplateData):
                continue
            if not (
                isinstance(child, nodes.Filter)
                and child.name == "tojson"
                and isinstance(child.node, nodes.Name)
                and not (child.args or child.kwargs or child.dyn_args or child.dyn_kwargs)
            ):
                return False
    return True


def _builder(value: Any, holes: Mapping[str, str]) -> Build | None:
    """How to build `value` afresh from the values; None if a marker sits anywhere but as
    a whole value (inside a longer string, or as a key)."""
    if isinstance(value, str):
        if value in holes:
            return _hole(holes[value])
        return None if _MARKER in value else _constant(value)
    if isinstance(value, list):
        items = [_builder(item, holes) for item in value]
        if any(item is None for item in items):
            return None
        return _list(items)  # type: ignore[arg-type]
    if isinstance(value, dict):
        if any(_MARKER in key for key in value):
            return None
        entries = [(key, _builder(item, holes)) for key, item in value.items()]
        if any(build is None for _, build in entries):
            return None
        return _dict(entries)  # type: ignore[arg-type]
    return _constant(value)


def _constant(value: Any) -> Build:
    return lambda values: value


def _list(items: list[Build]) -> Build:
    return lambda values: [item(values) for item in items]


def _dict(entries: list[tuple[str, Build]]) -> Build:
    return lambda values: {key: build(values) for key, build in entries}


def _hole(name: str) -> Build:
    return lambda values: _as_json_value(values[name])


def _as_json_value(value: object) -> object:
    """What `tojson` and parsing it back give, without the text in between."""
    if isinstance(value, float) and not math.isfinite(value):
        raise ValueError(f"Out of range float values are not JSON compliant: {value!r}")
    if type(value) in _SCALARS:
        return value
    return json.loads(json.dumps(value, ensure_ascii=True, allow_nan=False))
