"""Who may move a waiting job: owners lower it or raise it back to NORMAL; admins anything."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime

import pytest

from stargraph.domain.control import check_new_priority
from stargraph.domain.errors import Forbidden
from stargraph.domain.jobs import Job, JobParams, JobStatus, TranslationState
from stargraph.domain.types import JobId, Principal, Priority, Role, UserId

OWNER = Principal(UserId(1), "owner", Role.USER)
ADMIN = Principal(UserId(2), "admin", Role.ADMIN)


def _job(priority: Priority) -> Job:
    params = JobParams(
        prompt="a cat",
        negative_prompt="",
        count=1,
        width=512,
        height=512,
        steps=20,
        cfg=8.0,
        sampler="euler",
        scheduler="normal",
        model="m.safetensors",
        seed=1,
        workflow="t2i",
        priority=priority,
    )
    return Job(
        id=JobId("00000000-0000-4000-8000-000000000001"),
        user_id=OWNER.user_id,
        status=JobStatus.QUEUED,
        params=params,
        positive_prompt="a cat",
        effective_negative_prompt="",
        translated_prompt=None,
        translation=TranslationState.NOT_NEEDED,
        cost=10,
        created_at=datetime.now(UTC),
    )


@pytest.mark.parametrize(
    ("current", "wanted", "allowed"),
    [
        (Priority.NORMAL, Priority.LOW, True),
        (Priority.LOW, Priority.NORMAL, True),
        (Priority.NORMAL, Priority.NORMAL, True),
        (Priority.NORMAL, Priority.HIGH, False),
        (Priority.LOW, Priority.URGENT, False),
        (Priority.HIGH, Priority.LOW, True),
    ],
)
def test_owner_may_lower_or_return_to_normal(
    current: Priority, wanted: Priority, allowed: bool
) -> None:
    job = _job(current)
    if allowed:
        check_new_priority(OWNER, job, wanted, to_front=False)
    else:
        with pytest.raises(Forbidden):
            check_new_priority(OWNER, job, wanted, to_front=False)


def test_only_admins_move_a_job_to_the_front() -> None:
    job = _job(Priority.NORMAL)
    with pytest.raises(Forbidden):
        check_new_priority(OWNER, job, Priority.NORMAL, to_front=True)
    check_new_priority(ADMIN, job, Priority.URGENT, to_front=True)
    check_new_priority(ADMIN, replace(job, user_id=UserId(99)), Priority.HIGH, to_front=False)
