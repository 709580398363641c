"""The whole user story over GraphQL, through a real server, a real WebSocket client, a
simulated ComfyUI and the fake Ollama: register, submit a Chinese prompt, follow it live,
fetch the images through their links, check the points to the last one, page the gallery."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

from PIL import Image

from stargraph.bootstrap import SimulateOptions
from stargraph.comfy.sim_config import RECORDED_CHECKPOINT
from tests.e2e.harness import Stack, running_stargraph, subscriptions
from tests.fakes.ollama import running_fake_ollama

EVENTS = """subscription($after: String) { myJobEvents(after: $after) {
  __typename jobId status cursor at
  ... on JobQueued { position }
  ... on JobProgress { step maxSteps fraction }
  ... on JobPreview { image }
  ... on JobSucceeded { images { id url width height seed } }
  ... on JobFailed { error { code message } }
} }"""
SUBMIT = """mutation($i: Text2ImageInput!) { submitText2Image(input: $i) {
  id status queuePosition prompt translatedPrompt positivePrompt negativePrompt
  effectiveNegativePrompt translation
  count width height steps cost charged seed model
} }"""
JOB = """query($id: ID!) { job(id: $id) {
  status charged cost progress { step maxSteps fraction } images { id url width height }
  startedAt finishedAt queuePosition error { code }
} }"""
PROMPT = "长发少女，夕阳下的海边"
WIDTH, HEIGHT, STEPS, COUNT = 64, 96, 3, 2


async def _follow(stack: Stack, token: str, job_id: str, events: list[dict[str, Any]]) -> None:
    async with subscriptions(stack.url, token) as ws:
        op = await ws.subscribe(EVENTS, {"after": "0-0"})
        async for data in ws.events(op):
            event = data["myJobEvents"]
            events.append(event)
            if event["jobId"] == job_id and event["status"] in ("SUCCEEDED", "FAILED"):
                return


async def test_register_submit_follow_download_and_pay(tmp_path: Path) -> None:
    async with (
        running_fake_ollama() as ollama,
        running_stargraph(
            tmp_path,
            simulate=SimulateOptions(backends=1, step_time_s=0.01),
            ollama_url=ollama.url,
            default_model=RECORDED_CHECKPOINT,
        ) as stack,
    ):
        user = await stack.client.register("mei")
        assert (await user.data("{ balance { available frozen } }"))["balance"] == {
            "available": 100, "frozen": 0}  # fmt: skip

        job = (await user.data(SUBMIT, {"i": {"prompt": PROMPT, "count": COUNT, "width": WIDTH,
                                               "height": HEIGHT, "steps": STEPS}}))  # fmt: skip
        job = job["submitText2Image"]
        assert job["status"] == "QUEUED" and job["queuePosition"] == 1
        assert job["translation"] == "TRANSLATED"
        assert job["translatedPrompt"] == "long-haired girl, seaside at sunset"
        assert (
            job["positivePrompt"] == "(8k, best quality, masterpiece), " + job["translatedPrompt"]
        )
        assert job["negativePrompt"] == ""  # the user's own text, as written
        assert job["effectiveNegativePrompt"].endswith("bad face, bad finger, bad arm, bad leg")
        assert job["cost"] == 20 and job["charged"] is None
        assert ollama.asked_texts(), "the Chinese prompt went to Ollama"

        events: list[dict[str, Any]] = []
        await _follow(stack, user.token, job["id"], events)
        mine = [e for e in events if e["jobId"] == job["id"]]
        kinds = [e["__typename"] for e in mine]
        assert kinds[0] == "JobQueued" and mine[0]["position"] == 1
        assert "JobStarted" in kinds and kinds[-1] == "JobSucceeded"
        assert kinds.index("JobStarted") < kinds.index("JobProgress")
        steps = [e["step"] for e in mine if e["__typename"] == "JobProgress"]
        assert steps == list(range(1, STEPS + 1))
        assert all(e["maxSteps"] == STEPS for e in mine if e["__typename"] == "JobProgress")
        previews = [e["image"] for e in mine if e["__typename"] == "JobPreview"]
        assert previews and all(p.startswith("data:image/") for p in previews)
        cursors = [e["cursor"] for e in events]
        assert cursors == sorted(cursors, key=lambda c: tuple(map(int, c.split("-"))))

        images = mine[-1]["images"]
        assert len(images) == COUNT
        for image in images:
            assert (image["width"], image["height"]) == (WIDTH, HEIGHT)
            response = await stack.client.http.get(image["url"])  # no Authorization header
            assert response.status_code == 200
            assert response.headers["content-type"] == "image/png"
            assert Image.open(io.BytesIO(response.content)).size == (WIDTH, HEIGHT)

        done = (await user.data(JOB, {"id": job["id"]}))["job"]
        assert done["status"] == "SUCCEEDED" and done["charged"] == 20
        assert done["queuePosition"] is None and done["error"] is None
        assert done["progress"] == {"step": STEPS, "maxSteps": STEPS, "fraction": 1.0}
        assert sorted(i["id"] for i in done["images"]) == sorted(i["id"] for i in images)

        money = await user.data(
            "{ balance { available frozen } ledger { edges { node { kind amount availableAfter "
            "frozenAfter jobId } } } }"
        )
        assert money["balance"] == {"available": 80, "frozen": 0}
        entries = [e["node"] for e in money["ledger"]["edges"]]
        assert [(e["kind"], e["availableAfter"], e["frozenAfter"]) for e in entries] == [
            ("CAPTURE", 80, 0), ("HOLD", 80, 20), ("GRANT", 100, 0)]  # fmt: skip
        assert {e["jobId"] for e in entries[:2]} == {job["id"]}

        first = (await user.data("{ gallery(first: 1) { edges { cursor node { id } } "
                                 "pageInfo { hasNextPage endCursor } } }"))["gallery"]  # fmt: skip
        assert len(first["edges"]) == 1 and first["pageInfo"]["hasNextPage"] is True
        rest = (
            await user.data(
                "query($a: String) { gallery(first: 5, after: $a) "
                "{ edges { node { id job { id } } } pageInfo { hasNextPage hasPreviousPage } } }",
                {"a": first["pageInfo"]["endCursor"]},
            )
        )["gallery"]
        assert rest["pageInfo"] == {"hasNextPage": False, "hasPreviousPage": True}
        shown = [first["edges"][0]["node"]["id"], *(e["node"]["id"] for e in rest["edges"])]
        assert sorted(shown) == sorted(i["id"] for i in images)
        assert all(e["node"]["job"]["id"] == job["id"] for e in rest["edges"])


async def test_job_events_starts_with_the_current_state_and_ends(tmp_path: Path) -> None:
    async with running_stargraph(
        tmp_path, simulate=SimulateOptions(step_time_s=0.005), default_model=RECORDED_CHECKPOINT
    ) as stack:
        user = await stack.client.register("lin")
        job_id = (await user.data(SUBMIT, {"i": {"prompt": "a cat", "steps": 2,
                                                 "width": 64, "height": 64}}))  # fmt: skip
        job_id = job_id["submitText2Image"]["id"]
        query = "subscription($id: ID!) { jobEvents(jobId: $id) { __typename status } }"
        async with subscriptions(stack.url, user.token) as ws:
            live = [
                e["jobEvents"] async for e in ws.events(await ws.subscribe(query, {"id": job_id}))
            ]
        assert live[-1] == {"__typename": "JobSucceeded", "status": "SUCCEEDED"}
        async with subscriptions(stack.url, user.token) as ws:  # after the end: one snapshot
            again = [
                e["jobEvents"] async for e in ws.events(await ws.subscribe(query, {"id": job_id}))
            ]
        assert again == [{"__typename": "JobSucceeded", "status": "SUCCEEDED"}]
