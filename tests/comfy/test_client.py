"""ComfyClient against the simulator and against the recorded HTTP answers."""

from __future__ import annotations

import contextlib
import io
import json
from collections.abc import AsyncIterator
from typing import Any

import pytest
from PIL import Image

from stargraph.comfy.client import (
    ComfyClient,
    ComfyNotFound,
    ComfyProtocolError,
    ComfyUnavailable,
    ComfyValidationError,
    summarise,
)
from stargraph.comfy.messages import ExecutionError, ExecutionInterrupted, ImageRef
from stargraph.comfy.sim_config import RECORDED_SAMPLERS, RECORDED_SCHEDULERS, SimulatorConfig
from stargraph.comfy.simulator import SimulatorHandle, running_simulator
from stargraph.http_client import HttpClient, Timeouts

from .answering import Answer, answering_server
from .graphs import t2i
from .recordings import load_http, load_transcript

# --- against the simulator -----------------------------------------------------------------


async def test_a_prompt_runs_under_our_id_and_its_images_download(
    sim: SimulatorHandle, client: ComfyClient
) -> None:
    accepted = await client.post_prompt(t2i(width=96, height=64, batch=2), "job-1", "listener")
    assert accepted.prompt_id == "job-1"
    assert not accepted.is_partial
    await sim.simulator.wait_idle()

    entry = await client.history("job-1")
    assert entry is not None and entry.succeeded
    assert [image.filename for image in entry.all_images] == ["t_00001_.png", "t_00002_.png"]
    for image in entry.all_images:
        with Image.open(io.BytesIO(await client.view(image))) as png:
            assert (png.format, png.size) == ("PNG", (96, 64))
    await client.delete_history("job-1")
    assert await client.history("job-1") is None


async def test_unknown_history_is_none_and_missing_file_raises(client: ComfyClient) -> None:
    assert await client.history("nobody") is None
    with pytest.raises(ComfyNotFound):
        await client.view(ImageRef("nope_00001_.png"))


async def test_capabilities_come_from_object_info() -> None:
    config = SimulatorConfig(checkpoints=("a.safetensors", "b.safetensors"), samplers=("euler",))
    async with running_simulator(config) as handle, ComfyClient(handle.url) as comfy:
        caps = await comfy.object_info()
        assert caps.checkpoints == ("a.safetensors", "b.safetensors")
        assert caps.samplers == ("euler",)
        assert caps.schedulers == RECORDED_SCHEDULERS
        assert await comfy.node_info("NoSuchNode") is None
        assert (await comfy.system_stats())["system"]["comfyui_version"]


async def test_validation_errors_are_summarised(client: ComfyClient) -> None:
    graph = t2i(checkpoint="missing.safetensors", sampler="nope")
    with pytest.raises(ComfyValidationError) as caught:
        await client.post_prompt(graph, "bad", "listener")
    error = caught.value
    assert error.error_type == "prompt_outputs_failed_validation"
    assert set(error.node_errors) == {"4", "3"}
    assert (
        "node 4 (CheckpointLoaderSimple): ckpt_name: 'missing.safetensors' not in" in error.message
    )
    assert "node 3 (KSampler): sampler_name: 'nope' not in (list of length 42)" in error.message
    assert await client.history("bad") is None


async def test_queue_shows_running_and_pending_in_run_order(manual_sim: SimulatorHandle) -> None:
    async with ComfyClient(manual_sim.url) as comfy:
        await comfy.post_prompt(t2i(seed=1), "first", "c")
        await manual_sim.simulator.wait_for_step()
        await comfy.post_prompt(t2i(seed=2), "second", "c")
        await comfy.post_prompt(t2i(seed=3), "third", "c", front=True)
        snapshot = await comfy.queue()
        assert snapshot.running == ("first",)
        assert snapshot.pending == ("third", "second")
        assert "second" in snapshot and "other" not in snapshot
        assert await comfy.queue_remaining() == 3

        await comfy.delete_from_queue(["second"])
        await comfy.interrupt("first")
        await manual_sim.simulator.release_steps(None)
        await manual_sim.simulator.wait_idle()

        interrupted = await comfy.history("first")
        assert interrupted is not None and not interrupted.succeeded
        assert isinstance(interrupted.interrupted, ExecutionInterrupted)
        assert await comfy.history("second") is None
        third = await comfy.history("third")
        assert third is not None and third.succeeded


async def test_runtime_errors_are_in_history(sim: SimulatorHandle, client: ComfyClient) -> None:
    sim.faults.fail_prompts = 1
    await client.post_prompt(t2i(), "boom", "c")
    await sim.simulator.wait_idle()
    entry = await client.history("boom")
    assert entry is not None and entry.status_str == "error"
    assert isinstance(entry.error, ExecutionError)
    assert entry.error.node_id == "3"
    assert entry.all_images == ()


async def test_unreachable_server_is_unavailable_and_not_processed() -> None:
    async with running_simulator() as handle:
        url = handle.url
    async with ComfyClient(url) as comfy:
        with pytest.raises(ComfyUnavailable) as caught:
            await comfy.post_prompt(t2i(), "x", "c")
    assert not caught.value.maybe_processed


async def test_refusing_server_is_unavailable(sim: SimulatorHandle, client: ComfyClient) -> None:
    sim.faults.refuse = True
    with pytest.raises(ComfyUnavailable) as caught:
        await client.queue()
    assert not caught.value.maybe_processed
    sim.faults.refuse = False
    assert (await client.queue()).running == ()


async def test_a_timeout_may_have_been_processed(sim: SimulatorHandle) -> None:
    sim.faults.http_delay = 0.5
    async with ComfyClient(sim.url, timeouts=Timeouts(connect=5.0, total=0.05)) as comfy:
        with pytest.raises(ComfyUnavailable) as caught:
            await comfy.post_prompt(t2i(), "slow", "c")
    assert caught.value.maybe_processed


async def test_a_shared_http_client_is_not_closed(sim: SimulatorHandle) -> None:
    http = HttpClient()
    async with ComfyClient(sim.url + "/", http) as comfy:
        assert await comfy.queue_remaining() == 0
    async with ComfyClient(sim.url, http) as again:
        assert await again.queue_remaining() == 0
    await http.aclose()


# --- against the recorded answers ----------------------------------------------------------


@contextlib.asynccontextmanager
async def recorded_server(routes: dict[tuple[str, str], Answer]) -> AsyncIterator[ComfyClient]:
    """A client of a loopback server that answers from `routes`: (method, path) ->
    (status, body)."""
    async with answering_server(routes) as server, ComfyClient(server.url) as comfy:
        yield comfy


def recorded_responses(name: str) -> list[tuple[dict[str, Any], dict[str, Any]]]:
    entries = load_transcript(name)
    requests = [e for e in entries if e["kind"] == "http_req"]
    answers = [e for e in entries if e["kind"] == "http_resp"]
    return list(zip(requests, answers, strict=True))


async def test_recorded_history_entries_parse() -> None:
    routes: dict[tuple[str, str], tuple[int, Any]] = {}
    for name in ("history_a_normal", "history_d_runtime_error", "history_e_interrupted"):
        body = load_http(name)
        routes[("GET", f"/history/{next(iter(body))}")] = (200, body)
    async with recorded_server(routes) as comfy:
        normal = await comfy.history("a-c8f912dcf6a9")
        assert normal is not None and normal.succeeded
        assert normal.images["9"] == (
            ImageRef("a_normal_00001_.png", "", "output"),
            ImageRef("a_normal_00002_.png", "", "output"),
        )
        assert normal.error is None and normal.interrupted is None

        failed = await comfy.history("d-upscale-cee62e9f6974")
        assert failed is not None and not failed.succeeded
        assert failed.error is not None and failed.error.node_type == "LatentUpscaleBy"
        assert len(json.dumps(dict(failed.error.current_inputs or {}))) < 3000

        stopped = await comfy.history("e-0219456292e3")
        assert stopped is not None and stopped.status_str == "error"
        assert stopped.interrupted is not None and stopped.interrupted.node_id == "3"


async def test_recorded_queue_is_read_in_run_order() -> None:
    body = load_http("queue_running_and_three_pending")
    async with recorded_server({("GET", "/queue"): (200, body)}) as comfy:
        snapshot = await comfy.queue()
        assert snapshot.running == ("f3-689b9373270a",)
        # The raw heap is [-35 f6, 34 f5, 33 f4]; run order sorts by number.
        assert snapshot.pending == ("f6-front-51da05ba7fa9", "f4-ed9dc7fcca4d", "f5-d3feebbc4a43")


async def test_recorded_object_info_gives_capabilities() -> None:
    async with recorded_server(
        {
            ("GET", "/object_info/KSampler"): (200, load_http("object_info_KSampler")),
            ("GET", "/object_info/CheckpointLoaderSimple"): (
                200,
                load_http("object_info_CheckpointLoaderSimple"),
            ),
        }
    ) as comfy:
        caps = await comfy.object_info()
        assert caps.checkpoints == ("random-sd15.safetensors",)
        assert caps.samplers == RECORDED_SAMPLERS
        assert caps.schedulers == RECORDED_SCHEDULERS


async def test_new_style_combos_are_read() -> None:
    info = {"input": {"required": {"ckpt_name": ["COMBO", {"options": ["x.safetensors"]}]}}}
    async with recorded_server(
        {
            ("GET", "/object_info/CheckpointLoaderSimple"): (200, {"CheckpointLoaderSimple": info}),
            ("GET", "/object_info/KSampler"): (200, {}),
        }
    ) as comfy:
        caps = await comfy.object_info()
        assert caps.checkpoints == ("x.safetensors",)
        assert caps.samplers == ()


@pytest.mark.parametrize(
    ("note", "expected"),
    [
        (
            "sampler_name 'nope'",
            "node 3 (KSampler): sampler_name: 'nope' not in (list of length 42)",
        ),
        (
            "unknown class_type",
            "Cannot execute because node NoSuchNode does not exist.: Node ID '#8'",
        ),
        ("required input missing", "node 3 (KSampler): Required input is missing: seed"),
        ("width 8", "node 5 (EmptyLatentImage): width"),
        ("no output node", "Prompt has no outputs"),
    ],
)
async def test_recorded_400_bodies_become_validation_errors(note: str, expected: str) -> None:
    entries = load_transcript("c_validation_errors")
    index = next(i for i, e in enumerate(entries) if e["kind"] == "note" and note in e["text"])
    answer = next(e for e in entries[index:] if e["kind"] == "http_resp")
    async with recorded_server({("POST", "/prompt"): (answer["status"], answer["json"])}) as comfy:
        with pytest.raises(ComfyValidationError) as caught:
            await comfy.post_prompt(t2i(), "p", "c")
        assert expected in caught.value.message
        assert caught.value.error_type == answer["json"]["error"]["type"]


async def test_recorded_partial_acceptance_is_flagged() -> None:
    entries = load_transcript("c_validation_errors")
    answer = next(
        e
        for e in entries
        if e["kind"] == "http_resp" and e["status"] == 200 and "number" in (e["json"] or {})
    )
    async with recorded_server({("POST", "/prompt"): (200, answer["json"])}) as comfy:
        accepted = await comfy.post_prompt(t2i(), "c-partial-859837f98f43", "c")
        assert accepted.is_partial and set(accepted.node_errors) == {"12"}


async def test_server_trouble_and_bad_answers() -> None:
    async with recorded_server(
        {
            ("POST", "/prompt"): (500, "500 Internal Server Error\n\nServer got itself in trouble"),
            ("GET", "/queue"): (200, "not json"),
            ("GET", "/system_stats"): (403, b""),
        }
    ) as comfy:
        with pytest.raises(ComfyUnavailable):
            await comfy.post_prompt(t2i(), "p", "c")
        with pytest.raises(ComfyProtocolError):
            await comfy.queue()
        with pytest.raises(ComfyProtocolError):
            await comfy.system_stats()


def test_summary_is_bounded() -> None:
    errors = {
        str(n): {"class_type": "X", "errors": [{"type": "t", "message": "m", "details": "d" * 50}]}
        for n in range(100)
    }
    assert len(summarise({"message": "bad"}, errors)) <= 1000
