"""Operations generated from the committed schema (hypothesis-graphql), sent to a real server.

For every answer: no 5xx, every error carries `extensions.code`, no internal error (masked
or not) and no internal text (tracebacks, exception names, SQL); and a request that was
refused as a whole changed nothing (users, tokens, balances, ledger, holds, jobs, images,
files, queue). The ledger audit stays clean throughout. Valid operations may succeed (a
submit, a grant, a cancel) and change state; that is allowed and then re-snapshotted.

`logout` is left out of the signed-in runs (it would end the session under test); the
anonymous run covers it. SQLite for the full run; a shorter one on PostgreSQL, whose
stricter text handling (NUL bytes, lengths) finds what SQLite forgives.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import hypothesis_graphql as hg
import pytest
from hypothesis import strategies as st

from stargraph.settings import PROJECT_ROOT
from tests.e2e.harness import database_url
from tests.hostile.fuzzing import drive, expect_clean, scaled
from tests.hostile.loop import LoopThread, held_in_thread
from tests.hostile.values import scalars
from tests.hostile.world import World, hostile_world

SDL = (PROJECT_ROOT / "schema.graphql").read_text()
MUTATIONS = ["register", "login", "logout", "submitText2Image", "cancelJob",
             "reprioritizeJob", "deleteImage", "grantPoints"]  # fmt: skip

# role → requests: (valid queries, valid mutations, operations with one schema violation)
PLAN = {
    "anonymous": (700, 1100, 400),
    "user": (1000, 1800, 500),
    "admin": (800, 1500, 400),
}
POSTGRES_PLAN = {"user": (200, 500, 100), "admin": (100, 400, 100)}


def _fields(role: str) -> list[str]:
    return MUTATIONS if role == "anonymous" else [f for f in MUTATIONS if f != "logout"]


def _fuzz(loop: LoopThread, world: World, role: str, plan: tuple[int, int, int]) -> int:
    custom = scalars(world.known)
    fields = _fields(role)
    negative = st.one_of(
        hg.queries(SDL, custom_scalars=custom, mode=hg.Mode.NEGATIVE),
        hg.mutations(SDL, fields=fields, custom_scalars=custom, mode=hg.Mode.NEGATIVE),
    )
    # Mutations run in order and stop at the first failure: most documents hold one root
    # field, so every mutation is reached; some hold several.
    single = [hg.mutations(SDL, fields=[f], custom_scalars=custom) for f in fields]
    strategies = [
        hg.queries(SDL, custom_scalars=custom),
        st.one_of(*single, hg.mutations(SDL, fields=fields, custom_scalars=custom)),
        negative,
    ]
    for strategy, examples in zip(strategies, plan, strict=True):
        drive(loop, strategy, scaled(examples),
              lambda doc: world.exchange(role, {"query": doc}))  # fmt: skip
    return sum(scaled(n) for n in plan)


@pytest.mark.slow
@pytest.mark.timeout(900)
@pytest.mark.parametrize("role", list(PLAN))
def test_generated_operations_on_sqlite(tmp_path: Path, role: str) -> None:
    with held_in_thread(lambda: hostile_world(tmp_path)) as (loop, world):
        planned = _fuzz(loop, world, role, PLAN[role])
        expect_clean(world, loop, planned)


@pytest.mark.slow
@pytest.mark.timeout(900)
@pytest.mark.postgres
@pytest.mark.parametrize("role", list(POSTGRES_PLAN))
def test_generated_operations_on_postgres(tmp_path: Path, role: str) -> None:
    with held_in_thread(lambda: _postgres_world(tmp_path)) as (loop, world):
        planned = _fuzz(loop, world, role, POSTGRES_PLAN[role])
        expect_clean(world, loop, planned)


@asynccontextmanager
async def _postgres_world(tmp_path: Path) -> AsyncIterator[World]:
    async with (
        database_url("postgres", tmp_path) as url,
        hostile_world(tmp_path, database_url=url) as world,
    ):
        yield world
