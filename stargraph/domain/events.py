"""Domain events: small frozen values; transports only serialize them.

Every job event belongs to one user's stream. The bus assigns each delivered event a `cursor`
(opaque, increasing per user) so a client that reconnects can resume after the last one it saw.
"""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import datetime
from typing import Any, ClassVar, Protocol

from stargraph.domain.errors import StarGraphError
from stargraph.domain.jobs import Job, JobStatus
from stargraph.domain.types import ImageId, JobId, UserId


@dataclass(frozen=True, slots=True, kw_only=True)
class JobEvent:
    kind: ClassVar[str] = "job"
    job_id: JobId
    user_id: UserId
    at: datetime
    status: JobStatus
    cursor: str = ""  # filled in by the bus on delivery

    @property
    def is_terminal(self) -> bool:
        return False


@dataclass(frozen=True, slots=True, kw_only=True)
class JobQueued(JobEvent):
    kind: ClassVar[str] = "queued"
    position: int | None


@dataclass(frozen=True, slots=True, kw_only=True)
class JobDispatched(JobEvent):
    kind: ClassVar[str] = "dispatched"


@dataclass(frozen=True, slots=True, kw_only=True)
class JobStarted(JobEvent):
    kind: ClassVar[str] = "started"


@dataclass(frozen=True, slots=True, kw_only=True)
class JobProgress(JobEvent):
    kind: ClassVar[str] = "progress"
    step: int
    max_steps: int


@dataclass(frozen=True, slots=True, kw_only=True)
class JobPreview(JobEvent):
    kind: ClassVar[str] = "preview"
    data_url: str  # data:image/jpeg;base64,...


@dataclass(frozen=True, slots=True, kw_only=True)
class JobSucceeded(JobEvent):
    kind: ClassVar[str] = "succeeded"
    image_ids: tuple[ImageId, ...]

    @property
    def is_terminal(self) -> bool:
        return True


@dataclass(frozen=True, slots=True, kw_only=True)
class JobFailed(JobEvent):
    kind: ClassVar[str] = "failed"
    code: str
    message: str

    @property
    def is_terminal(self) -> bool:
        return True


@dataclass(frozen=True, slots=True, kw_only=True)
class JobCancelled(JobEvent):
    kind: ClassVar[str] = "cancelled"

    @property
    def is_terminal(self) -> bool:
        return True


@dataclass(frozen=True, slots=True, kw_only=True)
class QueueMoved:
    """Waiting positions may have changed (coalesced; never stored, never replayed).

    `cursor` is the follower's last delivered cursor, so an event built from this tick (a new
    position) can carry a cursor that resumes correctly.
    """

    kind: ClassVar[str] = "queue_moved"
    at: datetime
    cursor: str


class SubscriberLagged(StarGraphError):
    """A follower fell too far behind and was closed; resume with the last cursor seen."""

    code = "LAGGED"

    def __init__(self, message: str, cursor: str) -> None:
        super().__init__(message)
        self.cursor = cursor


class CursorExpired(StarGraphError):
    """The events after a resume cursor are no longer all kept (each user's stream is capped
    and expires when idle): reload the jobs from queries, then follow without a cursor."""

    code = "CURSOR_EXPIRED"


EVENT_TYPES: dict[str, type[JobEvent]] = {
    cls.kind: cls
    for cls in (
        JobQueued,
        JobDispatched,
        JobStarted,
        JobProgress,
        JobPreview,
        JobSucceeded,
        JobFailed,
        JobCancelled,
    )
}


def event_to_dict(event: JobEvent) -> dict[str, Any]:
    """A JSON-ready dict of the event (without its cursor)."""
    data = {f.name: getattr(event, f.name) for f in dataclasses.fields(event) if f.name != "cursor"}
    data["kind"] = event.kind
    data["at"] = event.at.isoformat()
    data["status"] = event.status.value
    if isinstance(event, JobSucceeded):
        data["image_ids"] = list(event.image_ids)
    return data


def event_from_dict(data: dict[str, Any], cursor: str = "") -> JobEvent:
    fields = dict(data)
    cls = EVENT_TYPES[fields.pop("kind")]
    fields["at"] = datetime.fromisoformat(fields["at"])
    fields["status"] = JobStatus(fields["status"])
    fields["job_id"] = JobId(fields["job_id"])
    fields["user_id"] = UserId(int(fields["user_id"]))
    if cls is JobSucceeded:
        fields["image_ids"] = tuple(ImageId(i) for i in fields["image_ids"])
    return cls(cursor=cursor, **fields)


class EventBus(Protocol):
    """Publishes job events to every process and lets any process follow them.

    Cursors are per user and increase in delivery order. Followers raise `SubscriberLagged`
    when they fall too far behind, and `BadUserInput` (field "after") for a malformed cursor.
    """

    async def publish(self, event: JobEvent, *, queue_moved: bool = False) -> str:
        """Append the event to its user's stream and fan it out; returns its cursor. With
        `queue_moved`, also `queue_moved()`, in the same step, after the event."""
        ...

    async def queue_moved(self) -> None:
        """Tell followers of waiting jobs that positions may have changed (coalesced)."""
        ...

    def follow_user(self, user_id: UserId, after: str | None = None) -> AsyncIterator[JobEvent]:
        """Events of one user's jobs: first those after `after` (replay), then live ones."""
        ...

    def follow_user_and_queue(
        self, user_id: UserId, after: str | None = None
    ) -> AsyncIterator[JobEvent | QueueMoved]:
        """Like `follow_user`, interleaved with coalesced `QueueMoved` ticks."""
        ...

    def follow_job(
        self, user_id: UserId, job_id: JobId, after: str | None = None
    ) -> AsyncIterator[JobEvent | QueueMoved]:
        """One job's events (and queue ticks) of `follow_user_and_queue`; ends after its
        terminal event."""
        ...

    async def last_cursor(self, user_id: UserId) -> str:
        """The cursor of the user's newest event: take it before reading a snapshot, then
        follow with `after=` it, so nothing between the snapshot and the live events is lost."""
        ...

    def queue_ticks(self) -> AsyncIterator[None]:
        """Yields once per (coalesced) queue movement."""
        ...


def job_queued(job: Job, at: datetime, position: int | None) -> JobQueued:
    """The event that tells the owner the job waits, and where."""
    return JobQueued(
        job_id=job.id, user_id=job.user_id, at=at, status=JobStatus.QUEUED, position=position
    )
