"""Workflow templates: ComfyUI API-format graphs rendered from `workflows/NAME.json.j2`.

A workflow is two files: `NAME.toml` (manifest: description, defaults, prompt prefix and
negative suffix, the ids of the nodes the engine watches) and `NAME.json.j2` (the graph).
Templates are compiled once, in a sandboxed Jinja2 environment, and every `{{ … }}` in
them must end in `| tojson`: user text enters the graph only as JSON-encoded strings, so
no input can add, remove or rewire nodes. Each render is checked against the node set
recorded at load time. A template without tags is filled in rather than rendered
(`workflow_holes`): the same graph at a fifth of the cost.
"""

from __future__ import annotations

import json
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, fields
from pathlib import Path
from types import MappingProxyType
from typing import Any

from jinja2 import StrictUndefined, TemplateError, nodes
from jinja2.sandbox import ImmutableSandboxedEnvironment

from stargraph.domain.errors import BadUserInput
from stargraph.domain.jobs import JobParams
from stargraph.domain.types import Priority
from stargraph.domain.workflow_holes import GraphWithHoles

_SAMPLE_ID = "00000000-0000-4000-8000-000000000000"


class WorkflowError(Exception):
    """A workflow's files are wrong; raised at load time, for the operator."""


@dataclass(frozen=True, slots=True)
class WorkflowDefaults:
    """Values used when a request leaves a parameter out."""

    negative_prompt: str = ""
    count: int = 1
    width: int = 512
    height: int = 512
    steps: int = 20
    cfg: float = 8.0
    sampler: str = "euler"
    scheduler: str = "normal"


@dataclass(frozen=True, slots=True)
class Workflow:
    """One workflow's manifest, plus the graph shape its template always renders."""

    name: str
    description: str
    prompt_prefix: str
    negative_suffix: str
    defaults: WorkflowDefaults
    positive_node: str
    negative_node: str
    sampler_node: str  # it takes the seed
    save_node: str  # its `executed` message carries the images
    node_classes: Mapping[str, str]  # node id → class_type (check against /object_info)


def filename_prefix(job_id: str) -> str:
    """SaveImage prefix unique per job: a cached identical prompt still writes new files."""
    return f"stargraph/{job_id}"


def _tojson(value: object) -> str:
    return json.dumps(value, ensure_ascii=True, allow_nan=False)


def _environment() -> ImmutableSandboxedEnvironment:
    env = ImmutableSandboxedEnvironment(
        autoescape=False, undefined=StrictUndefined, keep_trailing_newline=True
    )
    env.filters["tojson"] = _tojson  # replaces Jinja's HTML-flavoured one
    return env


def _check_outputs_are_json(env: ImmutableSandboxedEnvironment, source: str, name: str) -> None:
    """Refuse templates that print any expression not wrapped in `| tojson` last."""
    tree = env.parse(source)
    if any(True for _ in tree.find_all(nodes.FilterBlock)):
        raise WorkflowError(f"workflow {name!r}: filter blocks could rewrite encoded values")
    for output in tree.find_all(nodes.Output):
        for child in output.nodes:
            if isinstance(child, nodes.TemplateData):
                continue
            if not (isinstance(child, nodes.Filter) and child.name == "tojson"):
                raise WorkflowError(
                    f"workflow {name!r}: every {{{{ … }}}} must end with '| tojson' "
                    f"(line {child.lineno})"
                )


def _no_duplicate_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result = dict(pairs)
    if len(result) != len(pairs):
        raise ValueError("duplicate key in rendered workflow")
    return result


def _parse_graph(text: str) -> Any:
    return json.loads(text, object_pairs_hook=_no_duplicate_keys)


class _Compiled:
    """A manifest with its compiled template and the node shape it must keep. A logic-free
    template is filled in (`workflow_holes`); any other renders through Jinja each time."""

    def __init__(self, workflow: Workflow, template: Any, holes: GraphWithHoles | None) -> None:
        self.workflow = workflow
        self.template = template
        self.holes = holes

    def render(self, values: Mapping[str, object]) -> dict[str, Any]:
        if self.holes is not None:
            graph = self.holes.fill(values)
        else:
            graph = _parse_graph(self.template.render(**values))
        if _shape(graph) != dict(self.workflow.node_classes):
            raise WorkflowError(f"workflow {self.workflow.name!r} rendered a different graph")
        return graph


def _shape(graph: object) -> dict[str, str]:
    if not isinstance(graph, dict):
        raise WorkflowError("a workflow must render a JSON object of nodes")
    shape = {}
    for node_id, node in graph.items():
        if not (isinstance(node, dict) and isinstance(node.get("class_type"), str)):
            raise WorkflowError(f"node {node_id!r} has no class_type")
        if not isinstance(node.get("inputs"), dict):
            raise WorkflowError(f"node {node_id!r} has no inputs")
        shape[node_id] = node["class_type"]
    return shape


def template_values(
    job_id: str, params: JobParams, positive: str, negative: str
) -> dict[str, object]:
    """The variables every template receives (documented in the manifests)."""
    return {
        "job_id": job_id,
        "filename_prefix": filename_prefix(job_id),
        "model": params.model,
        "positive": positive,
        "negative": negative,
        "width": params.width,
        "height": params.height,
        "count": params.count,
        "steps": params.steps,
        "cfg": params.cfg,
        "sampler": params.sampler,
        "scheduler": params.scheduler,
        "seed": params.seed,
    }


class WorkflowCatalog:
    """Every workflow found in one directory, loaded and checked once at start."""

    def __init__(self, compiled: Mapping[str, _Compiled]) -> None:
        self._compiled = dict(compiled)

    @classmethod
    def load(cls, directory: Path | str) -> WorkflowCatalog:
        """Read every `*.toml` manifest with its `.json.j2` template; WorkflowError if any
        is malformed, prints a value without `tojson`, or does not render a valid graph."""
        env = _environment()
        folder = Path(directory)
        compiled = {}
        for manifest_path in sorted(folder.glob("*.toml")):
            item = _load_one(env, manifest_path)
            compiled[item.workflow.name] = item
        if not compiled:
            raise WorkflowError(f"no workflows found in {folder}")
        return cls(compiled)

    def names(self) -> tuple[str, ...]:
        return tuple(self._compiled)

    def all(self) -> tuple[Workflow, ...]:
        return tuple(c.workflow for c in self._compiled.values())

    def get(self, name: str) -> Workflow:
        """The workflow called `name`; BadUserInput(field="workflow") when there is none."""
        return self._get(name).workflow

    def render(
        self, name: str, job_id: str, params: JobParams, positive: str, negative: str
    ) -> dict[str, Any]:
        """The ComfyUI API graph for one job. `positive`/`negative` are the final prompts."""
        return self._get(name).render(template_values(job_id, params, positive, negative))

    def _get(self, name: str) -> _Compiled:
        try:
            return self._compiled[name]
        except KeyError:
            choices = ", ".join(self._compiled)
            raise BadUserInput(
                f"unknown workflow {name!r}; choose one of: {choices}", field="workflow"
            ) from None


def _load_one(env: ImmutableSandboxedEnvironment, manifest_path: Path) -> _Compiled:
    name = manifest_path.name.removesuffix(".toml")
    template_path = manifest_path.with_name(f"{name}.json.j2")
    try:
        manifest = tomllib.loads(manifest_path.read_text(encoding="utf-8"))
        source = template_path.read_text(encoding="utf-8")
        _check_outputs_are_json(env, source, name)
        template = env.from_string(source)
    except (OSError, tomllib.TOMLDecodeError, TemplateError) as exc:
        raise WorkflowError(f"workflow {name!r}: {exc}") from exc
    if manifest.get("name", name) != name:
        raise WorkflowError(f"workflow {name!r}: manifest name must match the file name")
    defaults = _defaults(name, manifest.get("defaults", {}))
    sample = _sample_render(name, template, defaults)
    workflow = _workflow(name, manifest, defaults, _shape(sample))
    _check_nodes(workflow, sample)
    variables = template_values(_SAMPLE_ID, _sample_params(defaults), "", "").keys()
    holes = GraphWithHoles.compile(env, source, variables, _parse_graph)
    return _Compiled(workflow, template, holes)


def _defaults(name: str, table: Mapping[str, object]) -> WorkflowDefaults:
    known = {f.name for f in fields(WorkflowDefaults)}
    unknown = set(table) - known
    if unknown:
        raise WorkflowError(f"workflow {name!r}: unknown defaults {sorted(unknown)}")
    try:
        return WorkflowDefaults(**table)  # type: ignore[arg-type]
    except TypeError as exc:
        raise WorkflowError(f"workflow {name!r}: {exc}") from exc


def _sample_params(defaults: WorkflowDefaults) -> JobParams:
    return JobParams(
        prompt="positive sample",
        negative_prompt="negative sample",
        count=defaults.count,
        width=defaults.width,
        height=defaults.height,
        steps=defaults.steps,
        cfg=defaults.cfg,
        sampler=defaults.sampler,
        scheduler=defaults.scheduler,
        model="sample.safetensors",
        seed=1234567,
        workflow="sample",
        priority=Priority.NORMAL,
    )


def _sample_render(name: str, template: Any, defaults: WorkflowDefaults) -> dict[str, Any]:
    params = _sample_params(defaults)
    values = template_values(_SAMPLE_ID, params, params.prompt, params.negative_prompt)
    try:
        graph = _parse_graph(template.render(**values))
    except (TemplateError, ValueError, TypeError) as exc:
        raise WorkflowError(f"workflow {name!r} does not render valid JSON: {exc}") from exc
    return graph  # type: ignore[no-any-return]


def _workflow(
    name: str, manifest: Mapping[str, Any], defaults: WorkflowDefaults, shape: dict[str, str]
) -> Workflow:
    node_ids = manifest.get("nodes", {})
    try:
        return Workflow(
            name=name,
            description=str(manifest.get("description", "")),
            prompt_prefix=str(manifest.get("prompt_prefix", "")),
            negative_suffix=str(manifest.get("negative_suffix", "")),
            defaults=defaults,
            positive_node=str(node_ids["positive"]),
            negative_node=str(node_ids["negative"]),
            sampler_node=str(node_ids["sampler"]),
            save_node=str(node_ids["save"]),
            node_classes=MappingProxyType(shape),
        )
    except KeyError as exc:
        raise WorkflowError(f"workflow {name!r}: [nodes] needs {exc.args[0]!r}") from None


def _check_nodes(workflow: Workflow, sample: dict[str, Any]) -> None:
    """The manifest's node ids must point at the nodes that receive those values."""
    expected = [
        (workflow.positive_node, "text", "positive sample"),
        (workflow.negative_node, "text", "negative sample"),
        (workflow.sampler_node, "seed", 1234567),
        (workflow.save_node, "filename_prefix", filename_prefix(_SAMPLE_ID)),
    ]
    for node_id, key, value in expected:
        inputs = sample.get(node_id, {}).get("inputs", {})
        if inputs.get(key) != value:
            raise WorkflowError(
                f"workflow {workflow.name!r}: node {node_id!r} should receive {key!r}"
            )
