"""The pure decisions of domain.progress, fed with frames recorded from the real ComfyUI."""

from __future__ import annotations

import copy
import json
from dataclasses import replace
from typing import Any

import pytest

from stargraph.comfy import messages as m
from stargraph.domain.backends import HistoryRecord, OutputImage
from stargraph.domain.progress import (
    RUNTIME_ERROR,
    Failed,
    Interrupted,
    Previewed,
    Started,
    Stepped,
    Succeeded,
    apply,
    follow,
    outcome_of_history,
)
from tests.comfy.recordings import load_transcript, rebuild_binary
from tests.engine.factory import make_job, with_second_pass


def _frames(name: str, prompt_id: str, sock: str | None = None) -> list[m.Message]:
    """The recorded socket frames of one prompt (binary previews included) in order."""
    out: list[m.Message] = []
    running = False
    for entry in load_transcript(name):
        if sock is not None and entry.get("sock") != sock:
            continue
        if entry["kind"] == "ws_text":
            message = m.parse_text(_dump(entry["msg"]))
            pid = getattr(message, "prompt_id", None)
            if isinstance(message, m.ExecutionStart):
                running = pid == prompt_id
            if pid == prompt_id:
                out.append(message)
        elif entry["kind"] == "ws_binary" and running and entry["type"] in (1, 4):
            out.append(m.parse_binary(rebuild_binary(entry)))
    return out


def _dump(msg: dict[str, Any]) -> str:
    return json.dumps(msg)


def _run(name: str, prompt_id: str, sock: str | None = None) -> list[Any]:
    state = follow(make_job(1, job_id=prompt_id))
    changes: list[Any] = []
    for message in _frames(name, prompt_id, sock):
        state, more = apply(state, message)
        changes.extend(more)
    return changes


def test_a_normal_run_starts_steps_and_ends_with_the_save_nodes_images() -> None:
    changes = _run("a2_normal_uncached_after_free", "a2-63b6045d0605")
    assert changes[0] == Started()
    assert [c for c in changes if isinstance(c, Stepped)] == [
        Stepped(step, 4) for step in range(1, 5)
    ]
    assert changes[-1] == Succeeded(
        (OutputImage("a2_normal_00001_.png"), OutputImage("a2_normal_00002_.png"))
    )
    assert sum(isinstance(c, Succeeded) for c in changes) == 1


def test_the_end_comes_with_executing_null_not_with_execution_success() -> None:
    job = make_job(1, job_id="p1")
    state = follow(job)
    state, changes = apply(state, m.ExecutionSuccess("p1"))
    assert changes == []
    state, changes = apply(state, m.Executing(None, "p1"))
    assert changes == [Succeeded(())]  # `executed` was missed: the history names the images


def test_a_runtime_error_fails_the_job_with_a_short_message() -> None:
    changes = _run("d_runtime_errors", "d-corrupt-f19b0c2451ef")
    assert changes[0] == Started()
    end = changes[-1]
    assert isinstance(end, Failed) and end.code == RUNTIME_ERROR
    assert "SafetensorError" in end.message or "deserializing" in end.message
    assert len(end.message) <= 2000


def test_an_interrupt_ends_the_job_as_interrupted() -> None:
    changes = _run("e_interrupt", "e-0219456292e3")
    assert changes[-1] == Interrupted()
    assert not any(isinstance(c, Succeeded) for c in changes)


@pytest.mark.parametrize(
    ("sock", "prompt_id"), [("plain", "g1-26d5d064ea5d"), ("meta", "g2-51d6c63d3c17")]
)
def test_binary_previews_of_both_kinds_become_previews(sock: str, prompt_id: str) -> None:
    changes = _run("g_previews_latent2rgb", prompt_id, sock)
    previews = [c for c in changes if isinstance(c, Previewed)]
    assert len(previews) == 4
    assert all(p.mime_type == "image/jpeg" and p.image[:2] == b"\xff\xd8" for p in previews)


def test_progress_of_other_nodes_is_not_a_step() -> None:
    state = follow(make_job(1, job_id="p2"))
    _, changes = apply(state, m.Progress(1, 1, "p2", "8"))  # e.g. a VAE decode bar
    assert changes == []


def _two_pass_job(job_id: str) -> Any:
    """t2i with a second, upscaling pass (KSamplerAdvanced "11" from step 2 of 6) between the
    first sampler and the decode, and a sampler "20" that feeds no output."""
    job = with_second_pass(make_job(1, job_id=job_id, steps=4), steps=6)
    graph = copy.deepcopy(job.graph)
    graph["11"]["class_type"] = "KSamplerAdvanced"
    del graph["11"]["inputs"]["denoise"]  # KSamplerAdvanced has none
    graph["11"]["inputs"] |= {"start_at_step": 2, "end_at_step": 10000}
    graph["20"] = copy.deepcopy(graph["3"]) | {"inputs": graph["3"]["inputs"] | {"steps": 50}}
    return replace(job, graph=graph)


def test_the_steps_of_every_sampler_feeding_the_output_count_one_after_the_other() -> None:
    """A second pass adds its steps to the first's: the job's progress rises once, from 1 to
    the sum, and reaches its last step only at the end of the last sampler (where the next
    job is made ready). A sampler no output needs does not run, and does not count."""
    state = follow(_two_pass_job("p4"))
    stepped = []
    for node, steps in (("3", 4), ("11", 4)):
        for value in range(1, steps + 1):
            state, changes = apply(state, m.Progress(value, steps, "p4", node))
            stepped += changes
    assert stepped == [Stepped(step, 8) for step in range(1, 9)]


def test_a_job_followed_during_its_second_pass_counts_the_first_as_done() -> None:
    state = follow(_two_pass_job("p7"))  # e.g. a worker that restarted mid-run
    _, changes = apply(state, m.Progress(2, 4, "p7", "11"))
    assert changes == [Stepped(6, 8)]


def test_a_cached_sampler_adds_no_steps() -> None:
    state = follow(_two_pass_job("p5"))
    state, _ = apply(state, m.ExecutionCached("p5", ("4", "5", "6", "7", "3", "10")))
    changes = []
    for value in range(1, 5):
        state, more = apply(state, m.Progress(value, 4, "p5", "11"))
        changes += more
    assert changes == [Stepped(step, 4) for step in range(1, 5)]


def test_a_sampler_whose_steps_come_through_a_link_counts_once_it_runs() -> None:
    job = _two_pass_job("p6")
    graph = copy.deepcopy(job.graph)
    graph["11"]["inputs"]["steps"] = ["30", 0]  # e.g. from a primitive node
    state = follow(replace(job, graph=graph))
    state, first = apply(state, m.Progress(4, 4, "p6", "3"))
    state, second = apply(state, m.Progress(1, 5, "p6", "11"))
    assert (first, second) == ([Stepped(4, 4)], [Stepped(5, 9)])


def test_cached_outputs_of_another_node_do_not_replace_the_images() -> None:
    state = follow(make_job(1, job_id="p3"))
    ref = m.ImageRef("x_00001_.png")
    state, _ = apply(
        state, m.Executed("9", {"images": [{"filename": "x_00001_.png"}]}, (ref,), "p3")
    )
    state, _ = apply(state, m.Executed("12", {"images": []}, (), "p3"))
    _, changes = apply(state, m.Executing(None, "p3"))
    assert changes == [Succeeded((OutputImage("x_00001_.png"),))]


def test_history_records_give_the_same_endings() -> None:
    state = follow(make_job(1, job_id="h1"))
    image = OutputImage("stargraph/h1_00001_.png", "", "output")
    other = OutputImage("preview_00001_.png", "", "temp")
    done = HistoryRecord(succeeded=True, images={"9": (image,), "12": (other,)})
    assert outcome_of_history(state, done) == Succeeded((image,))
    failed = outcome_of_history(
        state, HistoryRecord(succeeded=False, images={}, error="RuntimeError: boom")
    )
    assert failed == Failed(RUNTIME_ERROR, "RuntimeError: boom")
    interrupted = HistoryRecord(succeeded=False, images={}, interrupted=True)
    assert outcome_of_history(state, interrupted) == Interrupted()
    assert outcome_of_history(state, HistoryRecord(succeeded=False, images={})) is None
