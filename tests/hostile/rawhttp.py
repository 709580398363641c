"""HTTP/1.1 written byte for byte: requests no well-behaved client would send (paths with
`..` left in, lying Content-Length), which httpx would normalise or refuse."""

from __future__ import annotations

import asyncio
from urllib.parse import urlsplit


async def raw_request(base_url: str, head: str, body: bytes = b"") -> tuple[int, bytes]:
    """Send `head` (request line and headers, no blank line) and `body` on a new connection;
    the status code and the response bytes (read until the server closes or 2 s pass)."""
    parts = urlsplit(base_url)
    reader, writer = await asyncio.open_connection(parts.hostname, parts.port)
    try:
        writer.write(head.encode("latin-1") + b"\r\nConnection: close\r\n\r\n" + body)
        await writer.drain()
        response = b""
        try:
            async with asyncio.timeout(2):
                while chunk := await reader.read(65536):
                    response += chunk
        except TimeoutError:
            pass
    finally:
        writer.close()
    status_line = response.split(b"\r\n", 1)[0].split()
    return (int(status_line[1]) if len(status_line) > 1 else 0), response


async def raw_get(base_url: str, target: str) -> tuple[int, bytes]:
    """GET `target` exactly as written (no dot-segment removal, no re-encoding)."""
    host = urlsplit(base_url).netloc
    return await raw_request(base_url, f"GET {target} HTTP/1.1\r\nHost: {host}")
