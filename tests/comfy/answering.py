"""A real HTTP/1.1 server on loopback that answers from a table: recorded ComfyUI answers
replayed over the wire, so the client under test parses real bytes."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

Answer = tuple[int, Any]  # status, body: bytes/str sent as text, anything else as JSON


@dataclass
class Heard:
    """One request as the server read it."""

    method: str
    target: str
    headers: dict[str, str]
    body: bytes


@dataclass
class AnsweringServer:
    url: str
    heard: list[Heard] = field(default_factory=list)
    connections: int = 0


def encode_answer(status: int, body: Any, *, keep_alive: bool = True) -> bytes:
    """A whole response with a Content-Length."""
    if isinstance(body, bytes | str):
        payload = body.encode() if isinstance(body, str) else body
        kind = "text/plain"
    else:
        payload, kind = json.dumps(body).encode(), "application/json"
    head = f"HTTP/1.1 {status} X\r\nContent-Type: {kind}\r\nContent-Length: {len(payload)}\r\n"
    if not keep_alive:
        head += "Connection: close\r\n"
    return head.encode() + b"\r\n" + payload


async def read_request(reader: asyncio.StreamReader) -> Heard | None:
    """The next request on a connection, or None at its end."""
    try:
        head = await reader.readuntil(b"\r\n\r\n")
    except (asyncio.IncompleteReadError, ConnectionError):
        return None
    lines = head.decode().split("\r\n")
    method, target, _ = lines[0].split(" ", 2)
    headers = {}
    for line in lines[1:]:
        if line:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
    body = await reader.readexactly(int(headers.get("content-length", "0")))
    return Heard(method, target, headers, body)


@contextlib.asynccontextmanager
async def answering_server(
    answer: Callable[[Heard], Answer] | dict[tuple[str, str], Answer],
) -> AsyncIterator[AnsweringServer]:
    """Serve until the block ends; a table maps (method, path) to an answer (else 404)."""
    choose = answer if callable(answer) else _from_table(answer)
    server_state = AnsweringServer("")

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        server_state.connections += 1
        try:
            while (heard := await read_request(reader)) is not None:
                server_state.heard.append(heard)
                writer.write(encode_answer(*choose(heard)))
                await writer.drain()
        finally:
            writer.close()

    server = await asyncio.start_server(serve, "127.0.0.1", 0)
    server_state.url = f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}"
    try:
        yield server_state
    finally:
        server.close()
        with contextlib.suppress(Exception):
            await server.wait_closed()


def _from_table(routes: dict[tuple[str, str], Answer]) -> Callable[[Heard], Answer]:
    def choose(heard: Heard) -> Answer:
        return routes.get((heard.method, heard.target.split("?")[0]), (404, b""))

    return choose
