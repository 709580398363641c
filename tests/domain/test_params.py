"""Request validation: DESIGN's limits, what the engines offer, and GraphQL field names."""

from __future__ import annotations

import random
import shutil
import unicodedata
from dataclasses import replace
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from stargraph.domain.capabilities import EMPTY_CAPABILITIES, Capabilities
from stargraph.domain.errors import BadUserInput
from stargraph.domain.jobs import JobParams
from stargraph.domain.params import (
    SEED_MAX,
    SubmitRequest,
    has_forbidden_characters,
    validate,
)
from stargraph.domain.types import Priority
from stargraph.domain.workflows import WorkflowCatalog
from stargraph.settings import PROJECT_ROOT

CATALOG = WorkflowCatalog.load(PROJECT_ROOT / "workflows")
OFFER = Capabilities(
    checkpoints=("sd15.safetensors", "sdxl.safetensors"),
    samplers=("euler", "dpmpp_2m"),
    schedulers=("normal", "karras"),
)


def _validate(
    request: SubmitRequest,
    capabilities: Capabilities = OFFER,
    default_model: str | None = "sdxl.safetensors",
) -> JobParams:
    return validate(request, capabilities, CATALOG, default_model, random.Random(7))


def _field_of(request: SubmitRequest, capabilities: Capabilities = OFFER) -> str | None:
    with pytest.raises(BadUserInput) as caught:
        _validate(request, capabilities)
    assert caught.value.extensions()["code"] == "BAD_USER_INPUT"
    return caught.value.field


BASE = SubmitRequest(prompt="a cat")


def test_defaults_come_from_the_workflow_manifest() -> None:
    params = _validate(BASE)
    assert (params.prompt, params.negative_prompt, params.count) == ("a cat", "", 1)
    assert (params.width, params.height, params.steps, params.cfg) == (512, 512, 20, 8.0)
    assert (params.sampler, params.scheduler) == ("euler", "normal")
    assert params.model == "sdxl.safetensors"
    assert params.workflow == "t2i" and params.priority is Priority.NORMAL


def test_given_values_are_kept() -> None:
    request = SubmitRequest(
        prompt="长发少女",
        negative_prompt="blurry",
        count=8,
        width=2048,
        height=64,
        steps=100,
        cfg=0,
        sampler="dpmpp_2m",
        scheduler="karras",
        model="sd15.safetensors",
        seed=SEED_MAX,
        workflow="t2i",
        priority=Priority.LOW,
        idempotency_key="k" * 128,
    )
    params = _validate(request)
    assert (params.count, params.width, params.height, params.steps) == (8, 2048, 64, 100)
    assert params.cfg == 0.0 and isinstance(params.cfg, float)
    assert (params.sampler, params.scheduler, params.model) == (
        "dpmpp_2m",
        "karras",
        "sd15.safetensors",
    )
    assert params.seed == SEED_MAX and params.priority is Priority.LOW


@pytest.mark.parametrize("seed", [None, 0])
def test_no_seed_or_zero_draws_a_random_seed_that_is_reported(seed: int | None) -> None:
    seeds = {
        validate(replace(BASE, seed=seed), OFFER, CATALOG, None, random.Random(n)).seed
        for n in range(20)
    }
    assert len(seeds) > 1
    assert all(1 <= s <= SEED_MAX for s in seeds)


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"prompt": ""}, "prompt"),
        ({"prompt": "   \n"}, "prompt"),
        ({"prompt": "x" * 2001}, "prompt"),
        ({"negative_prompt": "x" * 2001}, "negativePrompt"),
        ({"count": 0}, "count"),
        ({"count": 9}, "count"),
        ({"count": True}, "count"),
        ({"width": 56}, "width"),
        ({"width": 2056}, "width"),
        ({"width": 516}, "width"),
        ({"height": 63}, "height"),
        ({"height": 100}, "height"),
        ({"steps": 0}, "steps"),
        ({"steps": 101}, "steps"),
        ({"cfg": -0.1}, "cfg"),
        ({"cfg": 30.01}, "cfg"),
        ({"cfg": float("nan")}, "cfg"),
        ({"cfg": float("inf")}, "cfg"),
        ({"seed": -1}, "seed"),
        ({"seed": SEED_MAX + 1}, "seed"),
        ({"sampler": "ddim"}, "sampler"),
        ({"scheduler": "exponential"}, "scheduler"),
        ({"model": "missing.safetensors"}, "model"),
        ({"workflow": "nope"}, "workflow"),
        ({"priority": 2}, "priority"),
        ({"idempotency_key": ""}, "idempotencyKey"),
        ({"idempotency_key": "k" * 129}, "idempotencyKey"),
        ({"idempotency_key": "a\nb"}, "idempotencyKey"),
    ],
)
def test_each_limit_names_its_graphql_field(changes: dict[str, object], field: str) -> None:
    assert _field_of(replace(BASE, **changes)) == field  # type: ignore[arg-type]


def test_limits_are_inclusive() -> None:
    params = _validate(replace(BASE, prompt="x" * 2000, cfg=30, width=64, steps=1, count=1))
    assert len(params.prompt) == 2000 and params.cfg == 30.0


def test_model_defaults_to_the_configured_one_else_the_first_offered() -> None:
    assert _validate(BASE, default_model=None).model == "sd15.safetensors"
    assert _validate(BASE, default_model="gone.safetensors").model == "sd15.safetensors"
    assert _validate(BASE, default_model="sdxl.safetensors").model == "sdxl.safetensors"


def test_before_any_backend_answers_names_are_accepted_as_given() -> None:
    """An empty offer means 'not known yet'; ComfyUI's validation has the last word."""
    params = _validate(
        replace(BASE, sampler="ddim", scheduler="exponential", model="any.ckpt"),
        EMPTY_CAPABILITIES,
    )
    assert (params.sampler, params.scheduler, params.model) == ("ddim", "exponential", "any.ckpt")
    assert _validate(BASE, EMPTY_CAPABILITIES, default_model="d.ckpt").model == "d.ckpt"
    assert _field_of(replace(BASE, sampler="x" * 65), EMPTY_CAPABILITIES) == "sampler"
    assert _field_of(replace(BASE, model="a\x00b"), EMPTY_CAPABILITIES) == "model"


def test_with_no_model_known_at_all_the_caller_must_name_one() -> None:
    with pytest.raises(BadUserInput) as caught:
        validate(BASE, EMPTY_CAPABILITIES, CATALOG, None, random.Random(1))
    assert caught.value.field == "model"


FORBIDDEN = [chr(c) for c in (*range(0x00, 0x20), 0x7F, *range(0x80, 0xA0))]
FORBIDDEN = [c for c in FORBIDDEN if c not in "\t\n\r"] + ["\ud800"]


@given(
    before=st.text(max_size=50),
    bad=st.sampled_from(FORBIDDEN),
    after=st.text(max_size=50),
    field=st.sampled_from(["prompt", "negative_prompt"]),
)
def test_control_characters_are_rejected_anywhere(
    before: str, bad: str, after: str, field: str
) -> None:
    text = f"x{before}{bad}{after}"
    if field == "prompt":
        request = replace(BASE, prompt=text)
    else:
        request = replace(BASE, negative_prompt=text)
    expected = "prompt" if field == "prompt" else "negativePrompt"
    assert _field_of(request) == expected


@given(
    text=st.text(
        alphabet=st.characters(blacklist_categories=("Cc", "Cs")) | st.sampled_from("\t\n\r"),
        min_size=1,
        max_size=200,
    ).filter(str.strip)
)
def test_any_other_unicode_text_is_a_valid_prompt(text: str) -> None:
    assert not has_forbidden_characters(text)
    assert _validate(replace(BASE, prompt=text, negative_prompt=text)).prompt == text


@given(
    st.text(
        st.characters(blacklist_categories=()) | st.sampled_from("\x00\t\n\r\x1b\x7f\x85\ud800"),
        max_size=50,
    )
)
def test_forbidden_characters_are_exactly_controls_and_lone_surrogates(text: str) -> None:
    forbidden = any(unicodedata.category(ch) in ("Cc", "Cs") and ch not in "\t\n\r" for ch in text)
    assert has_forbidden_characters(text) is forbidden


def test_emoji_sequences_and_line_breaks_are_allowed() -> None:
    text = "宇航员 🧑‍🚀 riding a horse,\n\t(masterpiece:1.2)\r\n"
    assert _validate(replace(BASE, prompt=text)).prompt == text


def test_a_workflow_brings_its_own_defaults(tmp_path: Path) -> None:
    for name in ("t2i.toml", "t2i.json.j2"):
        shutil.copy(PROJECT_ROOT / "workflows" / name, tmp_path / name)
    shutil.copy(PROJECT_ROOT / "workflows" / "t2i.json.j2", tmp_path / "tall.json.j2")
    manifest = (PROJECT_ROOT / "workflows" / "t2i.toml").read_text()
    (tmp_path / "tall.toml").write_text(
        manifest.replace('name = "t2i"', 'name = "tall"').replace("height = 512", "height = 768")
    )
    catalog = WorkflowCatalog.load(tmp_path)
    params = validate(replace(BASE, workflow="tall"), OFFER, catalog, None, random.Random(1))
    assert (params.workflow, params.height) == ("tall", 768)
