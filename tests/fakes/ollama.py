"""A fake Ollama HTTP server that speaks its real API (shared/reference/ollama.md §4).

Endpoints: `GET|HEAD /`, `/api/version`, `/api/tags`, `/api/ps`, `POST /api/show`,
`/api/pull`, `/api/generate` and `/api/chat` (streaming NDJSON by default, one JSON object
with `"stream": false`), with Ollama's error bodies. Replies come from a small zh→en
dictionary, so real Chinese prompts get English answers; with a `format` the reply is
`{"en": …}` as a model under a JSON schema would write it.

Modes: normal; slow (headers only after `delay_s`); chatty ('Sure! Here is the
translation: "…"'); garbage (answers with the Chinese text); error (500); busy (503);
midstream (an `{"error"}` line after some chunks, or 500 without streaming); down (nothing
listens). `next_modes` scripts the next calls. Every request is recorded in `requests`.

In tests: `async with running_fake_ollama(mode="chatty") as fake: … fake.url …`.
As a process: `python -m tests.fakes.ollama --port 11434 [--mode slow --delay 5]`.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import re
import socket
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, suppress
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response, StreamingResponse
from starlette.routing import Route

MODES = ("normal", "slow", "chatty", "garbage", "error", "busy", "midstream", "down")
DEFAULT_MODELS = ("qwen2.5:0.5b",)
VERSION = "0.0.0-fake"

DICTIONARY = {
    "长发少女": "long-haired girl",
    "夕阳下的海边": "seaside at sunset",
    "一只": "a",
    "一个": "a",
    "长发": "long hair",
    "短发": "short hair",
    "少女": "girl",
    "女孩": "girl",
    "男孩": "boy",
    "猫": "cat",
    "狗": "dog",
    "可爱": "cute",
    "美丽": "beautiful",
    "微笑": "smile",
    "樱花": "cherry blossoms",
    "夕阳": "sunset",
    "海边": "seaside",
    "城市": "city",
    "夜晚": "night",
    "赛博朋克": "cyberpunk",
    "汉服": "hanfu",
    "山": "mountain",
    "花": "flower",
    "雪": "snow",
    "天空": "sky",
    "星空": "starry sky",
    "森林": "forest",
    "龙": "dragon",
    "红色": "red",
    "蓝色": "blue",
    "白色": "white",
    "黑色": "black",
    "风景": "landscape",
    "杰作": "masterpiece",
    "高质量": "high quality",
    "低质量": "low quality",
    "模糊": "blurry",
    "丑陋": "ugly",
    "穿着": "wearing",
    "宇航员": "astronaut",
    "骑": "riding",
    "马": "horse",
    "月亮": "moon",
    "和": "and",
    "在": "in",
    "的": "",
}
_LONGEST = max(len(k) for k in DICTIONARY)
_CJK = re.compile(r"[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff]")
_TEXT_TAG = re.compile(r"<text>(.*?)</text>", re.DOTALL)
_METRICS = {
    "total_duration": 52_000_000,
    "load_duration": 1_000_000,
    "prompt_eval_count": 26,
    "prompt_eval_duration": 8_000_000,
    "eval_count": 9,
    "eval_duration": 40_000_000,
}


def translate(text: str) -> str:
    """Dictionary translation, longest match first; unknown characters become 'thing'."""
    words: list[str] = []
    i = 0
    while i < len(text):
        if not _CJK.match(text[i]):
            words.append(text[i])
            i += 1
            continue
        for size in range(min(_LONGEST, len(text) - i), 0, -1):
            if text[i : i + size] in DICTIONARY:
                words.append(f" {DICTIONARY[text[i : i + size]]} ")
                i += size
                break
        else:
            words.append(" thing ")
            i += 1
    return re.sub(r" {2,}", " ", "".join(words)).strip()


@dataclass(frozen=True, slots=True)
class Recorded:
    method: str
    path: str
    body: Any  # parsed JSON, or the raw text when it was not JSON, or None


class _Refusal(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f") + "123Z"


class FakeOllama:
    """The fake's state and its Starlette app; `mode` may be changed while it runs."""

    def __init__(
        self,
        mode: str = "normal",
        *,
        delay_s: float | None = None,
        models: tuple[str, ...] = DEFAULT_MODELS,
        chunk_chars: int = 4,
    ) -> None:
        if mode not in MODES:
            raise ValueError(f"unknown mode {mode!r}; one of {MODES}")
        self.mode = mode
        self.delay_s = delay_s if delay_s is not None else (30.0 if mode == "slow" else 0.0)
        self.models = models
        self.chunk_chars = chunk_chars
        self.next_modes: list[str] = []
        self.requests: list[Recorded] = []
        self.url = ""
        self._released = asyncio.Event()
        self.app = Starlette(routes=self._routes())

    # ---- what tests read ----------------------------------------------------------------

    def chat_bodies(self) -> list[dict[str, Any]]:
        return [r.body for r in self.requests if r.path == "/api/chat" and isinstance(r.body, dict)]

    def asked_texts(self) -> list[str]:
        """The text each chat/generate call asked to translate."""
        texts = []
        for r in self.requests:
            if r.path in ("/api/chat", "/api/generate") and isinstance(r.body, dict):
                text = _question(r.path, r.body)
                if text:
                    texts.append(text)
        return texts

    def release(self) -> None:
        """End every pending delay now (used at shutdown)."""
        self._released.set()

    # ---- the app ------------------------------------------------------------------------

    def _routes(self) -> list[Route]:
        return [
            Route("/", self._root, methods=["GET", "HEAD"]),
            Route("/api/version", self._version, methods=["GET", "HEAD"]),
            Route("/api/tags", self._tags, methods=["GET"]),
            Route("/api/ps", self._ps, methods=["GET"]),
            Route("/api/show", self._show, methods=["POST"]),
            Route("/api/pull", self._pull, methods=["POST"]),
            Route("/api/chat", self._chat, methods=["POST"]),
            Route("/api/generate", self._generate, methods=["POST"]),
        ]

    async def _root(self, request: Request) -> Response:
        self.requests.append(Recorded(request.method, "/", None))
        return PlainTextResponse("Ollama is running")

    async def _version(self, request: Request) -> Response:
        self.requests.append(Recorded(request.method, "/api/version", None))
        return JSONResponse({"version": VERSION})

    async def _tags(self, request: Request) -> Response:
        self.requests.append(Recorded("GET", "/api/tags", None))
        return JSONResponse({"models": [self._model_entry(m) for m in self.models]})

    async def _ps(self, request: Request) -> Response:
        self.requests.append(Recorded("GET", "/api/ps", None))
        loaded = [
            {**self._model_entry(m), "expires_at": _now(), "size_vram": 0, "context_length": 4096}
            for m in self.models
        ]
        return JSONResponse({"models": loaded})

    async def _show(self, request: Request) -> Response:
        try:
            body = await self._body(request, "/api/show")
            self._check_model(body, required_status=400)
        except _Refusal as exc:
            return _error(exc.status, str(exc))
        details = self._model_entry(body["model"])["details"]
        return JSONResponse(
            {"details": details, "parameters": "", "template": "", "capabilities": ["completion"]}
        )

    async def _pull(self, request: Request) -> Response:
        try:
            body = await self._body(request, "/api/pull")
        except _Refusal as exc:
            return _error(exc.status, str(exc))
        name = body.get("model") or body.get("name") or ""
        if name in self.models:
            lines = [{"status": "pulling manifest"}, {"status": "success"}]
        else:
            lines = [{"status": "pulling manifest"}, {"error": _PULL_ERROR}]
        if body.get("stream") is False:
            return JSONResponse(lines[-1], status_code=200 if name in self.models else 500)
        return _ndjson(iter(lines))

    async def _chat(self, request: Request) -> Response:
        return await self._complete(request, "/api/chat")

    async def _generate(self, request: Request) -> Response:
        return await self._complete(request, "/api/generate")

    async def _complete(self, request: Request, path: str) -> Response:
        try:
            body = await self._body(request, path)
            self._check_model(body, required_status=400 if path == "/api/chat" else 404)
            _check_request(body)
        except _Refusal as exc:
            return _error(exc.status, str(exc))
        mode = self.next_modes.pop(0) if self.next_modes else self.mode
        await self._delay(mode)
        question = _question(path, body)
        if not question:
            return self._load_answer(path, body)
        if mode in ("error", "busy") or (mode == "midstream" and body.get("stream") is False):
            return _error(*_MODE_ERRORS[mode])
        content, reason = _shape_reply(self._reply(mode, question), body)
        return self._answer(path, body, content, reason, fail_midway=mode == "midstream")

    # ---- helpers ------------------------------------------------------------------------

    async def _body(self, request: Request, path: str) -> dict[str, Any]:
        raw = await request.body()
        if not raw:
            self.requests.append(Recorded("POST", path, None))
            raise _Refusal(400, "missing request body")
        try:
            body = json.loads(raw)
        except ValueError as exc:
            self.requests.append(Recorded("POST", path, raw.decode(errors="replace")))
            raise _Refusal(400, f"invalid character: {exc}") from None
        self.requests.append(Recorded("POST", path, body))
        if not isinstance(body, dict):
            raise _Refusal(400, "json: cannot unmarshal into Go value of type api.ChatRequest")
        return body

    def _check_model(self, body: dict[str, Any], required_status: int) -> None:
        name = body.get("model") or ""
        if not name:
            raise _Refusal(
                required_status, "model is required" if required_status == 400 else _missing(name)
            )
        if name not in self.models:
            raise _Refusal(404, _missing(name))

    async def _delay(self, mode: str) -> None:
        if mode == "slow" and self.delay_s > 0:
            with suppress(TimeoutError):
                await asyncio.wait_for(self._released.wait(), self.delay_s)

    def _reply(self, mode: str, question: str) -> str:
        if mode == "garbage":
            return question
        english = translate(question)
        if mode == "chatty":
            return f'Sure! Here is the translation: "{english}"'
        return english

    def _load_answer(self, path: str, body: dict[str, Any]) -> Response:
        reason = "unload" if body.get("keep_alive") in (0, "0", "0s") else "load"
        answer: dict[str, Any] = {"model": body["model"], "created_at": _now()}
        if path == "/api/chat":
            answer["message"] = {"role": "assistant", "content": ""}
        else:
            answer["response"] = ""
        answer.update(done=True, done_reason=reason)
        return JSONResponse(answer)

    def _answer(
        self, path: str, body: dict[str, Any], content: str, reason: str, *, fail_midway: bool
    ) -> Response:
        if body.get("stream", True) is False:
            return JSONResponse({**_chunk(path, body, content, done=True), **_final(reason, path)})
        size = self.chunk_chars
        pieces = [content[i : i + size] for i in range(0, len(content), size)]
        return _ndjson(_stream(path, body, pieces, reason, fail_midway))

    def _model_entry(self, name: str) -> dict[str, Any]:
        return {
            "name": name,
            "model": name,
            "modified_at": "2026-01-01T00:00:00.000000000Z",
            "size": 397821319,
            "digest": "a8b0c5157701" + "0" * 52,
            "details": {
                "parent_model": "",
                "format": "gguf",
                "family": "qwen2",
                "families": ["qwen2"],
                "parameter_size": "494.03M",
                "quantization_level": "Q4_K_M",
            },
        }


_PULL_ERROR = "pull model manifest: file does not exist"
_MODE_ERRORS = {
    "error": (500, "timed out waiting for llama-server to start: context deadline exceeded"),
    "busy": (503, "server busy, please try again.  maximum pending requests exceeded"),
    "midstream": (500, "an error was encountered while running the model"),
}


def _missing(name: str) -> str:
    return f"model '{name}' not found"


def _error(status: int, message: str) -> Response:
    return JSONResponse({"error": message}, status_code=status)


def _check_request(body: dict[str, Any]) -> None:
    if body.get("think") is True:
        raise _Refusal(400, f'"{body["model"]}" does not support thinking')
    fmt = body.get("format")
    if fmt not in (None, "", "json") and not isinstance(fmt, dict):
        raise _Refusal(
            500,
            f'invalid format: "{fmt}"; expected "json" or a valid JSON Schema object',
        )
    options = body.get("options") or {}
    temperature = options.get("temperature", 0.8)
    if not isinstance(temperature, int | float) or isinstance(temperature, bool):
        raise _Refusal(500, 'option "temperature" must be of type float32')


def _question(path: str, body: dict[str, Any]) -> str:
    """The text a request asks to translate: the last user message's <text>, or the prompt."""
    if path == "/api/generate":
        text = str(body.get("prompt") or "")
        return text.removeprefix("翻译成英文：")
    users = [m for m in body.get("messages") or [] if m.get("role") == "user"]
    if not users:
        return ""
    content = str(users[-1].get("content") or "")
    match = _TEXT_TAG.search(content)
    return match.group(1) if match else content


def _shape_reply(reply: str, body: dict[str, Any]) -> tuple[str, str]:
    """Apply `format`, `stop` and `num_predict` (about four characters a token)."""
    options = body.get("options") or {}
    content = json.dumps({"en": reply}, ensure_ascii=False) if body.get("format") else reply
    for stop in options.get("stop") or []:
        if stop and stop in content:
            content = content[: content.index(stop)]
    limit = options.get("num_predict", -1)
    if isinstance(limit, int) and limit >= 0 and len(content) > 4 * limit:
        return content[: 4 * limit], "length"
    return content, "stop"


def _chunk(path: str, body: dict[str, Any], piece: str, *, done: bool) -> dict[str, Any]:
    chunk: dict[str, Any] = {"model": body["model"], "created_at": _now()}
    if path == "/api/chat":
        chunk["message"] = {"role": "assistant", "content": piece}
    else:
        chunk["response"] = piece
    chunk["done"] = done
    return chunk


def _final(reason: str, path: str) -> dict[str, Any]:
    final: dict[str, Any] = {"done": True, "done_reason": reason, **_METRICS}
    if path == "/api/generate":
        final["context"] = [1, 2, 3]
    return final


def _stream(
    path: str, body: dict[str, Any], pieces: list[str], reason: str, fail_midway: bool
) -> Iterator[dict[str, Any]]:
    for index, piece in enumerate(pieces):
        if fail_midway and index == len(pieces) // 2:
            yield {"error": _MODE_ERRORS["midstream"][1]}
            return
        yield _chunk(path, body, piece, done=False)
    yield {**_chunk(path, body, "", done=True), **_final(reason, path)}


def _ndjson(lines: Iterator[dict[str, Any]]) -> Response:
    encoded = (json.dumps(line, ensure_ascii=False) + "\n" for line in lines)
    return StreamingResponse(encoded, media_type="application/x-ndjson")


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@asynccontextmanager
async def running_fake_ollama(mode: str = "normal", **options: Any) -> AsyncIterator[FakeOllama]:
    """Serve a FakeOllama on 127.0.0.1 (port 0) in the current event loop; `.url` is set.

    With mode "down" nothing listens on `.url` (connections are refused)."""
    fake = FakeOllama(mode, **options)
    if mode == "down":
        fake.url = f"http://127.0.0.1:{_closed_port()}"
        yield fake
        return
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(128)  # connections wait in the backlog until uvicorn serves them
    fake.url = f"http://127.0.0.1:{sock.getsockname()[1]}"
    config = uvicorn.Config(fake.app, lifespan="off", log_level="warning", access_log=False)
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve(sockets=[sock]))
    try:
        yield fake
    finally:
        fake.release()
        server.should_exit = True
        await task
        sock.close()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="A fake Ollama server for tests and demos.")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=11434)
    parser.add_argument("--mode", choices=[m for m in MODES if m != "down"], default="normal")
    parser.add_argument("--delay", type=float, default=None, help="seconds (slow mode)")
    parser.add_argument("--model", action="append", help="models offered (repeatable)")
    args = parser.parse_args(argv)
    models = tuple(args.model) if args.model else DEFAULT_MODELS
    fake = FakeOllama(args.mode, delay_s=args.delay, models=models)
    uvicorn.run(fake.app, host=args.host, port=args.port, log_level="info", lifespan="off")


if __name__ == "__main__":
    main()
