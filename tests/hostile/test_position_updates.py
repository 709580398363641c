"""A follower of a waiting job is told its new place when the queue moves, and the stream
does not die. Found by bench/fanout.py: `jobEvents` of a job that was waiting when the
subscription began failed with INTERNAL_SERVER_ERROR at the first queue tick."""

from __future__ import annotations

from pathlib import Path

from tests.e2e.harness import running_stargraph, subscriptions

SUBMIT = 'mutation { submitText2Image(input: {prompt: "a fox", steps: 1}) { id } }'
FOLLOW = (
    "subscription($id: ID!) { jobEvents(jobId: $id) { __typename status "
    "... on JobQueued { position } } }"
)


async def test_a_waiting_job_follower_sees_the_queue_move(tmp_path: Path) -> None:
    async with running_stargraph(tmp_path, worker=False, models=["m.safetensors"],
                                 default_model="m.safetensors") as stack:  # fmt: skip
        user = await stack.client.register("waiter")
        first = (await user.data(SUBMIT))["submitText2Image"]["id"]
        second = (await user.data(SUBMIT))["submitText2Image"]["id"]
        async with subscriptions(stack.url, user.token) as ws:
            events = ws.events(await ws.subscribe(FOLLOW, {"id": second}))
            now = (await anext(events))["jobEvents"]
            assert (now["__typename"], now["position"]) == ("JobQueued", 2)
            await user.data("mutation($id: ID!) { cancelJob(id: $id) { id } }", {"id": first})
            moved = (await anext(events))["jobEvents"]
            assert (moved["__typename"], moved["position"]) == ("JobQueued", 1)
