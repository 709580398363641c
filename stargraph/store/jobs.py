"""Tortoise implementation of the domain's JobStore: compare-and-set status changes,
and settlement in the same transaction as the terminal status.

A job's hold is taken with its row and settled with its terminal status, so a user's open
holds are their unfinished jobs: the cap on unfinished jobs is the ledger's cap on open
holds, which holds across API processes."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import replace
from datetime import datetime

from tortoise.exceptions import IntegrityError, OperationalError
from tortoise.transactions import in_transaction

from stargraph.batching import Batcher
from stargraph.domain.errors import Conflict
from stargraph.domain.jobs import (
    IN_ENGINE,
    TERMINAL,
    Job,
    JobError,
    JobPage,
    JobStatus,
    NewImage,
    Placement,
    refuse_when_full,
    sources_of,
    transition,
)
from stargraph.domain.queue import QueuedJob
from stargraph.domain.types import BackendId, JobId, Priority, UserId, new_image_id
from stargraph.store import sql
from stargraph.store.convert import (
    NEW_JOB_COLUMNS,
    aware,
    job_from_row,
    new_job_row,
    older_than,
)
from stargraph.store.db import is_deadlock
from stargraph.store.ledger import JobRowValues, NewJobHold, TortoiseLedger
from stargraph.store.models import ImageRow, JobRow

_MAX_ERROR_MESSAGE = 2000
_PROGRESS_BATCH = 500  # jobs per statement: 3 parameters each, within every database's limit
_IN_ENGINE_SQL = ", ".join(f"'{s.value}'" for s in sorted(IN_ENGINE))
_DEADLOCK_ATTEMPTS = 5
_CREATE_BATCH = 64  # jobs per batch of creations: keeps each write transaction short
_MARK_DISPATCHED = sql.Statement(
    "UPDATE jobs SET status = ?, backend = ?, dispatched_at = ?, attempts = attempts + 1"
    " WHERE id = ? AND status = ? AND attempts = ?"
)
_UNDO_DISPATCH = sql.Statement(
    "UPDATE jobs SET status = ?, backend = NULL, dispatched_at = NULL, attempts = attempts - 1"
    " WHERE id = ? AND status = ? AND attempts = ?"
)
_UNFINISHED_SQL = ", ".join(f"'{s.value}'" for s in sorted(set(JobStatus) - TERMINAL))


_COUNT_UNFINISHED = sql.Statement(
    f"SELECT COUNT(*) AS n FROM jobs WHERE user_id = ? AND status IN ({_UNFINISHED_SQL})"
)
_REFUSED_ATTEMPTS = 3  # a refused hold whose reason is gone by the time it is asked runs again


def _job_row(job: Job) -> JobRowValues:
    return ("jobs", NEW_JOB_COLUMNS, new_job_row(job))


_Creation = tuple[Job, int | None]  # the job, and the user's cap on unfinished jobs


class TortoiseJobStore:
    """Submissions made at once share transactions: `create_queued` calls that arrive while
    one is in flight go together in the next (`Batcher`), unless the caller holds a
    transaction (they then join it, one by one)."""

    def __init__(self, ledger: TortoiseLedger) -> None:
        self._ledger = ledger
        self._creations: Batcher[_Creation, tuple[Job, bool]] = Batcher(
            self._create_batch, max_batch=_CREATE_BATCH, name="creations"
        )

    async def create_queued(self, job: Job, max_unfinished: int | None = None) -> tuple[Job, bool]:
        if sql.in_transaction():
            return await self._create_one(job, max_unfinished)
        return await self._creations((job, max_unfinished))

    async def _create_one(self, job: Job, max_unfinished: int | None) -> tuple[Job, bool]:
        hold = NewJobHold(job.user_id, job.id, job.cost, _job_row(job))
        for _ in range(_REFUSED_ATTEMPTS):
            try:
                if (await self._ledger.hold_new_jobs([hold], max_unfinished))[0]:
                    return job, True
            except IntegrityError:
                existing = await self._first_with_key(job)
                if existing is None:
                    raise
                return existing, False
            await self._explain_refusal(job, max_unfinished)
        raise Conflict("the hold was refused, yet its reasons were gone each time; try again")

    async def _explain_refusal(self, job: Job, max_unfinished: int | None) -> None:
        """Raise why the hold was refused (the cap, no account, not enough points); return
        when neither holds any more (a job finished meanwhile)."""
        if max_unfinished is not None:
            await refuse_when_full(self, job.user_id, max_unfinished)
        await self._ledger.refuse_hold(job.user_id, job.cost)

    async def _first_with_key(self, job: Job) -> Job | None:
        """After a clash: the job created first with the same idempotency key, if any."""
        if job.idempotency_key is None:
            return None
        return await self.get_by_idempotency_key(job.user_id, job.idempotency_key)

    async def _create_batch(
        self, creations: list[_Creation]
    ) -> list[tuple[Job, bool] | BaseException]:
        """`create_queued` for many jobs: those of distinct users and the same cap in one
        transaction (a user's next job waits for the next wave, after the freeze of the one
        before). A refused hold, or every job of a wave with a clash or chosen as a deadlock
        victim, runs again on its own, which gives each job its own answer or error.
        Accounts are frozen in user id order, so that two processes' waves take their row
        locks in one order."""
        results: list[tuple[Job, bool] | BaseException | None] = [None] * len(creations)
        waiting = list(range(len(creations)))
        while waiting:
            cap = creations[waiting[0]][1]
            wave: dict[UserId, int] = {}
            for index in waiting:
                job, job_cap = creations[index]
                if job_cap == cap:
                    wave.setdefault(job.user_id, index)
            members = [wave[user_id] for user_id in sorted(wave)]
            taken_now = set(members)
            waiting = [index for index in waiting if index not in taken_now]
            jobs = [creations[i][0] for i in members]
            holds = [NewJobHold(j.user_id, j.id, j.cost, _job_row(j)) for j in jobs]
            try:
                taken = await self._ledger.hold_new_jobs(holds, cap)
            except Exception as exc:  # the wave wrote nothing; earlier waves keep their answers
                if not (isinstance(exc, IntegrityError) or is_deadlock(exc)):
                    for index in members:
                        results[index] = exc
                    continue
                taken = [False] * len(members)
            for index, job, ok in zip(members, jobs, taken, strict=True):
                results[index] = (job, True) if ok else await self._alone(job, cap)
        return [r for r in results if r is not None]

    async def _alone(
        self, job: Job, max_unfinished: int | None
    ) -> tuple[Job, bool] | BaseException:
        try:
            return await self._create_one(job, max_unfinished)
        except Exception as exc:
            return exc

    async def get(self, job_id: JobId) -> Job | None:
        row = await JobRow.get_or_none(id=job_id)
        return job_from_row(row) if row else None

    async def get_by_idempotency_key(self, user_id: UserId, key: str) -> Job | None:
        row = await JobRow.get_or_none(user_id=user_id, idempotency_key=key)
        return job_from_row(row) if row else None

    async def count_unfinished(self, user_id: UserId) -> int:
        """The user's jobs that are not terminal (what `max_unfinished` caps)."""
        return int((await sql.fetch(_COUNT_UNFINISHED, user_id))[0]["n"])

    async def page_for_user(
        self,
        user_id: UserId | None,
        statuses: frozenset[JobStatus] | None,
        limit: int,
        after: JobId | None,
    ) -> JobPage:
        query = JobRow.all()
        if user_id is not None:
            query = query.filter(user_id=user_id)
        if statuses:
            query = query.filter(status__in=[s.value for s in statuses])
        if after is not None:
            anchor = await JobRow.get_or_none(id=after).only("id", "created_at")
            if anchor is not None:
                query = query.filter(older_than(anchor.created_at, anchor.id))
        rows = await query.order_by("-created_at", "-id").limit(limit + 1)
        return JobPage([job_from_row(r) for r in rows[:limit]], has_more=len(rows) > limit)

    async def queued(self) -> list[QueuedJob]:
        rows = (
            await JobRow.filter(status=JobStatus.QUEUED.value)
            .order_by("created_at", "id")
            .values_list("id", "user_id", "priority", "front")
        )
        return [QueuedJob(JobId(i), UserId(u), Priority(p), bool(f)) for i, u, p, f in rows]

    async def count_queued(self) -> int:
        return await JobRow.filter(status=JobStatus.QUEUED.value).count()

    async def in_engine(self, backend: BackendId | None = None) -> list[Job]:
        query = JobRow.filter(status__in=[s.value for s in IN_ENGINE])
        if backend is not None:
            query = query.filter(backend=backend)
        return [job_from_row(r) for r in await query.order_by("created_at")]

    async def placements(self) -> dict[JobId, Placement]:
        rows = await JobRow.filter(status__in=[s.value for s in IN_ENGINE]).values_list(
            "id", "backend", "dispatched_at", "started_at"
        )
        return {
            JobId(job_id): Placement(BackendId(backend), aware(dispatched), aware(started))
            for job_id, backend, dispatched, started in rows
        }

    async def mark_dispatched(self, job: Job, backend: BackendId, at: datetime) -> Job | None:
        changed = await _compare_and_set(
            lambda: sql.execute(
                _MARK_DISPATCHED,
                *(JobStatus.DISPATCHED.value, backend, at),
                *(job.id, JobStatus.QUEUED.value, job.attempts),
            )
        )
        if changed != 1:
            return None
        dispatched = transition(job, JobStatus.DISPATCHED, at)
        return replace(dispatched, backend=backend, attempts=job.attempts + 1)

    async def undo_dispatch(self, job: Job) -> Job | None:
        changed = await _compare_and_set(
            lambda: sql.execute(
                _UNDO_DISPATCH,
                JobStatus.QUEUED.value,
                *(job.id, JobStatus.DISPATCHED.value, job.attempts),
            )
        )
        if changed != 1:
            return None
        return replace(
            job,
            status=JobStatus.QUEUED,
            backend=None,
            dispatched_at=None,
            attempts=job.attempts - 1,
        )

    async def mark_running(self, job_id: JobId, at: datetime) -> Job | None:
        return await self._move(job_id, JobStatus.RUNNING, started_at=at)

    async def back_to_queue(self, job_id: JobId) -> Job | None:
        return await self._move(
            job_id,
            JobStatus.QUEUED,
            backend=None,
            dispatched_at=None,
            started_at=None,
            progress_step=None,
            progress_max=None,
        )

    async def record_progress(self, job_id: JobId, step: int, max_steps: int) -> None:
        await self.record_progress_many({job_id: (step, max_steps)})

    async def record_progress_many(self, progress: Mapping[JobId, tuple[int, int]]) -> None:
        """`record_progress` for many jobs (job id → step, max steps), a statement for up to
        `_PROGRESS_BATCH` jobs. Built as text: pypika takes longer to build a CASE of a
        thousand branches than the database takes to run it."""
        items = list(progress.items())
        for start in range(0, len(items), _PROGRESS_BATCH):
            batch = items[start : start + _PROGRESS_BATCH]
            ids = [job_id for job_id, _ in batch]
            steps = " ".join(f"WHEN ? THEN {int(step)}" for _, (step, _) in batch)
            maxes = " ".join(f"WHEN ? THEN {int(most)}" for _, (_, most) in batch)
            statement = sql.Statement(
                f"UPDATE jobs SET progress_step = CASE id {steps} END, "
                f"progress_max = CASE id {maxes} END "
                f"WHERE id IN ({', '.join('?' * len(ids))}) AND status IN ({_IN_ENGINE_SQL})"
            )
            await sql.execute(statement, *ids, *ids, *ids)

    async def set_priority(self, job_id: JobId, priority: Priority, front: bool) -> Job | None:
        changed = await JobRow.filter(id=job_id, status=JobStatus.QUEUED.value).update(
            priority=int(priority), front=front
        )
        # MariaDB reports 0 changed rows when the values were already equal: re-read.
        job = await self.get(job_id)
        if job is None or job.status is not JobStatus.QUEUED:
            return None
        return job if changed or (job.params.priority, job.front) == (priority, front) else None

    async def succeed(
        self, job_id: JobId, images: list[NewImage], price_per_image: int, at: datetime
    ) -> Job | None:
        async with in_transaction():
            if not await self._claim_end(job_id, JobStatus.SUCCEEDED, at, None):
                return None
            row = await JobRow.get(id=job_id)
            await ImageRow.bulk_create(
                [
                    ImageRow(
                        id=new_image_id(),
                        job_id=job_id,
                        user_id=row.user_id,  # type: ignore[attr-defined]
                        index=i.index,
                        path=i.path,
                        width=i.width,
                        height=i.height,
                        seed=i.seed,
                        created_at=at,
                    )
                    for i in images
                ]
            )
            settlement = await self._ledger.settle(job_id, price_per_image * len(images))
            await JobRow.filter(id=job_id).update(charged=settlement.captured)
        return await self.get(job_id)

    async def finish_unpaid(
        self,
        job_id: JobId,
        to: JobStatus,
        error: JobError | None,
        at: datetime,
        only_from: frozenset[JobStatus] | None = None,
    ) -> Job | None:
        if to not in (JobStatus.FAILED, JobStatus.CANCELLED):
            raise ValueError(f"finish_unpaid cannot end a job as {to.value}")
        fields: dict[str, object] = {}
        if error is not None:
            fields = dict(error_code=error.code, error_message=error.message[:_MAX_ERROR_MESSAGE])
        async with in_transaction():
            if not await self._claim_end(job_id, to, at, only_from, **fields):
                return None
            await self._ledger.settle(job_id, 0)
            await JobRow.filter(id=job_id).update(charged=0)
        return await self.get(job_id)

    async def _claim_end(
        self,
        job_id: JobId,
        to: JobStatus,
        at: datetime,
        only_from: frozenset[JobStatus] | None,
        **fields: object,
    ) -> bool:
        """The compare-and-set that decides which caller ends the job."""
        sources = sources_of(to) if only_from is None else sources_of(to) & only_from
        changed = await JobRow.filter(id=job_id, status__in=[s.value for s in sources]).update(
            status=to.value, finished_at=at, **fields
        )
        return changed == 1

    async def _move(self, job_id: JobId, to: JobStatus, **fields: object) -> Job | None:
        sources = [s.value for s in sources_of(to)]
        changed = await _compare_and_set(
            lambda: JobRow.filter(id=job_id, status__in=sources).update(status=to.value, **fields)
        )
        return await self.get(job_id) if changed == 1 else None


async def _compare_and_set(update: Callable[[], Awaitable[int]]) -> int:
    """Run a one-statement compare-and-set outside any transaction. When connections race for
    one row, MariaDB may pick the statement as a deadlock victim; InnoDB has rolled it back
    whole, so it is run again (the loser then finds the row changed and matches nothing)."""
    for attempt in range(1, _DEADLOCK_ATTEMPTS + 1):
        try:
            return await update()
        except OperationalError as exc:
            if attempt == _DEADLOCK_ATTEMPTS or not is_deadlock(exc):
                raise
    raise AssertionError("unreachable")
