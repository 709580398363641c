"""Hostile variables and hostile bodies, the two ways in that generated documents miss.

- Fixed operations with variables drawn from any JSON (wrong types, nesting, huge numbers,
  NUL bytes, injection text), and submissions that are valid but for one field — these
  reach deep into the submit path (hold, queue caps, translation) before being refused.
- Raw request bodies: bytes, JSON that is not an operation, odd content types.

The same judge as the schema fuzz: no 5xx, coded errors, nothing internal shown, refused
requests change nothing, the ledger audit stays clean.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import strategies as st

from tests.hostile.fuzzing import drive, expect_clean, scaled
from tests.hostile.loop import held_in_thread
from tests.hostile.values import json_values, weighted
from tests.hostile.world import Known, World, hostile_world

ROLES = ["user", "user", "admin", "anonymous"]
SUBMIT = (
    "mutation($i: Text2ImageInput!) { submitText2Image(input: $i) "
    "{ id status cost queuePosition translation seed } }"
)
OPERATIONS: dict[str, tuple[str, ...]] = {
    SUBMIT: ("i",),
    "query($f: Int, $a: String, $s: [JobStatus!]) { jobs(first: $f, after: $a, status: $s) "
    "{ edges { cursor node { id status } } pageInfo { hasNextPage endCursor } } }": ("f", "a", "s"),
    "query($f: Int, $a: String) { ledger(first: $f, after: $a) "
    "{ edges { node { id kind amount } } pageInfo { endCursor } } }": ("f", "a"),
    "query($f: Int, $a: String) { gallery(first: $f, after: $a) { edges { node { id url } } } }": (
        "f",
        "a",
    ),
    "query($id: ID!) { job(id: $id) { id status images { id url } } }": ("id",),
    "mutation($id: ID!) { cancelJob(id: $id) { id status } }": ("id",),
    "mutation($id: ID!, $p: Priority, $t: Boolean) "
    "{ reprioritizeJob(id: $id, priority: $p, toFront: $t) { id priority } }": ("id", "p", "t"),
    "mutation($id: ID!) { deleteImage(id: $id) }": ("id",),
    "mutation($u: ID!, $n: Int!, $r: String!) "
    "{ grantPoints(userId: $u, amount: $n, reason: $r) { available } }": ("u", "n", "r"),
    "mutation($u: String!, $p: String!) { login(username: $u, password: $p) { token } }": (
        "u",
        "p",
    ),
    "mutation($u: String!, $p: String!) { register(username: $u, password: $p) { token } }": (
        "u",
        "p",
    ),
}
VALID_INPUT = {
    "prompt": "a lighthouse at dawn", "negativePrompt": "", "count": 1, "width": 64,
    "height": 64, "steps": 1, "cfg": 7.5, "sampler": "euler", "scheduler": "normal",
    "seed": 42, "workflow": "t2i", "priority": "NORMAL",
}  # fmt: skip
PLANNED = {"variables": 1000, "near_valid": 400, "bodies": 400}


def _variables(known: Known) -> st.SearchStrategy[dict[str, Any]]:
    """An operation and its variables: each variable any JSON, or left out."""
    anything = json_values(known)

    def for_operation(query: str) -> st.SearchStrategy[dict[str, Any]]:
        names = OPERATIONS[query]
        values = st.fixed_dictionaries({}, optional={name: anything for name in names})
        return values.map(lambda v: {"query": query, "variables": v})

    return st.sampled_from(sorted(OPERATIONS)).flatmap(for_operation)


def _near_valid(known: Known) -> st.SearchStrategy[dict[str, Any]]:
    """A valid submission with one field replaced by a hostile value, or with an
    idempotency key (repeats must not charge twice)."""
    anything = weighted((1, json_values(known)), (1, st.sampled_from(
        [None, -1, 0, 9, 2049, 72, 101, 30.5, "", "x" * 2001, "a\x00b", "LOW", "URGENT",
         "{{ 7*7 }}", "一只猫", 2**53, 1e308, [], {}]
    )))  # fmt: skip
    replaced = st.tuples(st.sampled_from([*sorted(VALID_INPUT), "idempotencyKey", "extra"]),
                         anything)  # fmt: skip
    return replaced.map(
        lambda kv: {"query": SUBMIT, "variables": {"i": {**VALID_INPUT, kv[0]: kv[1]}}}
    )


def _bodies(known: Known) -> st.SearchStrategy[tuple[bytes, str]]:
    operation = st.fixed_dictionaries(
        {}, optional={key: json_values(known) for key in
                      ("query", "variables", "operationName", "extensions")},
    )  # fmt: skip
    text = st.one_of(
        operation.map(json.dumps),
        json_values(known).map(json.dumps),
        st.text(max_size=200),
        st.sampled_from(['{"query": "{ me { id } }"', "[]", "[{}]", "null", '{"query": null}']),
    )
    body = st.one_of(st.binary(max_size=300), text.map(lambda t: t.encode("utf-8", "replace")))
    content_type = st.sampled_from([
        "application/json", "application/graphql", "text/plain", "multipart/form-data",
        "application/x-www-form-urlencoded", "", "application/json; charset=latin-1",
    ])  # fmt: skip
    return st.tuples(body, content_type)


def _send_as_anyone(world: World) -> Any:
    roles = iter(ROLES * 10**6)

    def send(payload: dict[str, Any]) -> Any:
        return world.exchange(next(roles), payload)

    return send


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_hostile_variables_and_bodies(tmp_path: Path) -> None:
    with held_in_thread(lambda: hostile_world(tmp_path)) as (loop, world):
        drive(loop, _variables(world.known), scaled(PLANNED["variables"]), _send_as_anyone(world))
        drive(loop, _near_valid(world.known), scaled(PLANNED["near_valid"]),
              lambda payload: world.exchange("user", payload))  # fmt: skip
        drive(loop, _bodies(world.known), scaled(PLANNED["bodies"]),
              lambda b: world.exchange("user", b[0], content_type=b[1]))  # fmt: skip
        expect_clean(world, loop, sum(scaled(n) for n in PLANNED.values()))
