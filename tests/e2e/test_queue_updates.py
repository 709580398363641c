"""Waiting users see their position move, and the queue and backends queries tell the truth."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from stargraph.bootstrap import SimulateOptions
from stargraph.comfy.sim_config import RECORDED_CHECKPOINT, SimulatorConfig
from tests.e2e.harness import Client, running_stargraph, subscriptions

SUBMIT = "mutation($i: Text2ImageInput!) { submitText2Image(input: $i) { id queuePosition } }"
FOLLOW = """subscription { myJobEvents(after: "0-0") {
  __typename jobId cursor ... on JobQueued { position } } }"""
JOB_EVENTS = "subscription($id: ID!) { jobEvents(jobId: $id) { __typename status } }"


async def _submit(user: Client) -> dict[str, Any]:
    data = await user.data(SUBMIT, {"i": {"prompt": "a heron", "steps": 1}})
    job: dict[str, Any] = data["submitText2Image"]
    return job


async def _wait_running(url: str, user: Client, job_id: str) -> None:
    async with subscriptions(url, user.token) as ws:
        async for event in ws.events(await ws.subscribe(JOB_EVENTS, {"id": job_id})):
            if event["jobEvents"]["status"] == "RUNNING":
                return


async def test_positions_are_resent_as_the_queue_moves(tmp_path: Path) -> None:
    simulate = SimulateOptions(config=SimulatorConfig(manual_steps=True, step_time=0))
    async with running_stargraph(
        tmp_path, simulate=simulate, comfyui_max_inflight=1, default_model=RECORDED_CHECKPOINT
    ) as stack:
        blocker = await stack.client.register("blocker")
        running = await _submit(blocker)
        await _wait_running(stack.url, blocker, running["id"])
        user = await stack.client.register("patient")
        first, second, third = [await _submit(user) for _ in range(3)]
        assert [first["queuePosition"], second["queuePosition"], third["queuePosition"]] == [
            1, 2, 3]  # fmt: skip
        info = (await user.data("{ queue { length running healthyBackends etaSeconds } }"))["queue"]
        assert info["length"] == 3 and info["running"] == 1 and info["healthyBackends"] == 1

        async with subscriptions(stack.url, user.token) as ws:
            op = await ws.subscribe(FOLLOW)
            events = ws.events(op)
            replayed = [(await anext(events))["myJobEvents"] for _ in range(3)]
            assert [e["position"] for e in replayed] == [1, 2, 3]
            await user.data("mutation($id: ID!) { cancelJob(id: $id) { id } }", {"id": first["id"]})
            moved: dict[str, int] = {}
            async for data in events:
                event = data["myJobEvents"]
                if event["__typename"] == "JobQueued":
                    assert event["cursor"] != ""  # resumable: the last real cursor
                    moved[event["jobId"]] = event["position"]
                if moved == {second["id"]: 1, third["id"]: 2}:
                    break
        await stack.services.simulators[0].simulator.release_steps(10)


async def test_backends_and_eta_after_a_run(tmp_path: Path) -> None:
    async with running_stargraph(
        tmp_path, simulate=SimulateOptions(step_time_s=0.005), default_model=RECORDED_CHECKPOINT
    ) as stack:
        user = await stack.client.register("timer")
        job = await _submit(user)
        async with subscriptions(stack.url, user.token) as ws:
            statuses = [e["jobEvents"]["status"] async for e in
                        ws.events(await ws.subscribe(JOB_EVENTS, {"id": job["id"]}))]  # fmt: skip
        assert statuses[-1] == "SUCCEEDED"
        admin = await stack.admin()
        backends = (await admin.data("{ backends { url healthy inflight lastError "
                                     "meanRunSeconds } }"))["backends"]  # fmt: skip
        assert [b["url"] for b in backends] == [stack.services.simulators[0].url]
        assert backends[0]["healthy"] is True and backends[0]["meanRunSeconds"] > 0
        info = (await user.data("{ queue { length running healthyBackends etaSeconds } }"))["queue"]
        assert info == {"length": 0, "running": 0, "healthyBackends": 1, "etaSeconds": 0.0}
