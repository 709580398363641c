"""The Batcher: concurrent calls share batches, and each caller gets its own answer."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import pytest

from stargraph.batching import Batcher


class Recorder:
    """A batch function that records each batch and holds it until released."""

    def __init__(self) -> None:
        self.batches: list[list[int]] = []
        self.release = asyncio.Event()
        self.release.set()

    async def __call__(self, items: list[int]) -> Sequence[int | BaseException]:
        self.batches.append(list(items))
        await self.release.wait()
        return [ValueError(f"odd {i}") if i % 2 else i * 10 for i in items]


async def test_a_lone_call_goes_at_once() -> None:
    record = Recorder()
    batcher: Batcher[int, int] = Batcher(record)
    assert await batcher(4) == 40
    assert record.batches == [[4]]


async def test_calls_made_while_a_batch_is_in_flight_go_together_in_order() -> None:
    record = Recorder()
    record.release.clear()
    batcher: Batcher[int, int] = Batcher(record)
    first = asyncio.ensure_future(batcher(0))
    await asyncio.sleep(0)  # the first batch is under way, holding
    rest = [asyncio.ensure_future(batcher(i)) for i in (2, 4, 6)]
    await asyncio.sleep(0)
    record.release.set()
    assert await asyncio.gather(first, *rest) == [0, 20, 40, 60]
    assert record.batches == [[0], [2, 4, 6]]


async def test_each_caller_gets_its_own_error_and_the_others_their_answers() -> None:
    batcher: Batcher[int, int] = Batcher(Recorder())
    results = await asyncio.gather(*(batcher(i) for i in range(4)), return_exceptions=True)
    assert results[0] == 0 and results[2] == 20
    assert [str(r) for r in results[1::2]] == ["odd 1", "odd 3"]


async def test_a_failing_batch_fails_every_call_in_it_and_the_next_batch_runs() -> None:
    calls: list[list[int]] = []

    async def flaky(items: list[int]) -> Sequence[int]:
        calls.append(items)
        if len(calls) == 1:
            raise ConnectionError("database away")
        return items

    batcher: Batcher[int, int] = Batcher(flaky)
    failed = await asyncio.gather(batcher(1), batcher(2), return_exceptions=True)
    assert all(isinstance(r, ConnectionError) for r in failed)
    assert await batcher(3) == 3


async def test_batches_hold_at_most_max_batch_items() -> None:
    record = Recorder()
    batcher: Batcher[int, int] = Batcher(record, max_batch=3)
    await asyncio.gather(*(batcher(2 * i) for i in range(7)))
    assert [len(b) for b in record.batches] == [3, 3, 1]
    assert [i for b in record.batches for i in b] == [2 * i for i in range(7)]


async def test_a_cancelled_caller_leaves_the_batch_to_the_others() -> None:
    record = Recorder()
    record.release.clear()
    batcher: Batcher[int, int] = Batcher(record)
    gone, stays = asyncio.ensure_future(batcher(2)), asyncio.ensure_future(batcher(4))
    await asyncio.sleep(0)
    gone.cancel()
    record.release.set()
    assert await stays == 40
    with pytest.raises(asyncio.CancelledError):
        await gone
    assert record.batches == [[2, 4]]  # its item had been handed over: it still ran


async def test_a_lingering_call_waits_for_company() -> None:
    record = Recorder()
    batcher: Batcher[int, int] = Batcher(record, linger_s=0.05)
    lingering = asyncio.ensure_future(batcher(2, linger=True))
    await asyncio.sleep(0.01)
    assert record.batches == []  # still waiting for company
    assert await batcher(4) == 40  # a call that may not linger sends both at once
    assert await lingering == 20
    assert record.batches == [[2, 4]]


def test_a_batcher_works_in_a_new_event_loop() -> None:
    batcher: Batcher[int, int] = Batcher(Recorder())
    assert asyncio.run(batcher(2)) == 20
    assert asyncio.run(batcher(4)) == 40
