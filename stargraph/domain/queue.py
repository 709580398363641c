"""The dispatch order: priority band, then fair turns between users, then arrival.

The queue holds job ids only; SQL stays the source of truth and the queue can be rebuilt
from the QUEUED jobs at any time.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from stargraph.domain.types import BackendId, JobId, Priority, UserId


@dataclass(frozen=True, slots=True)
class QueuedJob:
    """What the queue needs to place a job."""

    job_id: JobId
    user_id: UserId
    priority: Priority
    front: bool = False  # an admin moved it ahead of everything


@dataclass(frozen=True, slots=True)
class Claim:
    """A job leased to a backend; the lease returns it to its old place if it expires."""

    job_id: JobId
    backend: BackendId
    token: str


class JobQueue(Protocol):
    async def enqueue(self, job: QueuedJob) -> int:
        """Add the job (no-op if present); returns its exact 1-based position."""
        ...

    async def position(self, job_id: JobId) -> int | None:
        """1 = next to be claimed; None when the job is not waiting."""
        ...

    async def positions(self, job_ids: list[JobId]) -> dict[JobId, int | None]: ...

    async def claim(self, backend: BackendId, lease_s: float) -> Claim | None:
        """Atomically lease the best waiting job to `backend`; None when the queue is empty."""
        ...

    async def ack(self, claim: Claim) -> bool:
        """The job reached a final owner (accepted by the engine or ended): drop the lease."""
        ...

    async def requeue(self, job_id: JobId) -> bool:
        """Put a leased or forgotten job back at its old place."""
        ...

    async def reprioritize(self, job_id: JobId, priority: Priority, to_front: bool = False
                           ) -> int | None:
        """Move a waiting job to another band (or the very front); returns its new position."""
        ...

    async def remove(self, job_id: JobId) -> bool: ...

    async def length(self) -> int: ...

    async def expire_leases(self) -> list[JobId]:
        """Return expired leases to their places (housekeeping); returns the ids put back."""
        ...

    async def rebuild(self, jobs: list[QueuedJob]) -> None:
        """Replace the whole queue with `jobs`, in the order given (oldest first)."""
        ...

    async def wait_for_work(self, timeout: float | None) -> bool:
        """Block until something was enqueued or requeued (or timeout); True when signalled."""
        ...
