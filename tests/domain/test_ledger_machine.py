"""A hypothesis state machine drives the real ledger with random grants, holds and settlements
(repeated, concurrent) over several users and jobs, and checks every invariant after each step."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass
from typing import Any, TypeVar

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    Bundle,
    RuleBasedStateMachine,
    invariant,
    multiple,
    rule,
    run_state_machine_as_test,
)

from stargraph.domain.errors import InsufficientPoints, NotFound
from stargraph.domain.ledger import Balance, Settlement, clamp_capture
from stargraph.domain.types import JobId, UserId, new_job_id
from stargraph.store.db import close_db, init_db, migrate
from stargraph.store.ledger import TortoiseLedger
from stargraph.store.models import AccountRow, UserRow

T = TypeVar("T")
Runner = Callable[[Coroutine[Any, Any, T]], T]

USERS = 3
EXAMPLES = {"sqlite": 30, "postgres": 10, "mariadb": 10}


@dataclass
class HeldJob:
    user: int
    amount: int
    first: Balance | None = None  # None: the hold was refused
    settlement: Settlement | None = None


async def _new_user() -> UserId:
    name = f"m{uuid.uuid4().hex[:12]}"
    user = await UserRow.create(username=name, username_key=name, password_hash="x")
    await AccountRow.create(user=user)
    return UserId(user.id)


class LedgerMachine(RuleBasedStateMachine):
    """The model: per user (available, frozen); per job its hold and its one settlement."""

    jobs = Bundle("jobs")

    def __init__(self, run: Runner[Any]) -> None:
        super().__init__()
        self.run = run
        self.ledger = TortoiseLedger()
        self.users = [run(_new_user()) for _ in range(USERS)]
        self.available = [0] * USERS
        self.frozen = [0] * USERS
        self.held: dict[JobId, HeldJob] = {}
        self.grants: dict[str, tuple[int, int, Balance]] = {}

    # ------------------------------------------------------------ moves

    @rule(
        user=st.integers(0, USERS - 1),
        amount=st.integers(-80, 150).filter(bool),
        keyed=st.booleans(),
    )
    def grant(self, user: int, amount: int, keyed: bool) -> None:
        key = f"g:{uuid.uuid4().hex}" if keyed else None
        if self.available[user] + amount < 0:
            with pytest.raises(InsufficientPoints):
                self.run(self.ledger.grant(self.users[user], amount, "machine", key))
            return
        result = self.run(self.ledger.grant(self.users[user], amount, "machine", key))
        self.available[user] += amount
        assert result == self._balance(user)
        if key:
            self.grants[key] = (user, amount, result)

    @rule(data=st.data())
    def repeat_grant(self, data: st.DataObject) -> None:
        if not self.grants:
            return
        key = data.draw(st.sampled_from(sorted(self.grants)))
        user, amount, first = self.grants[key]
        assert self.run(self.ledger.grant(self.users[user], amount, "again", key)) == first

    @rule(target=jobs, user=st.integers(0, USERS - 1), amount=st.integers(0, 70))
    def hold(self, user: int, amount: int) -> JobId:
        job = new_job_id()
        self.held[job] = HeldJob(user, amount)
        self._attempt_hold(job)
        return job

    @rule(job=jobs)
    def hold_again(self, job: JobId) -> None:
        """A replayed submission: the first hold's answer, or a fresh try if it was refused."""
        entry = self.held[job]
        if entry.first is None:
            self._attempt_hold(job)
            return
        assert self.run(self.ledger.hold(self.users[entry.user], job, entry.amount)) == entry.first

    @rule(
        target=jobs,
        user=st.integers(0, USERS - 1),
        count=st.integers(2, 6),
        amount=st.integers(1, 40),
    )
    def concurrent_holds(self, user: int, count: int, amount: int) -> Any:
        jobs = [new_job_id() for _ in range(count)]
        uid = self.users[user]

        async def all_at_once() -> list[Any]:
            calls = (self.ledger.hold(uid, job, amount) for job in jobs)
            return await asyncio.gather(*calls, return_exceptions=True)

        expected = min(count, self.available[user] // amount)
        outcomes = self.run(all_at_once())
        assert sum(isinstance(o, Balance) for o in outcomes) == expected
        for job, outcome in zip(jobs, outcomes, strict=True):
            if not isinstance(outcome, Balance):
                assert isinstance(outcome, InsufficientPoints), outcome
            self.held[job] = HeldJob(
                user, amount, outcome if isinstance(outcome, Balance) else None
            )
        self.available[user] -= expected * amount
        self.frozen[user] += expected * amount
        return multiple(*jobs)

    @rule(job=jobs, capture=st.integers(-10, 100))
    def settle(self, job: JobId, capture: int) -> None:
        """Capture (success), zero (failure or cancel) or a repeat: one settlement per job."""
        entry = self.held[job]
        if entry.first is None:
            with pytest.raises(NotFound):
                self.run(self.ledger.settle(job, capture))
            return
        result = self.run(self.ledger.settle(job, capture))
        if entry.settlement is not None:
            assert result == entry.settlement
            return
        captured = clamp_capture(entry.amount, capture)
        assert result == Settlement(job, entry.amount, captured, entry.amount - captured)
        entry.settlement = result
        self.frozen[entry.user] -= entry.amount
        self.available[entry.user] += entry.amount - captured

    # ------------------------------------------------------------ invariants

    @invariant()
    def balances_match_the_model_and_never_go_negative(self) -> None:
        for index, uid in enumerate(self.users):
            balance = self.run(self.ledger.balance(uid))
            assert balance == self._balance(index)
            assert balance.available >= 0 and balance.frozen >= 0

    @invariant()
    def the_audit_is_clean(self) -> None:
        for uid in self.users:
            assert self.run(self.ledger.audit(uid)) == []

    @invariant()
    def frozen_is_exactly_the_open_holds(self) -> None:
        for index in range(USERS):
            open_holds = sum(
                e.amount
                for e in self.held.values()
                if e.user == index and e.first is not None and e.settlement is None
            )
            assert self.frozen[index] == open_holds

    # ------------------------------------------------------------ helpers

    def _attempt_hold(self, job: JobId) -> None:
        entry = self.held[job]
        if self.available[entry.user] < entry.amount:
            with pytest.raises(InsufficientPoints):
                self.run(self.ledger.hold(self.users[entry.user], job, entry.amount))
            return
        entry.first = self.run(self.ledger.hold(self.users[entry.user], job, entry.amount))
        self.available[entry.user] -= entry.amount
        self.frozen[entry.user] += entry.amount
        assert entry.first == self._balance(entry.user)

    def _balance(self, user: int) -> Balance:
        return Balance(self.available[user], self.frozen[user])


@pytest.mark.parametrize("engine", list(EXAMPLES))
def test_ledger_state_machine(engine: str, new_database: Callable[[str], Awaitable[str]]) -> None:
    """Sync on purpose: hypothesis drives the rules, each one run on this test's own loop."""
    loop = asyncio.new_event_loop()
    url = loop.run_until_complete(_made_by(new_database, engine))
    run: Runner[Any] = loop.run_until_complete
    run(init_db(url))
    try:
        run(migrate(url))

        class OnThisLoop(LedgerMachine):
            def __init__(self) -> None:
                super().__init__(run)

        run_state_machine_as_test(
            OnThisLoop,
            settings=settings(
                max_examples=EXAMPLES[engine],
                stateful_step_count=20,
                deadline=None,
                suppress_health_check=[HealthCheck.too_slow],
            ),
        )
    finally:
        run(close_db())
        loop.close()


async def _made_by(factory: Callable[[str], Awaitable[str]], engine: str) -> str:
    return await factory(engine)
