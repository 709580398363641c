"""The HTTP/1.1 client under ComfyClient and OllamaTranslator, against real sockets on loopback:
answers framed every way HTTP/1.1 allows, and each failure sorted into sent / not sent."""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator

import pytest
import uvloop

from stargraph.http_client import (
    IDLE_LIMIT_S,
    ConnectFailed,
    ExchangeFailed,
    ExchangeTimedOut,
    HttpClient,
    Origin,
    Timeouts,
)
from tests.comfy.answering import Heard, answering_server, encode_answer, read_request

FAST = Timeouts(connect=2.0, total=2.0)

Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


@contextlib.asynccontextmanager
async def raw_server(handle: Handler) -> AsyncIterator[Origin]:
    """A loopback server whose connections `handle` serves byte by byte."""
    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    try:
        yield Origin.parse(f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}")
    finally:
        server.close()


@pytest.fixture
async def http() -> AsyncIterator[HttpClient]:
    client = HttpClient()
    yield client
    await client.aclose()


async def test_requests_share_one_kept_alive_connection(http: HttpClient) -> None:
    async with answering_server(lambda heard: (200, {"echo": heard.body.decode()})) as server:
        origin = Origin.parse(server.url)
        for n in range(3):
            answer = await http.request(
                origin, "POST", "/prompt", json_body={"n": n}, timeouts=FAST
            )
            assert answer.status == 200
            assert json.loads(answer.json()["echo"]) == {"n": n}
        assert server.connections == 1


async def test_a_connection_idle_past_the_limit_is_closed_not_reused(http: HttpClient) -> None:
    """aiohttp closes kept-alive sockets after 75 s; reusing one near that risks a race."""
    async with answering_server(lambda heard: (200, "ok")) as server:
        origin = Origin.parse(server.url)
        await http.request(origin, "GET", "/", timeouts=FAST)
        [idle] = http._pool(origin).idle
        idle.idle_since -= IDLE_LIMIT_S
        await http.request(origin, "GET", "/", timeouts=FAST)
        assert server.connections == 2
        assert idle.closed


async def test_request_line_host_body_and_query_are_written_as_http_1_1(
    http: HttpClient,
) -> None:
    async with answering_server(lambda heard: (200, b"")) as server:
        origin = Origin.parse(server.url + "/comfy/")
        await http.request(
            origin,
            "GET",
            "/view",
            params={"filename": "a b&c.png", "type": "output"},
            timeouts=FAST,
        )
        await http.request(origin, "POST", "/interrupt", timeouts=FAST)
        await http.request(origin, "POST", "/queue", json_body={"clear": True}, timeouts=FAST)
    get, empty_post, post = server.heard
    assert get.target == "/comfy/view?filename=a+b%26c.png&type=output"
    assert get.headers["host"] == server.url.removeprefix("http://")
    assert empty_post.headers["content-length"] == "0" and empty_post.body == b""
    assert post.headers["content-type"] == "application/json"
    assert json.loads(post.body) == {"clear": True}


def test_origins_parse_once_and_refuse_other_schemes() -> None:
    origin = Origin.parse("https://user:secret@gpu.example:8443/comfy/")
    assert (origin.host, origin.port, origin.tls, origin.prefix) == (
        "gpu.example",
        8443,
        True,
        "/comfy",
    )
    assert origin.host_header == "gpu.example:8443"
    assert Origin.parse("http://gpu").port == 80
    with pytest.raises(ValueError):
        Origin.parse("ftp://gpu")


async def answer_chunked(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    while await read_request(reader) is not None:
        writer.write(
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
            b"5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n"
        )


async def answer_until_close(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    await read_request(reader)
    writer.write(b"HTTP/1.1 200 OK\r\n\r\nall of ")
    await writer.drain()
    writer.write(b"it")
    writer.close()


@pytest.mark.parametrize(
    ("handle", "body", "kept"),
    [(answer_chunked, b"hello world", True), (answer_until_close, b"all of it", False)],
)
async def test_answers_framed_by_chunks_or_by_the_end_of_the_connection(
    http: HttpClient, handle: Handler, body: bytes, kept: bool
) -> None:
    async with raw_server(handle) as origin:
        first = await http.request(origin, "GET", "/x", timeouts=FAST)
        assert (first.status, first.body) == (200, body)
        assert bool(http._pool(origin).idle) is kept


async def test_a_get_on_a_socket_the_server_dropped_is_sent_again(http: HttpClient) -> None:
    served = 0

    async def drop_every_second(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal served
        while await read_request(reader) is not None:
            served += 1
            if served == 2:  # read it, then close without a byte: a lapsed keep-alive
                writer.close()
                return
            writer.write(encode_answer(200, {"served": served}))

    async with raw_server(drop_every_second) as origin:
        assert (await http.request(origin, "GET", "/queue", timeouts=FAST)).json() == {"served": 1}
        again = await http.request(origin, "GET", "/queue", timeouts=FAST)
    assert again.json() == {"served": 3}


def dropping_the_second(heard: list[Heard]) -> Handler:
    """Answers every request it reads but the second, after which it closes the socket."""

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while (request := await read_request(reader)) is not None:
            heard.append(request)
            if len(heard) == 2:
                writer.close()
                return
            writer.write(encode_answer(200, {"heard": len(heard)}))

    return handle


async def test_a_post_on_a_dropped_socket_may_have_been_processed(http: HttpClient) -> None:
    heard: list[Heard] = []
    async with raw_server(dropping_the_second(heard)) as origin:
        await http.request(origin, "POST", "/prompt", json_body={}, timeouts=FAST)
        with pytest.raises(ExchangeFailed):
            await http.request(origin, "POST", "/prompt", json_body={}, timeouts=FAST)
    assert len(heard) == 2  # it did arrive: never sent twice


async def test_an_idempotent_post_on_a_dropped_socket_is_sent_again(http: HttpClient) -> None:
    heard: list[Heard] = []
    async with raw_server(dropping_the_second(heard)) as origin:
        await http.request(origin, "POST", "/api/chat", json_body={}, timeouts=FAST)
        again = await http.request(
            origin, "POST", "/api/chat", json_body={}, timeouts=FAST, idempotent=True
        )
    assert again.json() == {"heard": 3} and len(heard) == 3


@contextlib.contextmanager
def server_closing_idle_sockets() -> Iterator[tuple[Origin, threading.Event, list[bytes]]]:
    """A server in a thread that answers each request it reads and closes a connection once
    it is idle and the returned event is set (a keep-alive timeout, as uvicorn's of 5 s)."""
    listener = socket.create_server(("127.0.0.1", 0))
    close_idle, heard = threading.Event(), []

    def serve() -> None:
        with contextlib.suppress(OSError):
            while True:
                conn, _ = listener.accept()
                with conn:
                    heard.append(conn.recv(65536))
                    conn.sendall(encode_answer(200, {"n": len(heard)}))
                    close_idle.wait(10)  # then close: the kept-alive socket lapses

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield Origin.parse(f"http://127.0.0.1:{listener.getsockname()[1]}"), close_idle, heard
    finally:
        close_idle.set()
        listener.close()
        thread.join(5)


async def test_a_post_never_goes_on_a_socket_the_server_closed_while_the_loop_was_busy(
    http: HttpClient,
) -> None:
    """The server's FIN waits unread while the event loop is busy elsewhere; the client must
    see it before it reuses the socket, since a POST lost on it cannot be sent again."""
    with server_closing_idle_sockets() as (origin, close_idle, heard):
        first = await http.request(origin, "POST", "/prompt", json_body={}, timeouts=FAST)
        assert first.json() == {"n": 1} and http._pool(origin).idle
        close_idle.set()
        time.sleep(0.2)  # noqa: ASYNC251 -- a busy loop: the FIN arrives, nobody reads it yet
        second = await http.request(origin, "POST", "/prompt", json_body={}, timeouts=FAST)
    assert second.json() == {"n": 2} and len(heard) == 2


async def test_refused_connection_is_connect_failed(http: HttpClient) -> None:
    async with raw_server(answer_chunked) as origin:
        pass  # closed again: nothing listens on the port now
    with pytest.raises(ConnectFailed):
        await http.request(origin, "POST", "/prompt", json_body={}, timeouts=FAST)


async def test_a_slow_answer_times_out_and_its_socket_is_not_reused(http: HttpClient) -> None:
    delays = [0.5, 0.0]

    async def slow_then_fast(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(ConnectionError):
            while await read_request(reader) is not None:
                await asyncio.sleep(delays.pop(0))
                writer.write(encode_answer(200, "ok"))
                await writer.drain()

    async with raw_server(slow_then_fast) as origin:
        with pytest.raises(ExchangeTimedOut):
            await http.request(origin, "GET", "/x", timeouts=Timeouts(connect=1.0, total=0.05))
        answer = await http.request(origin, "GET", "/x", timeouts=FAST)
    assert answer.text() == "ok"


async def test_oversized_and_malformed_answers_fail_the_exchange() -> None:
    async def garbage(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(b"HTTQ/9 banana\r\n\r\n")

    small = HttpClient(max_body=10)
    async with answering_server(lambda heard: (200, b"x" * 11)) as server:
        with pytest.raises(ExchangeFailed):
            await small.request(Origin.parse(server.url), "GET", "/", timeouts=FAST)
    async with raw_server(garbage) as origin:
        with pytest.raises(ExchangeFailed):
            await small.request(origin, "GET", "/", timeouts=FAST)
    await small.aclose()


async def test_requests_past_the_connection_limit_wait_for_a_free_one() -> None:
    gate = asyncio.Event()

    async def held(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while await read_request(reader) is not None:
            await gate.wait()
            writer.write(encode_answer(200, "done"))

    one = HttpClient(max_connections=1)
    async with raw_server(held) as origin:
        first = asyncio.create_task(one.request(origin, "GET", "/a", timeouts=FAST))
        await asyncio.sleep(0.05)
        with pytest.raises(ConnectFailed):  # the only connection stays busy past `connect`
            await one.request(origin, "GET", "/b", timeouts=Timeouts(connect=0.05))
        second = asyncio.create_task(one.request(origin, "GET", "/c", timeouts=FAST))
        gate.set()
        assert [(await t).text() for t in (first, second)] == ["done", "done"]
    await one.aclose()


async def test_a_cancelled_exchange_closes_its_socket(http: HttpClient) -> None:
    answered = asyncio.Event()

    async def first_never_answered(
        reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        with contextlib.suppress(ConnectionError):
            while await read_request(reader) is not None:
                if not answered.is_set():
                    answered.set()  # read, never answered: the client gives up
                    continue
                writer.write(encode_answer(200, "ok"))

    async with raw_server(first_never_answered) as origin:
        task = asyncio.create_task(http.request(origin, "GET", "/", timeouts=FAST))
        await answered.wait()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert not http._pool(origin).idle
        assert (await http.request(origin, "GET", "/", timeouts=FAST)).text() == "ok"


async def test_a_closed_client_sends_nothing(http: HttpClient) -> None:
    async with answering_server(lambda heard: (200, "ok")) as server:
        await http.aclose()
        with pytest.raises(ConnectFailed):
            await http.request(Origin.parse(server.url), "GET", "/", timeouts=FAST)
        assert server.heard == []


def test_the_same_holds_on_uvloop() -> None:
    """The worker runs on uvloop (`stargraph.runtime`); the tests above on asyncio's loop."""
    scenarios: list[Callable[[HttpClient], Awaitable[None]]] = [
        test_requests_share_one_kept_alive_connection,
        lambda http: test_answers_framed_by_chunks_or_by_the_end_of_the_connection(
            http, answer_chunked, b"hello world", True
        ),
        lambda http: test_answers_framed_by_chunks_or_by_the_end_of_the_connection(
            http, answer_until_close, b"all of it", False
        ),
        test_a_get_on_a_socket_the_server_dropped_is_sent_again,
        test_a_post_on_a_dropped_socket_may_have_been_processed,
        test_a_post_never_goes_on_a_socket_the_server_closed_while_the_loop_was_busy,
        test_a_slow_answer_times_out_and_its_socket_is_not_reused,
        test_a_cancelled_exchange_closes_its_socket,
    ]

    async def each() -> None:
        for scenario in scenarios:
            http = HttpClient()
            try:
                await scenario(http)
            finally:
                await http.aclose()

    uvloop.run(asyncio.wait_for(each(), 30))
