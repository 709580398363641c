"""The authorisation matrix: every operation × owner / another user / admin / anonymous.

One server (real SQLite, Redis, a simulated ComfyUI with manual steps and one slot): the
owner has a finished job with images and fresh waiting jobs for each destructive call; a
blocker job holds the only slot so that waiting jobs stay waiting.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from stargraph.bootstrap import SimulateOptions
from stargraph.comfy.sim_config import RECORDED_CHECKPOINT, SimulatorConfig
from tests.e2e.harness import (
    Client,
    GraphQLError,
    Stack,
    User,
    running_stargraph,
    subscriptions,
)

OK = "ok"
OWNER, OTHER, ADMIN, ANON = "owner", "other", "admin", "anonymous"

SUBMIT = """mutation($i: Text2ImageInput!) { submitText2Image(input: $i) { id status } }"""
JOB_EVENTS = """subscription($id: ID!) { jobEvents(jobId: $id) { __typename jobId status } }"""
MY_EVENTS = """subscription { myJobEvents { __typename jobId } }"""


@dataclass
class World:
    stack: Stack
    users: dict[str, Client]
    passwords: dict[str, str]
    done_job: str
    images: list[str]

    async def waiting_job(self) -> str:
        return await submit(self.users[OWNER])

    @property
    def owner_id(self) -> str:
        owner = self.users[OWNER]
        assert isinstance(owner, User)
        return owner.user_id


async def submit(client: Client, **fields: Any) -> str:
    data = await client.data(SUBMIT, {"i": {"prompt": "a red fox", "steps": 1, **fields}})
    job_id: str = data["submitText2Image"]["id"]
    return job_id


async def outcome(call: Awaitable[Any]) -> str:
    try:
        await call
    except GraphQLError as error:
        return error.code or "NO_CODE"
    return OK


Op = Callable[[World, Client, str], Awaitable[Any]]


def q(query: str, variables: Callable[[World], dict[str, Any]] | None = None) -> Op:
    async def run(world: World, client: Client, actor: str) -> Any:
        return await client.data(query, variables(world) if variables else None)

    return run


async def _cancel(world: World, client: Client, actor: str) -> Any:
    job = await world.waiting_job()
    return await client.data("mutation($id: ID!) { cancelJob(id: $id) { status } }", {"id": job})


def _reprioritize(priority: str, to_front: bool = False) -> Op:
    async def run(world: World, client: Client, actor: str) -> Any:
        job = await world.waiting_job()
        return await client.data(
            "mutation($id: ID!, $p: Priority, $f: Boolean) "
            "{ reprioritizeJob(id: $id, priority: $p, toFront: $f) { priority } }",
            {"id": job, "p": priority, "f": to_front},
        )

    return run


async def _delete_image(world: World, client: Client, actor: str) -> Any:
    image = world.images.pop() if actor in (OWNER, ADMIN) else world.images[0]
    return await client.data("mutation($id: ID!) { deleteImage(id: $id) }", {"id": image})


async def _logout(world: World, client: Client, actor: str) -> Any:
    if actor == ANON:
        return await client.data("mutation { logout }")
    fresh = await world.stack.client.data(
        "mutation($u: String!, $p: String!) { login(username: $u, password: $p) { token } }",
        {"u": actor, "p": world.passwords[actor]},
    )
    session = client.as_user(fresh["login"]["token"])
    await session.data("mutation { logout }")
    assert await outcome(session.data("{ me { id } }")) == "UNAUTHENTICATED", "token still works"


async def _job_events(world: World, client: Client, actor: str) -> Any:
    async with subscriptions(world.stack.url, client.token) as ws:
        op = await ws.subscribe(JOB_EVENTS, {"id": world.done_job})
        return [event async for event in ws.events(op)]


async def _my_events(world: World, client: Client, actor: str) -> Any:
    async with subscriptions(world.stack.url, client.token) as ws:
        op = await ws.subscribe(MY_EVENTS)
        if actor == ANON:  # refused at once
            return [event async for event in ws.events(op)]
        # an event of the caller's own to receive
        message = (await ws.first_messages({op}, lambda: submit(client)))[op]
        if message["type"] == "error" or message["payload"].get("errors"):
            raise GraphQLError(message["payload"])
        return message["payload"]["data"]


USER_DATA = {OWNER: OK, OTHER: OK, ADMIN: OK, ANON: "UNAUTHENTICATED"}
OWNED = {OWNER: OK, OTHER: "NOT_FOUND", ADMIN: OK, ANON: "UNAUTHENTICATED"}
ADMIN_ONLY = {OWNER: "FORBIDDEN", OTHER: "FORBIDDEN", ADMIN: OK, ANON: "UNAUTHENTICATED"}
PUBLIC = {OWNER: OK, OTHER: OK, ADMIN: OK, ANON: OK}

MATRIX: list[tuple[str, Op, dict[str, str]]] = [
    ("me", q("{ me { id username role } }"), USER_DATA),
    ("balance", q("{ balance { available frozen } }"), USER_DATA),
    ("ledger", q("{ ledger { edges { node { kind amount } } } }"), USER_DATA),
    ("jobs", q("{ jobs { edges { node { id } } } }"), USER_DATA),
    ("gallery", q("{ gallery { edges { node { id url } } } }"), USER_DATA),
    ("queue", q("{ queue { length running healthyBackends etaSeconds } }"), USER_DATA),
    ("models", q("{ models samplers schedulers }"), PUBLIC),
    ("workflows", q("{ workflows { name description } pricePerImage }"), PUBLIC),
    ("backends", q("{ backends { url healthy inflight lastError } }"), ADMIN_ONLY),
    (
        "job",
        q("query($id: ID!) { job(id: $id) { id images { url } } }", lambda w: {"id": w.done_job}),
        OWNED,
    ),
    ("submitText2Image", lambda w, c, a: submit(c), USER_DATA),
    (
        "submitText2Image(HIGH)",
        lambda w, c, a: submit(c, priority="HIGH"),
        {OWNER: "FORBIDDEN", OTHER: "FORBIDDEN", ADMIN: OK, ANON: "UNAUTHENTICATED"},
    ),
    ("cancelJob", _cancel, OWNED),
    ("reprioritizeJob(LOW)", _reprioritize("LOW"), OWNED),
    (
        "reprioritizeJob(toFront)",
        _reprioritize("NORMAL", to_front=True),
        {OWNER: "FORBIDDEN", OTHER: "NOT_FOUND", ADMIN: OK, ANON: "UNAUTHENTICATED"},
    ),
    (
        "reprioritizeJob(URGENT)",
        _reprioritize("URGENT"),
        {OWNER: "FORBIDDEN", OTHER: "NOT_FOUND", ADMIN: OK, ANON: "UNAUTHENTICATED"},
    ),
    ("deleteImage", _delete_image, OWNED),
    (
        "grantPoints",
        q(
            'mutation($u: ID!) { grantPoints(userId: $u, amount: 5, reason: "gift") '
            "{ available } }",
            lambda w: {"u": w.owner_id},
        ),
        ADMIN_ONLY,
    ),
    ("logout", _logout, USER_DATA),
    ("register", lambda w, c, a: c.register(f"new-{a}"), PUBLIC),
    (
        "login",
        lambda w, c, a: c.data(
            "mutation($u: String!, $p: String!) { login(username: $u, password: $p) { token } }",
            {"u": OWNER, "p": w.passwords[OWNER]},
        ),
        PUBLIC,
    ),
    ("jobEvents", _job_events, OWNED),
    ("myJobEvents", _my_events, USER_DATA),
]
ACTOR_ORDER = (OTHER, ANON, OWNER, ADMIN)  # destructive calls that must fail run first


async def _world(stack: Stack) -> World:
    anonymous = stack.client
    users = {OWNER: await anonymous.register(OWNER), OTHER: await anonymous.register(OTHER),
             ADMIN: await stack.admin(ADMIN), ANON: anonymous}  # fmt: skip
    passwords = {OWNER: "correct horse 1", OTHER: "correct horse 1", ADMIN: "admin password 1"}
    simulator = stack.services.simulators[0].simulator
    done = await submit(users[OWNER], count=3)
    await simulator.release_steps(1)
    async with subscriptions(stack.url, users[OWNER].token) as ws:
        op = await ws.subscribe(JOB_EVENTS, {"id": done})
        statuses = [event["jobEvents"]["status"] async for event in ws.events(op)]
    assert statuses[-1] == "SUCCEEDED", statuses
    blocker = await anonymous.register("blocker")
    blocked = await submit(blocker)
    async with subscriptions(stack.url, blocker.token) as ws:  # holds the only slot
        op = await ws.subscribe(JOB_EVENTS, {"id": blocked})
        async for event in ws.events(op):
            if event["jobEvents"]["status"] == "RUNNING":
                break
    job = await users[OWNER].data("query($id: ID!) { job(id: $id) { images { id } } }",
                                  {"id": done})  # fmt: skip
    images = [i["id"] for i in job["job"]["images"]]
    return World(stack, users, passwords, done, images)


async def test_every_operation_for_every_kind_of_caller(tmp_path: Path) -> None:
    simulate = SimulateOptions(config=SimulatorConfig(manual_steps=True, step_time=0))
    async with running_stargraph(
        tmp_path,
        simulate=simulate,
        comfyui_max_inflight=1,
        default_model=RECORDED_CHECKPOINT,
        signup_points=10_000,
        submits_per_minute=1000,
        max_queued_per_user=1000,
    ) as stack:
        world = await _world(stack)
        mismatches = []
        for name, op, expected in MATRIX:
            for actor in ACTOR_ORDER:
                got = await outcome(op(world, world.users[actor], actor))
                if got != expected[actor]:
                    mismatches.append(f"{name} as {actor}: expected {expected[actor]}, got {got}")
        assert not mismatches, "\n".join(mismatches)


async def test_other_users_data_never_shows(tmp_path: Path) -> None:
    async with running_stargraph(tmp_path, default_model=RECORDED_CHECKPOINT) as stack:
        owner = await stack.client.register("owner")
        other = await stack.client.register("other")
        job = await submit(owner)
        seen = await other.data(
            "{ jobs { edges { node { id } } } ledger { edges { node { jobId } } } }"
        )
        assert seen["jobs"]["edges"] == []
        assert all(e["node"]["jobId"] != job for e in seen["ledger"]["edges"])
        admin = await stack.admin()
        assert (await admin.data("query($id: ID!) { job(id: $id) { id } }", {"id": job}))["job"][
            "id"
        ] == job
