"""The simulator's knobs and behaviours beyond the recorded scenarios."""

from __future__ import annotations

import argparse
import asyncio
import io
import json
import statistics
from typing import Any

import httpx
import pytest
from PIL import Image
from websockets.asyncio.client import connect
from websockets.exceptions import InvalidStatus

from stargraph.comfy.client import ComfyClient
from stargraph.comfy.messages import (
    Connected,
    Executed,
    Executing,
    ExecutionCached,
    ExecutionError,
    FeatureFlags,
    Progress,
    ProgressState,
    Status,
    parse_text,
)
from stargraph.comfy.sim_config import SimulatorConfig
from stargraph.comfy.sim_engine import StepTimes
from stargraph.comfy.simulator import (
    SimulatorHandle,
    add_arguments,
    config_from_args,
    running_simulator,
)

from .events import following
from .graphs import collect_until_done, t2i


async def run_one(sim: SimulatorHandle, graph: dict[str, Any], prompt_id: str) -> list[Any]:
    """Submit for a socket of our own and return its events up to the end of the prompt."""
    async with following(sim) as events, ComfyClient(sim.url) as comfy:
        await events.next(Status)
        await comfy.post_prompt(graph, prompt_id, events.socket.client_id)
        return await collect_until_done(events, prompt_id)


async def test_injected_failure_at_a_step_then_recovery(sim: SimulatorHandle) -> None:
    sim.faults.fail_prompts = 1
    sim.faults.fail_at_step = 2
    seen = await run_one(sim, t2i(steps=4), "f1")
    error = next(e for e in seen if isinstance(e, ExecutionError))
    assert (error.node_id, error.node_type, error.exception_type) == (
        "3",
        "KSampler",
        "RuntimeError",
    )
    assert [e.value for e in seen if isinstance(e, Progress)] == [1, 2]
    assert error.executed == ("4", "5", "7", "6")
    assert isinstance(seen[-1], Executing) and seen[-1].node is None

    again = await run_one(sim, t2i(steps=4, seed=7), "f2")
    assert not any(isinstance(e, ExecutionError) for e in again)


async def test_failure_at_a_named_node(sim: SimulatorHandle) -> None:
    sim.faults.fail_prompts = 1
    sim.faults.fail_node = "VAEDecode"
    sim.faults.fail_exception_type = "torch.OutOfMemoryError"
    seen = await run_one(sim, t2i(), "oom")
    error = next(e for e in seen if isinstance(e, ExecutionError))
    assert (error.node_id, error.exception_type) == ("8", "torch.OutOfMemoryError")


async def test_a_marker_in_the_prompt_text_fails_that_node(sim: SimulatorHandle) -> None:
    seen = await run_one(sim, t2i("a cat [simulate-error]"), "marked")
    error = next(e for e in seen if isinstance(e, ExecutionError))
    assert (error.node_id, error.node_type) == ("6", "CLIPTextEncode")


async def test_a_corrupt_checkpoint_fails_when_loaded() -> None:
    config = SimulatorConfig(step_time=0, corrupt_checkpoints=("bad.safetensors",))
    async with running_simulator(config) as sim:
        seen = await run_one(sim, t2i(checkpoint="bad.safetensors"), "c")
    error = next(e for e in seen if isinstance(e, ExecutionError))
    assert error.exception_type == "safetensors._safetensors_rust.SafetensorError"


async def test_dropping_on_executed_loses_it_but_not_the_result(sim: SimulatorHandle) -> None:
    sim.faults.drop_on = "executed"
    async with following(sim) as events, ComfyClient(sim.url) as comfy:
        await events.next(Status)
        await comfy.post_prompt(t2i(), "lost-executed", events.socket.client_id)
        await sim.simulator.wait_idle()
        entry = await comfy.history("lost-executed")
    assert entry is not None and entry.succeeded and len(entry.all_images) == 1
    assert not any(isinstance(e, Executed) for e in events.seen)
    assert sim.faults.drop_on is None  # fired once, then disarmed


async def test_silence_keeps_running_but_sends_nothing(sim: SimulatorHandle) -> None:
    async with following(sim) as events, ComfyClient(sim.url) as comfy:
        await events.next(Status)
        sim.faults.silent = True
        await comfy.post_prompt(t2i(), "quiet", events.socket.client_id)
        await sim.simulator.wait_idle()
        sim.faults.silent = False
        entry = await comfy.history("quiet")
        await comfy.post_prompt(t2i(seed=5), "loud", events.socket.client_id)
        seen = await collect_until_done(events, "loud")
    assert entry is not None and entry.succeeded
    assert not any(getattr(e, "prompt_id", None) == "quiet" for e in events.seen)
    assert any(isinstance(e, Progress) for e in seen)


async def test_slow_start_delays_execution(sim: SimulatorHandle, client: ComfyClient) -> None:
    sim.faults.start_delay = 0.1
    await client.post_prompt(t2i(steps=1), "slow", "c")
    await sim.simulator.wait_idle()
    (record,) = sim.records
    assert record.started_at is not None and record.finished_at is not None
    assert record.finished_at - record.started_at >= 0.1
    assert record.outcome == "success"


async def test_refusal_answers_503_and_denies_sockets(sim: SimulatorHandle) -> None:
    sim.faults.refuse = True
    async with httpx.AsyncClient(base_url=sim.url) as http:
        assert (await http.get("/queue")).status_code == 503
        assert (await http.get("/sim/faults")).json()["refuse"] is True
    with pytest.raises(InvalidStatus) as caught:
        async with connect(sim.url.replace("http", "ws") + "/ws?clientId=x"):
            pass
    assert caught.value.response.status_code == 503


async def test_stop_listening_refuses_connections(sim: SimulatorHandle) -> None:
    await sim.stop_listening()
    async with httpx.AsyncClient() as http:
        with pytest.raises(httpx.ConnectError):
            await http.get(sim.url + "/queue")
        await sim.start_listening()
        assert (await http.get(sim.url + "/queue")).status_code == 200


async def test_restart_forgets_queue_history_and_counter(manual_sim: SimulatorHandle) -> None:
    simulator = manual_sim.simulator
    async with ComfyClient(manual_sim.url) as comfy:
        await comfy.post_prompt(t2i(steps=1), "done", "c")
        await simulator.wait_for_step()
        await simulator.release_steps(1)
        await simulator.wait_idle()
        done = await comfy.history("done")
        assert done is not None
        await comfy.post_prompt(t2i(steps=5, seed=2), "running", "c")
        await comfy.post_prompt(t2i(seed=3), "waiting", "c")
        await simulator.wait_for_step()

        await manual_sim.restart()

        assert await comfy.history("done") is None
        assert (await comfy.queue()).running == ()
        assert await comfy.queue_remaining() == 0
        assert [r.outcome for r in simulator.records] == ["success", "lost", "lost"]
        # Saved files survive, like files on disk.
        assert (await comfy.view(done.all_images[0]))[:4] == b"\x89PNG"
        accepted = await comfy.post_prompt(t2i(steps=1), "fresh", "c")
        assert accepted.number == 0


async def test_progress_goes_only_to_the_submitting_client(sim: SimulatorHandle) -> None:
    async with following(sim) as mine, following(sim) as other, ComfyClient(sim.url) as comfy:
        await mine.next(Status)
        await other.next(Status)
        await comfy.post_prompt(t2i(), "targeted", mine.socket.client_id)
        await collect_until_done(mine, "targeted")
        await other.next(Status, queue_remaining=0)
    assert {type(e) for e in other.seen} <= {Connected, FeatureFlags, Status}


async def test_without_client_id_progress_is_broadcast(sim: SimulatorHandle) -> None:
    async with following(sim) as events, httpx.AsyncClient(base_url=sim.url) as http:
        await events.next(Status)
        await http.post("/prompt", json={"prompt": t2i(steps=2), "prompt_id": "anon"})
        await events.next(Progress, value=2)
        await events.next(Status, queue_remaining=0)
    kinds = {type(e) for e in events.seen}
    assert Progress in kinds and ProgressState in kinds
    assert Executing not in kinds and Executed not in kinds


async def test_a_socket_drops_the_frame_types_it_skips_and_keeps_the_rest(
    sim: SimulatorHandle,
) -> None:
    skip = frozenset({"progress_state"})
    async with following(sim, skip=skip) as events, httpx.AsyncClient(base_url=sim.url) as http:
        await events.next(Status)
        await http.post("/prompt", json={"prompt": t2i(steps=2), "prompt_id": "skips"})
        await events.next(Progress, value=2)
        await events.next(Status, queue_remaining=0)
    kinds = {type(e) for e in events.seen}
    assert Progress in kinds and ProgressState not in kinds


async def test_an_identical_prompt_is_served_from_cache(sim: SimulatorHandle) -> None:
    first = await run_one(sim, t2i(prefix="same"), "one")
    second = await run_one(sim, t2i(prefix="same"), "two")
    (cached,) = [e for e in second if isinstance(e, ExecutionCached)]
    assert cached.nodes == ("4", "6", "7", "5", "3", "8", "9")
    assert not any(isinstance(e, Executing) and e.node for e in second)
    images = [[i.filename for i in e.images] for e in first + second if isinstance(e, Executed)]
    assert images == [["same_00001_.png"], ["same_00001_.png"]]


async def test_images_have_the_asked_size_and_depend_on_the_seed(
    sim: SimulatorHandle, client: ComfyClient
) -> None:
    files = []
    for prompt_id, seed in (("s1", 1), ("s2", 1), ("s3", 2)):
        graph = t2i(seed=seed, width=124, height=72, batch=3, prefix=f"stargraph/{prompt_id}")
        await client.post_prompt(graph, prompt_id, "c")
        await sim.simulator.wait_idle()
        entry = await client.history(prompt_id)
        assert entry is not None
        files.append([await client.view(image) for image in entry.all_images])
        assert {image.subfolder for image in entry.all_images} == {"stargraph"}
    for data in files[0]:
        with Image.open(io.BytesIO(data)) as png:
            assert png.size == (120, 72)  # EmptyLatentImage rounds down to multiples of 8
            assert json.loads(png.info["prompt"])["3"]["inputs"]["seed"] == 1
    pixels = [[pixels_of(data) for data in batch] for batch in files]
    assert pixels[0] == pixels[1]  # same seed, same pictures
    assert pixels[0][0] != pixels[2][0]
    assert len(set(pixels[0])) == 3  # one picture per batch index


def pixels_of(png: bytes) -> bytes:
    with Image.open(io.BytesIO(png)) as image:
        return image.tobytes()


async def test_view_options(sim: SimulatorHandle, client: ComfyClient) -> None:
    await client.post_prompt(t2i(), "v", "c")
    await sim.simulator.wait_idle()
    async with httpx.AsyncClient(base_url=sim.url) as http:
        base = "/view?filename=t_00001_.png&type=output"
        webp = await http.get(base + "&preview=webp;50")
        assert webp.headers["content-type"] == "image/webp"
        alpha = await http.get(base + "&channel=a")
        assert alpha.headers["content-type"] == "image/png"
        annotated = await http.get("/view", params={"filename": "t_00001_.png [output]"})
        assert annotated.status_code == 200
        assert (await http.get("/api/view", params={"filename": "../x.png"})).status_code == 400
        assert (await http.get(base + "&subfolder=..")).status_code == 403


async def test_records_and_control_endpoints(sim: SimulatorHandle, client: ComfyClient) -> None:
    await client.post_prompt(t2i(steps=2), "r", "c")
    await sim.simulator.wait_idle()
    async with httpx.AsyncClient(base_url=sim.url) as http:
        records = (await http.get("/sim/records")).json()
        assert records["records"][0]["outcome"] == "success"
        assert len(records["post_times"]) == 1
        faults = await http.post("/sim/faults", json={"fail_prompts": 2, "unknown": 1})
        assert faults.json()["fail_prompts"] == 2 and sim.faults.fail_prompts == 2
        assert (await http.post("/sim/restart")).status_code == 200
    (record,) = sim.records
    assert record.posted_at <= (record.started_at or 0) <= (record.finished_at or 0)
    busy = sim.simulator.busy_seconds(record.posted_at, record.finished_at or 0)
    assert busy == pytest.approx(record.busy_seconds)


async def test_cli_arguments_build_a_config() -> None:
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    args = parser.parse_args(
        ["--port", "9000", "--step-time", "1", "--checkpoints", "a.ckpt, b.ckpt", "--no-previews"]
    )
    config = config_from_args(args)
    assert (args.host, args.port) == ("127.0.0.1", 9000)
    assert config.step_time == 1.0 and not config.previews and config.step_jitter == 0
    assert config.checkpoints == ("a.ckpt", "b.ckpt")
    jittered = config_from_args(parser.parse_args(["--step-jitter", "0.05"]))
    assert jittered.step_jitter == 0.05


def test_step_times_are_exact_or_spread_around_the_step_time() -> None:
    assert {StepTimes(SimulatorConfig(step_time=0.05)).next() for _ in range(50)} == {0.05}
    config = SimulatorConfig(step_time=0.05, step_jitter=0.1, jitter_seed=7)
    times = StepTimes(config)
    drawn = [times.next() for _ in range(4000)]
    assert statistics.mean(drawn) == pytest.approx(0.05, rel=0.02)
    assert statistics.pstdev(drawn) == pytest.approx(0.005, rel=0.1)
    assert min(drawn) >= 0.05 * 0.7 and max(drawn) <= 0.05 * 1.3  # within three spreads
    again = StepTimes(config)
    assert [again.next() for _ in range(4000)] == drawn  # a seed repeats a run
    wide = StepTimes(SimulatorConfig(step_time=0.05, step_jitter=0.6, jitter_seed=1))
    assert min(wide.next() for _ in range(4000)) >= 0.0  # never a negative step


async def test_raw_frames_of_a_run(sim: SimulatorHandle) -> None:
    """The frames themselves, straight from a websockets client (no ComfySocket)."""
    async with connect(sim.url.replace("http", "ws") + "/api/ws?clientId=raw") as ws:
        first = parse_text(await ws.recv())
        assert first == Status(0, "raw")
        async with ComfyClient(sim.url) as comfy:
            await comfy.post_prompt(t2i(steps=1), "raw-1", "raw")
        types: list[str] = []
        async with asyncio.timeout(5):
            while True:
                frame = await ws.recv()
                if isinstance(frame, bytes):
                    continue
                data = json.loads(frame)
                if data["type"] != "progress_state":
                    types.append(data["type"])
                if data["type"] == "executing" and data["data"]["node"] is None:
                    break
    assert types[:3] == ["status", "status", "execution_start"]
    assert types[-3:] == ["execution_success", "status", "executing"]
