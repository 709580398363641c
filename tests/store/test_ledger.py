"""The ledger contract, run on SQLite, PostgreSQL and MariaDB (real servers, real connections)."""

from __future__ import annotations

import asyncio
import uuid

import pytest
from tortoise.context import TortoiseContext
from tortoise.transactions import in_transaction

from stargraph.domain.errors import BadUserInput, Conflict, InsufficientPoints, NotFound
from stargraph.domain.ledger import Balance, EntryKind, Settlement
from stargraph.domain.types import JobId, UserId, new_job_id
from stargraph.store.db import tortoise_config
from stargraph.store.ledger import TortoiseLedger
from stargraph.store.models import AccountRow, HoldRow, LedgerEntryRow, UserRow


async def make_user(points: int = 0) -> UserId:
    """A user with an empty account, then `points` granted through the ledger."""
    name = f"u{uuid.uuid4().hex[:10]}"
    user = await UserRow.create(username=name, username_key=name, password_hash="x")
    await AccountRow.create(user=user)
    uid = UserId(user.id)
    if points:
        await TortoiseLedger().grant(uid, points, "test")
    return uid


@pytest.fixture
def ledger(any_db: str) -> TortoiseLedger:
    return TortoiseLedger()


async def kinds(user: UserId) -> list[str]:
    rows = await LedgerEntryRow.filter(user_id=user).order_by("id")
    return [r.kind for r in rows]


# ---------------------------------------------------------------- grant


async def test_grant_adds_points_and_records_the_balance_after(ledger: TortoiseLedger) -> None:
    user = await make_user()
    assert await ledger.grant(user, 100, "welcome") == Balance(100, 0)
    assert await ledger.grant(user, -30, "correction") == Balance(70, 0)
    newest, oldest = await ledger.entries(user, limit=10)
    assert (oldest.kind, oldest.amount, oldest.available_after, oldest.reason) == (
        EntryKind.GRANT, 100, 100, "welcome",
    )  # fmt: skip
    assert (newest.amount, newest.available_after, newest.frozen_after) == (-30, 70, 0)
    assert newest.created_at.tzinfo is not None
    assert await ledger.audit(user) == []


async def test_a_grant_key_makes_the_grant_happen_once(ledger: TortoiseLedger) -> None:
    user = await make_user()
    first = await ledger.grant(user, 50, "signup", key=f"signup:{user}")
    await ledger.grant(user, 5, "other")
    assert await ledger.grant(user, 50, "signup", key=f"signup:{user}") == first
    assert await ledger.balance(user) == Balance(55, 0)
    assert await kinds(user) == ["grant", "grant"]


async def test_a_grant_key_of_another_user_is_a_conflict(ledger: TortoiseLedger) -> None:
    alice, bob = await make_user(), await make_user()
    await ledger.grant(alice, 10, "x", key="shared-key")
    with pytest.raises(Conflict):
        await ledger.grant(bob, 10, "x", key="shared-key")
    assert await ledger.balance(bob) == Balance(0, 0)


async def test_a_negative_grant_never_takes_available_below_zero(ledger: TortoiseLedger) -> None:
    user = await make_user(20)
    with pytest.raises(InsufficientPoints):
        await ledger.grant(user, -21, "too much")
    assert await ledger.grant(user, -20, "all") == Balance(0, 0)


@pytest.mark.parametrize(("amount", "reason", "field"), [(0, "r", "amount"), (5, " ", "reason")])
async def test_bad_grants_are_refused_by_field(
    ledger: TortoiseLedger, amount: int, reason: str, field: str
) -> None:
    user = await make_user()
    with pytest.raises(BadUserInput) as err:
        await ledger.grant(user, amount, reason)
    assert err.value.field == field


async def test_unknown_users_are_not_found(ledger: TortoiseLedger) -> None:
    with pytest.raises(NotFound):
        await ledger.grant(UserId(987654), 10, "x")
    with pytest.raises(NotFound):
        await ledger.hold(UserId(987654), new_job_id(), 10)
    with pytest.raises(NotFound):
        await ledger.balance(UserId(987654))


# ---------------------------------------------------------------- hold


async def test_hold_freezes_points(ledger: TortoiseLedger) -> None:
    user = await make_user(100)
    job = new_job_id()
    assert await ledger.hold(user, job, 30) == Balance(70, 30)
    (entry, *_) = await ledger.entries(user, limit=1)
    assert (entry.kind, entry.amount, entry.job_id) == (EntryKind.HOLD, 30, job)
    assert (entry.available_after, entry.frozen_after) == (70, 30)
    assert await ledger.audit(user) == []


async def test_a_repeated_hold_is_a_no_op_returning_the_first_result(
    ledger: TortoiseLedger,
) -> None:
    user = await make_user(100)
    job = new_job_id()
    first = await ledger.hold(user, job, 60)
    assert await ledger.hold(user, job, 60) == first  # enough left for a second: still once
    await ledger.hold(user, new_job_id(), 40)
    assert await ledger.hold(user, job, 60) == first  # nothing left: still the first answer
    assert await ledger.balance(user) == Balance(0, 100)
    assert await kinds(user) == ["grant", "hold", "hold"]


async def test_an_insufficient_hold_changes_nothing(ledger: TortoiseLedger) -> None:
    user = await make_user(25)
    job = new_job_id()
    with pytest.raises(InsufficientPoints):
        await ledger.hold(user, job, 30)
    assert await ledger.balance(user) == Balance(25, 0)
    assert not await HoldRow.exists(job_id=job)
    assert await kinds(user) == ["grant"]


async def test_a_free_job_still_has_one_hold_and_one_settlement(ledger: TortoiseLedger) -> None:
    user = await make_user()
    job = new_job_id()
    assert await ledger.hold(user, job, 0) == Balance(0, 0)
    assert await ledger.settle(job, 10) == Settlement(job, held=0, captured=0, released=0)
    assert await ledger.audit(user) == []


# ---------------------------------------------------------------- settle


async def test_settle_captures_part_and_releases_the_rest(ledger: TortoiseLedger) -> None:
    user = await make_user(100)
    job = new_job_id()
    await ledger.hold(user, job, 40)
    assert await ledger.settle(job, 30) == Settlement(job, held=40, captured=30, released=10)
    assert await ledger.balance(user) == Balance(70, 0)
    release, capture = await ledger.entries(user, limit=2)
    assert (capture.kind, capture.amount, capture.available_after, capture.frozen_after) == (
        EntryKind.CAPTURE, 30, 60, 10,
    )  # fmt: skip
    assert (release.kind, release.amount, release.available_after, release.frozen_after) == (
        EntryKind.RELEASE, 10, 70, 0,
    )  # fmt: skip
    assert await ledger.audit(user) == []


async def test_a_repeated_settlement_returns_the_first(ledger: TortoiseLedger) -> None:
    user = await make_user(100)
    job = new_job_id()
    await ledger.hold(user, job, 40)
    first = await ledger.settle(job, 40)
    assert await ledger.settle(job, 0) == first
    assert await ledger.settle(job, 40) == first
    assert await ledger.balance(user) == Balance(60, 0)
    assert await kinds(user) == ["grant", "hold", "capture"]


@pytest.mark.parametrize(("asked", "captured"), [(500, 40), (-5, 0), (0, 0)])
async def test_capture_is_clamped_to_the_hold(
    ledger: TortoiseLedger, asked: int, captured: int
) -> None:
    user = await make_user(100)
    job = new_job_id()
    await ledger.hold(user, job, 40)
    result = await ledger.settle(job, asked)
    assert (result.captured, result.released) == (captured, 40 - captured)
    assert await ledger.balance(user) == Balance(100 - captured, 0)


async def test_settling_an_unknown_job_is_not_found(ledger: TortoiseLedger) -> None:
    with pytest.raises(NotFound):
        await ledger.settle(new_job_id(), 0)


async def test_concurrent_settlements_settle_once(ledger: TortoiseLedger) -> None:
    user = await make_user(100)
    job = new_job_id()
    await ledger.hold(user, job, 50)
    results = await asyncio.gather(*(ledger.settle(job, c) for c in (10, 20, 30, 40)))
    assert len(set(results)) == 1
    assert await ledger.balance(user) == Balance(100 - results[0].captured, 0)
    assert await ledger.audit(user) == []


# ---------------------------------------------------------------- composition and audit


async def test_a_hold_rolls_back_with_the_callers_transaction(ledger: TortoiseLedger) -> None:
    user = await make_user(100)
    job = new_job_id()
    with pytest.raises(RuntimeError):
        async with in_transaction():
            await ledger.hold(user, job, 30)
            raise RuntimeError("the job row could not be written")
    assert await ledger.balance(user) == Balance(100, 0)
    assert not await HoldRow.exists(job_id=job)
    async with in_transaction():
        await ledger.hold(user, job, 30)
        await ledger.hold(user, job, 30)  # a repeat inside the transaction stays usable
        await ledger.grant(user, 1, "same transaction")
    assert await ledger.balance(user) == Balance(71, 30)
    assert await ledger.audit() == []


async def test_entries_page_newest_first(ledger: TortoiseLedger) -> None:
    user = await make_user()
    for amount in range(1, 6):
        await ledger.grant(user, amount, f"g{amount}")
    first = await ledger.entries(user, limit=2)
    second = await ledger.entries(user, limit=2, before_id=first[-1].id)
    assert [e.amount for e in first + second] == [5, 4, 3, 2]


async def test_audit_finds_a_tampered_balance(ledger: TortoiseLedger) -> None:
    user, other = await make_user(100), await make_user(10)
    await ledger.hold(user, new_job_id(), 30)
    await AccountRow.filter(user_id=user).update(available=1000)
    findings = await ledger.audit()
    assert findings and {f.user_id for f in findings} == {user}
    assert any("differs from the sum of entries" in f.problem for f in findings)
    assert await ledger.audit(other) == []


async def test_audit_finds_a_tampered_entry_and_a_forged_settlement(
    ledger: TortoiseLedger,
) -> None:
    user = await make_user(100)
    job = new_job_id()
    await ledger.hold(user, job, 30)
    await LedgerEntryRow.filter(move_key=f"hold:{job}").update(amount=20)
    await HoldRow.filter(job_id=job).update(settled=True, captured=30)
    problems = " | ".join(f.problem for f in await ledger.audit(user))
    assert "moves give" in problems
    assert "frozen 30 differs from open holds 0" in problems
    assert f"job {job}: moves" in problems


async def test_the_account_counts_its_open_holds(ledger: TortoiseLedger) -> None:
    """Each hold (free ones too) opens one, its settlement closes it; the audit checks the
    count against the holds."""
    user = await make_user(100)
    jobs = [new_job_id() for _ in range(3)]
    for job, amount in zip(jobs, (30, 0, 10), strict=True):
        await ledger.hold(user, job, amount)
    await ledger.hold(user, jobs[0], 30)  # a repeat opens nothing
    assert (await AccountRow.get(user_id=user)).open_holds == 3
    await ledger.settle(jobs[0], 30)
    await ledger.settle(jobs[1], 0)
    await ledger.settle(jobs[1], 0)  # a repeat closes nothing
    assert (await AccountRow.get(user_id=user)).open_holds == 1
    assert await ledger.audit(user) == []
    await AccountRow.filter(user_id=user).update(open_holds=2)
    [finding] = await ledger.audit(user)
    assert finding.problem == "open_holds 2 differs from 1 unsettled holds"


# ---------------------------------------------------------------- concurrency


async def _hold_on_own_connection(
    url: str, start: asyncio.Barrier, user: UserId, job: JobId, amount: int
) -> bool:
    """One hold through a Tortoise context (and so a connection) of this task's own."""
    context = TortoiseContext()
    with context:
        await context.init(config=tortoise_config(url))
        try:
            await context.db().execute_query("SELECT 1")  # connected before the start
            await start.wait()  # every task connected: all go together
            await TortoiseLedger().hold(user, job, amount)
            return True
        except InsufficientPoints:
            return False
        finally:
            await context.close_connections()


async def test_fifty_concurrent_holds_on_separate_connections(any_db: str) -> None:
    user = await make_user(100)
    start = asyncio.Barrier(50)
    outcomes = await asyncio.gather(
        *(_hold_on_own_connection(any_db, start, user, new_job_id(), 10) for _ in range(50))
    )
    assert outcomes.count(True) == 10
    assert outcomes.count(False) == 40
    ledger = TortoiseLedger()
    assert await ledger.balance(user) == Balance(0, 100)
    assert await HoldRow.filter(user_id=user).count() == 10
    assert await ledger.audit() == []
