"""Workflow templates: the graph ComfyUI expects, and no way for user text to change it."""

from __future__ import annotations

import json
import shutil
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from stargraph.domain.errors import BadUserInput
from stargraph.domain.jobs import JobParams
from stargraph.domain.types import Priority
from stargraph.domain.workflows import WorkflowCatalog, WorkflowError, filename_prefix
from stargraph.settings import PROJECT_ROOT

WORKFLOWS = PROJECT_ROOT / "workflows"
REFERENCE = Path("/work/shared/reference/comfyui")
JOB_ID = "6f1c2b1e-3d4a-4b5c-8d6e-7f8091a2b3c4"

CATALOG = WorkflowCatalog.load(WORKFLOWS)
SEVEN_NODES = {
    "4": "CheckpointLoaderSimple",
    "6": "CLIPTextEncode",
    "7": "CLIPTextEncode",
    "5": "EmptyLatentImage",
    "3": "KSampler",
    "8": "VAEDecode",
    "9": "SaveImage",
}


def _params(**changes: object) -> JobParams:
    params = JobParams(
        prompt="a cat",
        negative_prompt="blurry",
        count=2,
        width=640,
        height=768,
        steps=25,
        cfg=7.5,
        sampler="euler",
        scheduler="normal",
        model="random-sd15.safetensors",
        seed=42,
        workflow="t2i",
        priority=Priority.NORMAL,
    )
    return replace(params, **changes)  # type: ignore[arg-type]


def _render(positive: str = "a cat", negative: str = "blurry", **changes: object) -> dict[str, Any]:
    return CATALOG.render("t2i", JOB_ID, _params(**changes), positive, negative)


def test_t2i_is_the_seven_node_graph_with_its_manifest() -> None:
    workflow = CATALOG.get("t2i")
    assert CATALOG.names() == ("t2i",)
    assert dict(workflow.node_classes) == SEVEN_NODES
    assert workflow.prompt_prefix == "(8k, best quality, masterpiece), "
    assert workflow.negative_suffix == ", bad face, bad finger, bad arm, bad leg"
    assert (workflow.positive_node, workflow.negative_node) == ("6", "7")
    assert (workflow.sampler_node, workflow.save_node) == ("3", "9")
    assert workflow.defaults.width == 512 and workflow.defaults.sampler == "euler"
    assert workflow.description


def test_render_puts_every_value_where_comfyui_reads_it() -> None:
    graph = _render("(8k), a cat", "blurry, bad face")
    assert graph["4"]["inputs"]["ckpt_name"] == "random-sd15.safetensors"
    assert graph["6"]["inputs"]["text"] == "(8k), a cat"
    assert graph["7"]["inputs"]["text"] == "blurry, bad face"
    assert graph["5"]["inputs"] == {"width": 640, "height": 768, "batch_size": 2}
    sampler = graph["3"]["inputs"]
    assert (sampler["seed"], sampler["steps"], sampler["cfg"]) == (42, 25, 7.5)
    assert (sampler["sampler_name"], sampler["scheduler"]) == ("euler", "normal")
    assert graph["9"]["inputs"]["filename_prefix"] == f"stargraph/{JOB_ID}"


def test_graph_matches_the_recorded_real_request() -> None:
    """Same nodes and links as the txt2img graph a real ComfyUI accepted."""
    transcript = REFERENCE / "transcripts" / "a_normal_txt2img.jsonl"
    if not transcript.exists():
        pytest.skip("reference recordings not present")
    recorded = next(
        e["json"]["prompt"]
        for e in map(json.loads, transcript.read_text().splitlines())
        if e.get("kind") == "http_req" and e.get("path") == "/prompt" and e.get("json")
    )
    ours = _render()
    assert {k: n["class_type"] for k, n in ours.items()} == {
        k: n["class_type"] for k, n in recorded.items()
    }
    for node_id, node in recorded.items():
        assert set(ours[node_id]["inputs"]) == set(node["inputs"])
        links = {k: v for k, v in node["inputs"].items() if isinstance(v, list)}
        assert {k: ours[node_id]["inputs"][k] for k in links} == links


def test_every_required_input_of_object_info_is_set() -> None:
    object_info = REFERENCE / "http" / "object_info_all.json"
    if not object_info.exists():
        pytest.skip("reference recordings not present")
    info = json.loads(object_info.read_text())
    for node in _render().values():
        required = set(info[node["class_type"]]["input"]["required"])
        assert required <= set(node["inputs"]), node["class_type"]


def test_each_job_saves_under_its_own_prefix() -> None:
    """ComfyUI serves an identical prompt from cache with the old filenames otherwise."""
    one = CATALOG.render("t2i", "job-one", _params(), "a", "b")
    two = CATALOG.render("t2i", "job-two", _params(), "a", "b")
    assert one["9"]["inputs"]["filename_prefix"] == filename_prefix("job-one")
    assert one["9"]["inputs"]["filename_prefix"] != two["9"]["inputs"]["filename_prefix"]


HOSTILE = [
    '"}, "99": {"class_type": "Evil", "inputs": {}}, "x": {"a": "',
    "{{ 7*7 }}",
    "{% raw %}{{ positive }}{% endraw %}",
    "{% endraw %}{{ model }}",
    'back\\slash \\u0000 \\" quote',
    "line\nbreak\ttab\r\n",
    "emoji 🧑‍🚀🎨 and 长发少女",
    "</script><!-- ' & < >",
]


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(positive=st.text(), negative=st.text(), model=st.text(min_size=1))
@example(positive=HOSTILE[0], negative=HOSTILE[1], model=HOSTILE[2])
@example(positive=HOSTILE[3], negative=HOSTILE[4], model=HOSTILE[5])
@example(positive=HOSTILE[6], negative=HOSTILE[7], model='x"]}')
def test_user_text_arrives_byte_for_byte_and_adds_no_node(
    positive: str, negative: str, model: str
) -> None:
    graph = _render(positive, negative, model=model, sampler=negative, scheduler=positive)
    assert {k: n["class_type"] for k, n in graph.items()} == SEVEN_NODES
    assert graph["6"]["inputs"]["text"] == positive
    assert graph["7"]["inputs"]["text"] == negative
    assert graph["4"]["inputs"]["ckpt_name"] == model
    assert graph["3"]["inputs"]["sampler_name"] == negative
    assert graph["3"]["inputs"]["scheduler"] == positive
    assert set(graph["6"]["inputs"]) == {"text", "clip"}


def test_unknown_workflow_is_a_user_error_on_the_workflow_field() -> None:
    with pytest.raises(BadUserInput) as caught:
        CATALOG.get("nope")
    assert caught.value.field == "workflow"


def _copy_t2i(folder: Path, name: str = "t2i") -> tuple[Path, Path]:
    manifest = folder / f"{name}.toml"
    template = folder / f"{name}.json.j2"
    text = (WORKFLOWS / "t2i.toml").read_text().replace('name = "t2i"', f'name = "{name}"')
    manifest.write_text(text)
    shutil.copy(WORKFLOWS / "t2i.json.j2", template)
    return manifest, template


def test_adding_a_workflow_is_adding_files(tmp_path: Path) -> None:
    _copy_t2i(tmp_path)
    manifest, _ = _copy_t2i(tmp_path, "portrait")
    manifest.write_text(
        manifest.read_text()
        .replace("width = 512", "width = 512\n")
        .replace("height = 512", "height = 768")
        .replace("Text to image", "Portraits")
    )
    catalog = WorkflowCatalog.load(tmp_path)
    assert set(catalog.names()) == {"t2i", "portrait"}
    assert catalog.get("portrait").defaults.height == 768
    assert catalog.get("portrait").description.startswith("Portraits")
    assert catalog.render("portrait", JOB_ID, _params(), "p", "n")["6"]["inputs"]["text"] == "p"


@pytest.mark.parametrize(
    ("old", "new", "complaint"),
    [
        ("{{ positive | tojson }}", '"{{ positive }}"', "tojson"),
        ("{{ positive | tojson }}", "{{ positive | tojson | safe }}", "tojson"),
        ("{{ model | tojson }}", "{{ ''.__class__.__mro__ | tojson }}", "t2i"),
        (
            "{{ positive | tojson }}",
            "{% filter replace('x', '') %}{{ positive | tojson }}{% endfilter %}",
            "filter blocks",
        ),
        (
            "{{ positive | tojson }}",
            "{% macro m(v) %}{{ v }}{% endmacro %}{{ m(1) | tojson }}",
            "tojson",
        ),
        ("{{ seed | tojson }}", "{{ unknown_variable | tojson }}", "t2i"),
        ('"clip": ["4", 1]}', '"clip": ["4", 1]', "valid JSON"),
        ('"9": {', '"3": {', "valid JSON"),
    ],
)
def test_unsafe_or_broken_templates_are_refused_at_load(
    tmp_path: Path, old: str, new: str, complaint: str
) -> None:
    _, template = _copy_t2i(tmp_path)
    source = template.read_text()
    assert old in source
    template.write_text(source.replace(old, new, 1))
    with pytest.raises(WorkflowError, match=complaint):
        WorkflowCatalog.load(tmp_path)


@pytest.mark.parametrize(
    ("old", "new", "complaint"),
    [
        ('positive = "6"', 'positive = "7"', "node '7'"),
        ('save = "9"', 'save = "8"', "node '8'"),
        ('save = "9"', "", "needs 'save'"),
        ("steps = 20", "stepz = 20", "unknown defaults"),
        ('name = "t2i"', 'name = "other"', "must match"),
        ("[nodes]", "[nodes", "t2i"),
    ],
)
def test_inconsistent_manifests_are_refused_at_load(
    tmp_path: Path, old: str, new: str, complaint: str
) -> None:
    manifest, _ = _copy_t2i(tmp_path)
    manifest.write_text(manifest.read_text().replace(old, new, 1))
    with pytest.raises(WorkflowError, match=complaint):
        WorkflowCatalog.load(tmp_path)


def test_an_empty_directory_is_refused(tmp_path: Path) -> None:
    with pytest.raises(WorkflowError, match="no workflows"):
        WorkflowCatalog.load(tmp_path)
