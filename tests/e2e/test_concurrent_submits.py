"""50 truly concurrent submissions over HTTP on an exact balance: no overdraft, ever."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from stargraph.comfy.sim_config import RECORDED_CHECKPOINT
from tests.e2e.harness import GraphQLError, database_url, running_stargraph

SUBMIT = "mutation($i: Text2ImageInput!) { submitText2Image(input: $i) { id } }"


@pytest.mark.parametrize("engine", ["sqlite", "postgres"])
async def test_fifty_concurrent_submissions_never_overdraw(tmp_path: Path, engine: str) -> None:
    async with (
        database_url(engine, tmp_path) as url,
        running_stargraph(
            tmp_path,
            database_url=url,
            worker=False,  # no backend: every accepted job stays held and waiting
            default_model=RECORDED_CHECKPOINT,
            signup_points=100,
            price_per_image=10,
            submits_per_minute=1000,
            max_queued_per_user=1000,
        ) as stack,
    ):
        user = await stack.client.register("racer")

        async def one(n: int) -> str:
            try:
                await user.data(SUBMIT, {"i": {"prompt": f"a fox number {n}"}})
            except GraphQLError as error:
                return error.code or "NO_CODE"
            return "ok"

        outcomes = await asyncio.gather(*(one(n) for n in range(50)))
        assert outcomes.count("ok") == 10
        assert outcomes.count("INSUFFICIENT_POINTS") == 40
        data = await user.data(
            "{ balance { available frozen } jobs(first: 100) { edges { node { id status } } } "
            "ledger(first: 100) { edges { node { kind } } } queue { length } }"
        )
        assert data["balance"] == {"available": 0, "frozen": 100}
        assert len(data["jobs"]["edges"]) == 10
        assert {e["node"]["status"] for e in data["jobs"]["edges"]} == {"QUEUED"}
        kinds = [e["node"]["kind"] for e in data["ledger"]["edges"]]
        assert kinds.count("HOLD") == 10 and kinds.count("GRANT") == 1 and len(kinds) == 11
        assert data["queue"]["length"] == 10
        assert await stack.services.ledger.audit() == []
