"""The points ledger: grant, hold, capture, release; every move idempotent and audited.

Rules (DESIGN.md invariants):
- `available` never goes below zero, also under concurrent holds.
- A job has exactly one hold; its settlement (capture part or all, release the rest) happens
  exactly once. Repeating a hold or a settlement is a no-op that returns the first result.
- Entries are append-only and record the balances after each move; they sum to the balances.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

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

    async def grant(self, user_id: UserId, amount: int, reason: str,
                    key: str | None = None) -> Balance:
        """Add (or, negative, remove) available points; `key` makes the grant idempotent."""
        ...

    async def hold(self, user_id: UserId, job_id: JobId, amount: int) -> Balance:
        """Freeze `amount` for the job; raises InsufficientPoints; a repeat is a no-op."""
        ...

    async def settle(self, job_id: JobId, capture: int) -> Settlement:
        """Capture `capture` (clamped to the hold) and release the rest, once per job."""
        ...

    async def entries(self, user_id: UserId, limit: int, before_id: int | None = None
                      ) -> list[LedgerEntry]:
        """Newest first."""
        ...

    async def audit(self, user_id: UserId | None = None) -> list[AuditFinding]:
        """Check every invariant for one user or all; an empty list means clean."""
        ...
