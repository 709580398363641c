"""OllamaTranslator against the fake Ollama, and the fake's own faithfulness to the real API."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys

import httpx
import pytest

from stargraph.domain.translation import TranslatorUnavailable
from stargraph.http_client import HttpClient
from stargraph.ollama import ANSWER_FORMAT, OllamaTranslator, extract_answer
from stargraph.settings import PROJECT_ROOT
from tests.e2e.harness import free_port
from tests.fakes.ollama import running_fake_ollama

MODEL = "qwen2.5:0.5b"


async def _translate(url: str, text: str = "一只可爱的猫", **kwargs: object) -> str:
    translator = OllamaTranslator(url, MODEL, **kwargs)  # type: ignore[arg-type]
    try:
        return await translator.translate(text)
    finally:
        await translator.aclose()


async def test_the_request_follows_ollama_practice() -> None:
    async with running_fake_ollama() as fake:
        assert await _translate(fake.url, "长发少女") == "long-haired girl"
    (body,) = fake.chat_bodies()
    assert body["model"] == MODEL
    assert body["stream"] is False
    assert body["options"]["temperature"] == 0
    assert 0 < body["options"]["num_predict"] <= 1024
    assert "seed" in body["options"]
    assert "temperature" not in body  # settings only inside options
    assert body["format"] == ANSWER_FORMAT
    system, *shots, question = body["messages"]
    assert system["role"] == "system" and "translate" in system["content"]
    assert [m["role"] for m in shots] == ["user", "assistant"] * (len(shots) // 2)
    assert question == {"role": "user", "content": "<text>长发少女</text>"}


async def test_the_strict_retry_restates_the_task_after_the_text() -> None:
    async with running_fake_ollama() as fake:
        translator = OllamaTranslator(fake.url, MODEL)
        await translator.translate("猫", strict=True)
        await translator.aclose()
    question = fake.chat_bodies()[0]["messages"][-1]["content"]
    assert question.startswith("<text>猫</text>\n") and "English" in question


async def test_chatty_and_garbage_answers_come_back_raw_for_the_domain_to_judge() -> None:
    async with running_fake_ollama("chatty") as fake:
        assert await _translate(fake.url, "猫") == 'Sure! Here is the translation: "cat"'
    async with running_fake_ollama("garbage") as fake:
        assert await _translate(fake.url, "猫") == "猫"


@pytest.mark.parametrize(
    ("mode", "status", "words"),
    [
        ("error", 500, "llama-server"),
        ("busy", 503, "server busy"),
        ("midstream", 500, "running the model"),
    ],
)
async def test_ollama_errors_become_translator_unavailable(
    mode: str, status: int, words: str
) -> None:
    async with running_fake_ollama(mode) as fake:
        with pytest.raises(TranslatorUnavailable, match=f"{status}.*{words}"):
            await _translate(fake.url)


async def test_a_model_that_is_not_pulled_is_unavailable() -> None:
    async with running_fake_ollama(models=("llama3:8b",)) as fake:
        with pytest.raises(TranslatorUnavailable, match=f"404.*model '{MODEL}' not found"):
            await _translate(fake.url)
        translator = OllamaTranslator(fake.url, MODEL)
        assert await translator.probe() is False
        await translator.aclose()


async def test_a_server_that_is_down_is_unavailable() -> None:
    async with running_fake_ollama("down") as fake:
        with pytest.raises(TranslatorUnavailable, match="unreachable"):
            await _translate(fake.url)
        translator = OllamaTranslator(fake.url, MODEL)
        assert await translator.probe() is False
        assert await translator.warm_up() is False
        await translator.aclose()


async def test_a_slow_server_times_out() -> None:
    async with running_fake_ollama("slow", delay_s=30) as fake:
        with pytest.raises(TranslatorUnavailable, match="timed out"):
            await _translate(fake.url, timeout_s=0.2)


async def test_probe_warm_up_and_latency_hook() -> None:
    seen: list[tuple[float, bool]] = []
    client = HttpClient()
    async with running_fake_ollama() as fake:
        translator = OllamaTranslator(
            fake.url + "/", MODEL, client=client, on_latency=lambda s, ok: seen.append((s, ok))
        )
        assert await translator.probe() is True
        assert await translator.warm_up() is True
        assert await translator.translate("猫") == "cat"
        await translator.aclose()  # a shared client stays open
        assert await translator.probe() is True
    await client.aclose()
    assert len(seen) == 1 and seen[0][1] is True and seen[0][0] >= 0
    assert translator.last_latency_s == seen[0][0]
    warm = next(r.body for r in fake.requests if r.path == "/api/chat")
    assert warm["messages"] == [] and warm["keep_alive"]


@pytest.mark.parametrize(
    ("content", "answer"),
    [
        ('{"en": "long hair"}', "long hair"),
        ('  {"en": "a \\"cat\\""}\n ', 'a "cat"'),
        ('{"en": "long hair", "extra', "long hair"),  # cut by num_predict after the value
        ('{"en": "long', '{"en": "long'),  # cut inside the value: judged by the domain
        ("long hair", "long hair"),
        ('["long hair"]', '["long hair"]'),
    ],
)
def test_answers_are_read_defensively(content: str, answer: str) -> None:
    assert extract_answer(content) == answer


# ---- the fake speaks Ollama's API -------------------------------------------------------


async def test_fake_streams_ndjson_when_stream_is_omitted() -> None:
    async with running_fake_ollama() as fake, httpx.AsyncClient(base_url=fake.url) as http:
        body = {"model": MODEL, "messages": [{"role": "user", "content": "长发少女"}]}
        response = await http.post("/api/chat", json=body)
        generate = await http.post(
            "/api/generate", json={"model": MODEL, "prompt": "翻译成英文：猫"}
        )
    assert response.headers["content-type"].startswith("application/x-ndjson")
    lines = [json.loads(line) for line in response.text.splitlines()]
    assert all(not line["done"] for line in lines[:-1])
    assert "".join(line["message"]["content"] for line in lines) == "long-haired girl"
    assert lines[-1]["done"] is True and lines[-1]["done_reason"] == "stop"
    assert lines[-1]["created_at"].endswith("Z") and "eval_count" in lines[-1]
    final = json.loads(generate.text.splitlines()[-1])
    assert final["context"] and final["done"]
    assert "".join(json.loads(x)["response"] for x in generate.text.splitlines()) == "cat"


async def test_fake_answers_one_object_without_streaming() -> None:
    async with running_fake_ollama() as fake, httpx.AsyncClient(base_url=fake.url) as http:
        body = {"model": MODEL, "stream": False, "format": "json", "messages": []}
        body["messages"] = [{"role": "user", "content": "<text>猫</text>"}]
        response = await http.post("/api/chat", json=body)
    assert response.headers["content-type"].startswith("application/json")
    data = response.json()
    assert json.loads(data["message"]["content"]) == {"en": "cat"}
    assert data["done"] is True and data["message"]["role"] == "assistant"


@pytest.mark.parametrize(
    ("path", "payload", "status", "error"),
    [
        ("/api/chat", b"", 400, "missing request body"),
        ("/api/chat", b"{not json", 400, "invalid character"),
        ("/api/chat", {"model": "", "messages": []}, 400, "model is required"),
        ("/api/generate", {"prompt": "x"}, 404, "model '' not found"),
        ("/api/chat", {"model": "nope:1b", "messages": []}, 404, "model 'nope:1b' not found"),
        ("/api/chat", {"model": MODEL, "think": True}, 400, f'"{MODEL}" does not support thinking'),
        ("/api/chat", {"model": MODEL, "format": "xml"}, 500, "invalid format"),
        ("/api/chat", {"model": MODEL, "options": {"temperature": "hot"}}, 500, "float32"),
    ],
)
async def test_fake_refuses_like_ollama(
    path: str, payload: object, status: int, error: str
) -> None:
    async with running_fake_ollama() as fake, httpx.AsyncClient(base_url=fake.url) as http:
        if isinstance(payload, bytes):
            response = await http.post(path, content=payload)
        else:
            response = await http.post(path, json=payload)
    assert response.status_code == status
    assert error in response.json()["error"]


async def test_fake_mid_stream_error_keeps_status_200() -> None:
    async with running_fake_ollama("midstream") as fake, httpx.AsyncClient(base_url=fake.url) as h:
        body = {"model": MODEL, "messages": [{"role": "user", "content": "夕阳下的海边"}]}
        response = await h.post("/api/chat", json=body)
    assert response.status_code == 200
    last = json.loads(response.text.splitlines()[-1])
    assert last == {"error": "an error was encountered while running the model"}


async def test_fake_load_truncation_and_listing_endpoints() -> None:
    async with running_fake_ollama() as fake, httpx.AsyncClient(base_url=fake.url) as http:
        load = await http.post("/api/chat", json={"model": MODEL, "messages": [], "stream": False})
        unload = await http.post(
            "/api/generate", json={"model": MODEL, "keep_alive": 0, "stream": False}
        )
        cut = await http.post(
            "/api/chat",
            json={
                "model": MODEL,
                "stream": False,
                "format": ANSWER_FORMAT,
                "options": {"num_predict": 2},
                "messages": [{"role": "user", "content": "夕阳下的海边"}],
            },
        )
        tags = (await http.get("/api/tags")).json()
        version = (await http.get("/api/version")).json()
        root = await http.get("/")
        head = await http.head("/")
        pull = await http.post("/api/pull", json={"model": "nope", "stream": False})
    assert load.json()["done_reason"] == "load"
    assert unload.json()["done_reason"] == "unload"
    assert cut.json()["done_reason"] == "length"
    assert cut.json()["message"]["content"] == '{"en": "'
    (model,) = tags["models"]
    assert model["name"] == MODEL and model["details"]["family"] == "qwen2"
    assert version == {"version": "0.0.0-fake"}
    assert root.text == "Ollama is running" and head.status_code == 200
    assert pull.status_code == 500
    assert pull.json() == {"error": "pull model manifest: file does not exist"}


async def test_fake_runs_as_a_process() -> None:
    port = free_port()
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "tests.fakes.ollama",
        "--port",
        str(port),
        "--mode",
        "chatty",
        cwd=PROJECT_ROOT,
        stderr=subprocess.PIPE,
    )
    try:
        assert process.stderr is not None
        async with asyncio.timeout(30):
            while b"Uvicorn running" not in await process.stderr.readline():
                assert process.returncode is None
        reply = await _translate(f"http://127.0.0.1:{port}", "猫")
        assert reply == 'Sure! Here is the translation: "cat"'
    finally:
        process.terminate()
        await process.wait()


def test_an_ollama_url_that_is_not_http_is_refused_at_start() -> None:
    with pytest.raises(ValueError, match="not an http"):
        OllamaTranslator("localhost:11434", MODEL)
