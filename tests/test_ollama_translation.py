"""Prompt translation end to end: PromptTranslator → OllamaTranslator → fake Ollama, cached
in Redis, under both fallback policies and every failure the fake can play."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import pytest
from redis.asyncio import Redis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff

from stargraph.broker.cache import RedisTranslationCache
from stargraph.domain.errors import TranslationUnavailable
from stargraph.domain.jobs import TranslationState
from stargraph.domain.translation import Fallback, PromptTranslator
from stargraph.ollama import OllamaTranslator
from tests.fakes.ollama import FakeOllama, running_fake_ollama

MODEL = "qwen2.5:0.5b"
CHINESE = "1girl，长发，（微笑：1.2），<lora:汉服风格:0.8>，夕阳下的海边"
ENGLISH = "1girl, long hair, (smile:1.2), <lora:汉服风格:0.8>, seaside at sunset"


@asynccontextmanager
async def translating(
    mode: str,
    fallback: Fallback = "error",
    redis: Redis | None = None,
    prefix: str = "t",
    **fake_options: object,
) -> AsyncIterator[tuple[PromptTranslator, FakeOllama]]:
    async with running_fake_ollama(mode, **fake_options) as fake:
        model = OllamaTranslator(fake.url, MODEL, timeout_s=0.5 if mode == "slow" else 10)
        cache = RedisTranslationCache(redis, prefix, ttl_s=60) if redis is not None else None
        try:
            yield PromptTranslator(model, cache, fallback), fake
        finally:
            await model.aclose()


@pytest.mark.parametrize("mode", ["normal", "chatty"])
async def test_chinese_prompts_come_back_english_with_syntax_intact(mode: str) -> None:
    async with translating(mode) as (translator, fake):
        outcome = await translator.translate(CHINESE)
    assert outcome.state is TranslationState.TRANSLATED
    assert outcome.text == ENGLISH
    assert fake.asked_texts() == ["长发", "微笑", "夕阳下的海边"]  # never the syntax


async def test_english_prompts_never_reach_ollama() -> None:
    async with translating("normal") as (translator, fake):
        for prompt in [
            "a cat, (dog:1.2), <lora:x:0.8>",
            "masterpiece，best quality",
            "<lora:猫:1>",
        ]:
            outcome = await translator.translate(prompt)
            assert outcome.state is TranslationState.NOT_NEEDED
    assert fake.requests == []


async def test_garbage_is_retried_once_then_refused() -> None:
    async with translating("garbage") as (translator, fake):
        with pytest.raises(TranslationUnavailable):
            await translator.translate("一只猫")
    first, retry = fake.chat_bodies()
    assert first["messages"][-1]["content"] == "<text>一只猫</text>"
    assert retry["messages"][-1]["content"].startswith("<text>一只猫</text>\n")


async def test_one_bad_answer_then_a_good_one_translates() -> None:
    async with translating("normal") as (translator, fake):
        fake.next_modes = ["garbage"]
        outcome = await translator.translate("一只猫")
    assert (outcome.state, outcome.text) == (TranslationState.TRANSLATED, "a cat")
    assert len(fake.chat_bodies()) == 2


FAILURES = ["down", "slow", "garbage", "error", "busy", "midstream"]


@pytest.mark.parametrize("mode", FAILURES)
async def test_failures_refuse_the_submission_with_the_error_policy(mode: str) -> None:
    async with translating(mode, "error") as (translator, _):
        with pytest.raises(TranslationUnavailable) as caught:
            await translator.translate(CHINESE)
    assert caught.value.code == "TRANSLATION_UNAVAILABLE"


@pytest.mark.parametrize("mode", FAILURES)
async def test_failures_pass_the_original_through_with_the_passthrough_policy(mode: str) -> None:
    async with translating(mode, "passthrough") as (translator, _):
        outcome = await translator.translate(CHINESE)
    assert outcome.state is TranslationState.PASSTHROUGH
    assert outcome.text == "1girl, 长发, (微笑:1.2), <lora:汉服风格:0.8>, 夕阳下的海边"
    assert outcome.translated is None
    assert translator.stats.passthroughs == 1


async def test_answers_are_cached_in_redis(redis: Redis, redis_prefix: str) -> None:
    async with translating("normal", redis=redis, prefix=redis_prefix) as (translator, fake):
        first = await translator.translate(CHINESE)
        asked = len(fake.requests)
        second = await translator.translate("夕阳下的海边，（长发：1.3）")
    assert first.text == ENGLISH
    assert second.text == "seaside at sunset, (long hair:1.3)"
    assert len(fake.requests) == asked == 3  # the second prompt was served from the cache
    assert translator.stats.cache_hits == 2
    keys = await redis.keys(f"{redis_prefix}:tr:*")
    assert len(keys) == 3
    assert 0 < await redis.ttl(keys[0]) <= 60
    await redis.delete(*keys)


async def test_the_cache_survives_ollama_going_down(redis: Redis, redis_prefix: str) -> None:
    async with translating("normal", redis=redis, prefix=redis_prefix) as (translator, _):
        await translator.translate("长发")
    async with translating("down", "error", redis=redis, prefix=redis_prefix) as (translator, _):
        outcome = await translator.translate("（长发：1.2）")
    assert outcome.text == "(long hair:1.2)"
    await redis.delete(*await redis.keys(f"{redis_prefix}:tr:*"))


async def test_cached_answers_are_kept_per_model(redis: Redis, redis_prefix: str) -> None:
    cache = RedisTranslationCache(redis, redis_prefix, ttl_s=60)
    await cache.put("qwen2.5:0.5b|1", "长发", "long hair")
    assert await cache.get("qwen2.5:0.5b|1", "长发") == "long hair"
    assert await cache.get("qwen2.5:3b|1", "长发") is None
    assert await cache.get("qwen2.5:0.5b|1", "短发") is None
    await cache.put("qwen2.5:0.5b|1", "表情", "😀 smile")
    assert await cache.get("qwen2.5:0.5b|1", "表情") == "😀 smile"
    await redis.delete(*await redis.keys(f"{redis_prefix}:tr:*"))


async def test_an_unreachable_cache_is_a_miss_not_a_failure() -> None:
    broken = Redis(host="127.0.0.1", port=1, retry=Retry(NoBackoff(), 0))
    cache = RedisTranslationCache(broken, "t", ttl_s=60)
    try:
        async with running_fake_ollama() as fake:
            model = OllamaTranslator(fake.url, MODEL)
            outcome = await PromptTranslator(model, cache).translate("猫")
            await model.aclose()
    finally:
        await broken.aclose()
    assert outcome.text == "cat"
