"""RateLimiter contract on the in-process Redis and on a real server."""

from __future__ import annotations

import asyncio

import pytest
from redis.asyncio import Redis

from stargraph.broker import limits
from stargraph.broker.limits import RateLimiter
from stargraph.domain.errors import RateLimited


@pytest.fixture
def limiter(any_redis: Redis, redis_prefix: str) -> RateLimiter:
    return RateLimiter(any_redis, redis_prefix)


async def test_exactly_the_limit_is_allowed_then_it_refuses_with_a_retry_after(
    limiter: RateLimiter,
) -> None:
    for _ in range(5):
        await limiter.hit("submit:1", limit=5, window_s=60)

    with pytest.raises(RateLimited) as refused:
        await limiter.hit("submit:1", limit=5, window_s=60)

    assert refused.value.code == "RATE_LIMITED"
    assert refused.value.retry_after_s is not None
    assert 0 < refused.value.retry_after_s <= 60


async def test_keys_are_counted_apart(limiter: RateLimiter) -> None:
    await limiter.hit("login:user:ann", limit=1, window_s=60)

    await limiter.hit("login:user:bob", limit=1, window_s=60)
    await limiter.hit("login:addr:10.0.0.1", limit=1, window_s=60)
    with pytest.raises(RateLimited):
        await limiter.hit("login:user:ann", limit=1, window_s=60)


async def test_check_counts_nothing_and_refusals_are_not_counted(limiter: RateLimiter) -> None:
    for _ in range(10):
        await limiter.check("k", limit=2, window_s=60)
    await limiter.hit("k", limit=2, window_s=60)
    await limiter.hit("k", limit=2, window_s=60)
    with pytest.raises(RateLimited):
        await limiter.check("k", limit=2, window_s=60)

    await limiter.reset("k")

    await limiter.hit("k", limit=2, window_s=60)
    await limiter.hit("k", limit=2, window_s=60)


async def test_concurrent_hits_never_pass_the_limit(limiter: RateLimiter) -> None:
    async def attempt() -> bool:
        try:
            await limiter.hit("submit:9", limit=10, window_s=60)
        except RateLimited:
            return False
        return True

    outcomes = await asyncio.gather(*(attempt() for _ in range(40)))

    assert outcomes.count(True) == 10


async def test_the_window_slides_so_hits_are_allowed_again_after_retry_after(
    limiter: RateLimiter,
) -> None:
    for _ in range(3):
        await limiter.hit("w", limit=3, window_s=0.2)
    with pytest.raises(RateLimited) as refused:
        await limiter.hit("w", limit=3, window_s=0.2)
    assert refused.value.retry_after_s is not None

    await asyncio.sleep(refused.value.retry_after_s + 0.01)

    await limiter.hit("w", limit=3, window_s=0.2)


async def test_a_limit_needs_sensible_values(limiter: RateLimiter) -> None:
    with pytest.raises(ValueError):
        await limiter.hit("x", limit=0, window_s=1)


async def test_limits_count_on_after_redis_lost_its_scripts(
    limiter: RateLimiter, any_redis: Redis
) -> None:
    await limiter.hit("flush", 2, 60)
    await any_redis.script_flush()  # what a restart without persistence does
    await limiter.hit("flush", 2, 60)
    with pytest.raises(RateLimited):
        await limiter.hit("flush", 2, 60)


async def test_one_hit_sent_twice_counts_once(
    limiter: RateLimiter, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A pipeline resent after a lost connection runs the same hit again: it is neither
    counted twice nor refused by its own first count."""
    monkeypatch.setattr(limits, "unique_hex", lambda: "the-same-hit")
    await limiter.hit("submit:9", limit=1, window_s=60)
    await limiter.hit("submit:9", limit=1, window_s=60)  # the resend: allowed
    monkeypatch.undo()
    with pytest.raises(RateLimited):  # a new hit: the window holds one, the first
        await limiter.hit("submit:9", limit=1, window_s=60)
