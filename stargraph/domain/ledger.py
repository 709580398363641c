"""The points ledger: grant, hold, capture, release; every move idempotent and audited.

Rules (DESIGN.md invariants):
- `available` never goes below zero, also under concurrent holds.
- A job has exactly one hold; its settlement (capture part or all, release the rest) happens
  exactly once. Repeating a hold or a settlement is a no-op that returns the first result.
- Entries are append-only and record the balances after each move; they sum to the balances.
"""

from __future__ import annotations

import enum
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

from stargraph.domain.errors import BadUserInput
from stargraph.domain.types import JobId, UserId


class EntryKind(enum.StrEnum):
    GRANT = "grant"
    HOLD = "hold"
    CAPTURE = "capture"
    RELEASE = "release"


@dataclass(frozen=True, slots=True)
class Balance:
    available: int
    frozen: int


@dataclass(frozen=True, slots=True)
class LedgerEntry:
    id: int
    user_id: UserId
    kind: EntryKind
    amount: int
    available_after: int
    frozen_after: int
    job_id: JobId | None
    reason: str | None
    created_at: datetime


@dataclass(frozen=True, slots=True)
class Settlement:
    """The outcome of settling one job's hold."""

    job_id: JobId
    held: int
    captured: int
    released: int


@dataclass(frozen=True, slots=True)
class AuditFinding:
    user_id: UserId
    problem: str


class Ledger(Protocol):
    """Moves points. Implementations make each method one database transaction."""

    async def balance(self, user_id: UserId) -> Balance: ...

    async def grant(
        self, user_id: UserId, amount: int, reason: str, key: str | None = None
    ) -> Balance:
        """Add (or, negative, remove) available points; `key` makes the grant idempotent."""
        ...

    async def hold(self, user_id: UserId, job_id: JobId, amount: int) -> Balance:
        """Freeze `amount` for the job; raises InsufficientPoints; a repeat is a no-op."""
        ...

    async def settle(self, job_id: JobId, capture: int) -> Settlement:
        """Capture `capture` (clamped to the hold) and release the rest, once per job."""
        ...

    async def entries(
        self, user_id: UserId, limit: int, before_id: int | None = None
    ) -> list[LedgerEntry]:
        """Newest first."""
        ...

    async def audit(self, user_id: UserId | None = None) -> list[AuditFinding]:
        """Check every invariant for one user or all; an empty list means clean."""
        ...


# ---------------------------------------------------------------- pure rules

ZERO = Balance(available=0, frozen=0)


@dataclass(frozen=True, slots=True)
class HoldState:
    """A job's hold as stored: `captured` is None until it is settled."""

    job_id: JobId
    user_id: UserId
    amount: int
    captured: int | None
    settled: bool


def hold_key(job_id: JobId) -> str:
    return f"hold:{job_id}"


def capture_key(job_id: JobId) -> str:
    return f"capture:{job_id}"


def release_key(job_id: JobId) -> str:
    return f"release:{job_id}"


def check_hold(amount: int) -> None:
    """A hold is the job's cost: zero (free) or positive."""
    if amount < 0:
        raise ValueError(f"a hold cannot be negative: {amount}")


def check_grant(amount: int, reason: str) -> None:
    """A grant moves points (a negative one takes them back) and says why."""
    if amount == 0:
        raise BadUserInput("amount must not be zero", field="amount")
    if not reason.strip():
        raise BadUserInput("a reason is required", field="reason")
    if len(reason) > 255:
        raise BadUserInput("reason is longer than 255 characters", field="reason")
    if not reason.isprintable():
        raise BadUserInput("reason must not contain control characters", field="reason")


def clamp_capture(held: int, capture: int) -> int:
    """Capture what was asked, but never more than the hold nor less than nothing."""
    return max(0, min(capture, held))


def settlement_of(hold: HoldState) -> Settlement:
    captured = hold.captured or 0
    return Settlement(job_id=hold.job_id, held=hold.amount, captured=captured,
                      released=hold.amount - captured)  # fmt: skip


def apply_move(balance: Balance, kind: EntryKind, amount: int) -> Balance:
    """The balance after one entry's move."""
    available, frozen = balance.available, balance.frozen
    if kind is EntryKind.GRANT:
        return Balance(available + amount, frozen)
    if kind is EntryKind.HOLD:
        return Balance(available - amount, frozen + amount)
    if kind is EntryKind.CAPTURE:
        return Balance(available, frozen - amount)
    return Balance(available + amount, frozen - amount)  # RELEASE


def audit_user(
    user_id: UserId,
    balance: Balance | None,
    entries: Sequence[LedgerEntry],
    holds: Sequence[HoldState],
    open_holds: int | None = None,
) -> list[AuditFinding]:
    """Every ledger invariant for one user; `entries` oldest first; `open_holds` is the
    account's count of unsettled holds, when it keeps one. Empty means clean."""
    problems = _audit_entries(entries, balance)
    problems += _audit_holds(balance, entries, holds)
    unsettled = sum(not hold.settled for hold in holds)
    if open_holds is not None and open_holds != unsettled:
        problems.append(f"open_holds {open_holds} differs from {unsettled} unsettled holds")
    return [AuditFinding(user_id, p) for p in problems]


def _audit_entries(entries: Sequence[LedgerEntry], balance: Balance | None) -> list[str]:
    problems: list[str] = []
    running = ZERO
    for entry in entries:
        if entry.kind is not EntryKind.GRANT and entry.amount < 0:
            problems.append(f"entry {entry.id}: negative {entry.kind.value} of {entry.amount}")
        running = apply_move(running, entry.kind, entry.amount)
        recorded = Balance(entry.available_after, entry.frozen_after)
        if recorded != running:
            problems.append(
                f"entry {entry.id}: records {_fmt(recorded)}, moves give {_fmt(running)}"
            )
            running = recorded  # report each broken link once
        if recorded.available < 0 or recorded.frozen < 0:
            problems.append(f"entry {entry.id}: negative balance {_fmt(recorded)}")
    total = _sum_moves(entries)
    if balance is None:
        if entries:
            problems.append("entries exist but the account does not")
        return problems
    if balance.available < 0 or balance.frozen < 0:
        problems.append(f"negative balance {_fmt(balance)}")
    if balance != total:
        problems.append(f"balance {_fmt(balance)} differs from the sum of entries {_fmt(total)}")
    return problems


def _audit_holds(
    balance: Balance | None, entries: Sequence[LedgerEntry], holds: Sequence[HoldState]
) -> list[str]:
    problems: list[str] = []
    by_job: dict[JobId, list[LedgerEntry]] = {}
    for entry in entries:
        if entry.job_id is not None:
            by_job.setdefault(entry.job_id, []).append(entry)
    held = {h.job_id for h in holds}
    problems += [f"job {j}: entries without a hold" for j in by_job if j not in held]
    for hold in holds:
        problems += _audit_hold(hold, by_job.get(hold.job_id, []))
    open_total = sum(h.amount for h in holds if not h.settled)
    if balance is not None and balance.frozen != open_total:
        problems.append(f"frozen {balance.frozen} differs from open holds {open_total}")
    return problems


def _audit_hold(hold: HoldState, entries: Sequence[LedgerEntry]) -> list[str]:
    moved = {kind: [e.amount for e in entries if e.kind is kind] for kind in EntryKind}
    expected = {EntryKind.GRANT: [], EntryKind.HOLD: [hold.amount], EntryKind.CAPTURE: [],
                EntryKind.RELEASE: []}  # fmt: skip
    if hold.settled:
        captured = hold.captured if hold.captured is not None else -1
        if not 0 <= captured <= hold.amount:
            return [f"job {hold.job_id}: settled with capture {hold.captured} of {hold.amount}"]
        expected[EntryKind.CAPTURE] = [captured] if captured else []
        released = hold.amount - captured
        expected[EntryKind.RELEASE] = [released] if released else []
    elif hold.captured is not None:
        return [f"job {hold.job_id}: captured {hold.captured} before settling"]
    if moved != expected:
        return [f"job {hold.job_id}: moves {_fmt_moves(moved)}, expected {_fmt_moves(expected)}"]
    return []


def _sum_moves(entries: Sequence[LedgerEntry]) -> Balance:
    balance = ZERO
    for entry in entries:
        balance = apply_move(balance, entry.kind, entry.amount)
    return balance


def _fmt(balance: Balance) -> str:
    return f"available={balance.available} frozen={balance.frozen}"


def _fmt_moves(moves: dict[EntryKind, list[int]]) -> str:
    return ", ".join(f"{k.value}={v}" for k, v in moves.items() if v) or "none"
