"""Balances stay within what the API can show. GraphQL's `Int` is 32 bits; a grant that
would push a balance past 2^31-1 must be refused up front, not applied and then reported as
an internal error (which also leaves the caller unable to read their balance)."""

from __future__ import annotations

from pathlib import Path

from tests.e2e.harness import running_stargraph
from tests.hostile.judge import INTERNAL
from tests.hostile.state import snapshot

INT_MAX = 2**31 - 1
GRANT = (
    'mutation($u: ID!, $n: Int!) { grantPoints(userId: $u, amount: $n, reason: "x") { available } }'
)
READ = (
    "{ balance { available frozen } "
    "ledger(first: 100) { edges { node { amount availableAfter } } } }"
)


async def test_a_grant_past_the_int_range_is_refused_and_changes_nothing(tmp_path: Path) -> None:
    async with running_stargraph(tmp_path, worker=False) as stack:
        user, admin = await stack.client.register("rich"), await stack.admin()
        user_id = user.user_id
        start = (await user.data(READ))["balance"]["available"]
        top_up = await admin.data(GRANT, {"u": user_id, "n": INT_MAX - start})
        assert top_up["grantPoints"]["available"] == INT_MAX
        before = await snapshot(stack.services)
        body = await admin.post(GRANT, {"u": user_id, "n": 1})
        codes = [e["extensions"]["code"] for e in body.get("errors", [])]
        assert INTERNAL not in codes and codes, body
        assert await snapshot(stack.services) == before
        read = await user.post(READ)
        assert not read.get("errors"), read
        assert read["data"]["balance"]["available"] == INT_MAX
