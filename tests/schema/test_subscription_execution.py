"""A subscription's events are executed right whatever their type and order: the executor
collects each selection's sub-fields once per operation and must never serve one type's
selection to another, nor keep more per event as the subscription goes on."""

from __future__ import annotations

import dataclasses
import tracemalloc
from collections.abc import AsyncGenerator, AsyncIterator, Sequence
from datetime import UTC, datetime
from types import SimpleNamespace
from typing import Any

import pytest
from strawberry.schema.schema import StrawberryGraphQLCoreExecutionContext
from strawberry.types.execution import ExecutionResult

import stargraph.schema.execution as execution
import stargraph.schema.subscriptions as subscriptions
from stargraph.domain import events as ev
from stargraph.domain.jobs import JobStatus
from stargraph.domain.types import JobId, UserId
from stargraph.schema.build import build_schema
from stargraph.schema.context import SubscriptionGate

JOB = "b0003b0c-000b-4458-928f-80f74ae0b9c0"
AT = datetime(2026, 1, 1, tzinfo=UTC)
FOLLOW = """subscription($id: ID!, $withCursor: Boolean!) { jobEvents(jobId: $id) {
  kind: __typename status cursor @include(if: $withCursor)
  ... on JobQueued { place: position }
  ... on JobProgress { step maxSteps }
  ... Failure
} }
fragment Failure on JobFailed { error { code message } }"""


def _events() -> list[ev.JobEvent]:
    common: dict[str, Any] = {"job_id": JobId(JOB), "user_id": UserId(1), "at": AT}
    waiting = [ev.JobQueued(status=JobStatus.QUEUED, position=p, cursor=f"{p}-0", **common)
               for p in (3, 2, 1)]  # fmt: skip
    steps = [ev.JobProgress(status=JobStatus.RUNNING, step=s, max_steps=150, cursor=f"9-{s}",
                            **common) for s in range(1, 151)]  # fmt: skip
    failed = ev.JobFailed(status=JobStatus.FAILED, code="X", message="m", cursor="9-999", **common)
    return [*waiting, *steps, failed]


async def aenumerate(items: AsyncIterator[Any]) -> AsyncIterator[tuple[int, Any]]:
    n = 0
    async for item in items:
        yield n, item
        n += 1


def _expected(event: ev.JobEvent) -> dict[str, Any]:
    shown: dict[str, Any] = {"status": event.status.name, "cursor": event.cursor}
    match event:
        case ev.JobQueued(position=position):
            return {"kind": "JobQueued", **shown, "place": position}
        case ev.JobProgress(step=step, max_steps=most):
            return {"kind": "JobProgress", **shown, "step": step, "maxSteps": most}
        case ev.JobFailed(code=code, message=message):
            return {"kind": "JobFailed", **shown, "error": {"code": code, "message": message}}
    raise AssertionError(event)


async def _subscribe(
    monkeypatch: pytest.MonkeyPatch,
    query: str,
    events: Sequence[ev.JobEvent],
    variables: dict[str, Any],
) -> AsyncGenerator[ExecutionResult, None]:
    """Subscribe to `query` as user 1, with `events` as the job's stream."""

    async def stream(api: Any, principal: Any, job_id: JobId) -> AsyncIterator[ev.JobEvent]:
        for event in events:
            yield event

    monkeypatch.setattr(subscriptions, "job_stream", stream)
    principal = SimpleNamespace(user_id=UserId(1))
    context = SimpleNamespace(
        api=SimpleNamespace(subscriptions=SubscriptionGate(5)),
        require_user=lambda: principal,
        request_id="r",
    )
    return await build_schema().subscribe(query, variable_values=variables, context_value=context)


async def test_mixed_events_are_each_shaped_by_their_own_type(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    results = await _subscribe(monkeypatch, FOLLOW, _events(), {"id": JOB, "withCursor": True})

    expected = [_expected(e) for e in _events()]
    tracemalloc.start()
    try:
        held = []
        async for n, result in aenumerate(results):
            assert result.errors is None
            assert result.data == {"jobEvents": expected[n]}
            held.append(tracemalloc.get_traced_memory()[0])
    finally:
        tracemalloc.stop()

    assert len(held) == len(expected)
    # what the operation holds after 140 more events (the old memo kept ~1.5 KB each)
    assert held[-2] - held[10] < 32 * 1024


PLAIN = """subscription($id: ID!) { jobEvents(jobId: $id) {
  __typename jobId status ... on JobProgress { step maxSteps } } }"""


async def _run(
    monkeypatch: pytest.MonkeyPatch, query: str, events: Sequence[ev.JobEvent]
) -> list[ExecutionResult]:
    results = await _subscribe(monkeypatch, query, events, {"id": JOB})
    return [result async for result in results]


async def test_events_with_a_selection_of_plain_values_are_answered_by_its_plan(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    filled = 0
    original = execution._fill

    def counting(*args: Any) -> Any:
        nonlocal filled
        filled += 1
        return original(*args)

    monkeypatch.setattr(execution, "_fill", counting)
    ordinary = 0
    parent = StrawberryGraphQLCoreExecutionContext.build_per_event_executor

    def counting_ordinary(self: Any, payload: Any) -> Any:
        nonlocal ordinary
        ordinary += 1
        return parent(self, payload)

    monkeypatch.setattr(
        StrawberryGraphQLCoreExecutionContext, "build_per_event_executor", counting_ordinary
    )
    steps = [e for e in _events() if isinstance(e, ev.JobProgress)][:5]
    results = await _run(monkeypatch, PLAIN, steps)

    shown = [{"__typename": "JobProgress", "jobId": JOB, "status": "RUNNING", "step": e.step,
              "maxSteps": e.max_steps} for e in steps]  # fmt: skip
    assert [r.data for r in results] == [{"jobEvents": s} for s in shown]
    assert filled == len(steps)
    assert ordinary == 0  # no event needed graphql-core's per-event executor


async def test_a_value_the_plan_cannot_give_is_an_error_as_before(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    steps = [e for e in _events() if isinstance(e, ev.JobProgress)][:3]
    broken = dataclasses.replace(steps[1], job_id=None)  # type: ignore[arg-type]
    first, failed, last = await _run(monkeypatch, PLAIN, [steps[0], broken, steps[2]])

    assert first.data is not None and last.data is not None
    assert first.data["jobEvents"]["step"] == steps[0].step
    assert failed.data is None
    assert failed.errors is not None
    (error,) = failed.errors
    assert error.path == ["jobEvents", "jobId"]  # reported where the ordinary path puts it
    assert error.extensions is not None
    assert error.extensions["code"] == "INTERNAL_SERVER_ERROR"
    assert last.data["jobEvents"]["step"] == steps[2].step
