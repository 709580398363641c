"""One Lua script's calls, pipelined: calls made while a pipeline is in flight go together,
in order, in the next one.

Under load this turns N concurrent calls into a few round trips on one connection, and
costs a lone call nothing (it goes at once). Each call still runs as its own atomic script.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from redis.asyncio import Redis
from redis.exceptions import NoScriptError, ResponseError

from stargraph.batching import Batcher

Arg = str | int | bytes  # a script argument, as the Redis protocol carries it


class PipelinedScript:
    """Calls of one script, pipelined. A worker's thousand listeners publishing at once cost
    a few round trips and one connection, not a thousand of each. A call that may `linger`
    waits up to `linger_s` for company when no pipeline is in flight; any other call sends
    at once, with those waiting before it. Its answer is the script's raw reply; a call whose
    script failed raises that error, and the other calls of its pipeline are unaffected."""

    def __init__(
        self, redis: Redis, source: str, linger_s: float = 0.0, *, name: str = "script"
    ) -> None:
        self._redis = redis
        self._source = source
        self._sha = redis.register_script(source).sha
        self._batcher: Batcher[_Call, Any] = Batcher(
            self._send, linger_s=linger_s, name=f"pipelined-{name}"
        )

    async def __call__(
        self, keys: Sequence[str], args: Sequence[Arg], *, linger: bool = False
    ) -> Any:
        return await self._batcher((keys, args), linger=linger)

    async def _send(self, batch: list[_Call]) -> list[object]:
        results = await self._execute(batch)
        lost = [i for i, r in enumerate(results) if isinstance(r, NoScriptError)]
        if lost:  # Redis lost its scripts (a restart): load it, run those calls again
            await self._redis.script_load(self._source)
            again = await self._execute([batch[i] for i in lost])
            for i, result in zip(lost, again, strict=True):
                results[i] = result
        return results

    async def _execute(self, batch: list[_Call]) -> list[object]:
        """One write of the whole batch, then its replies (a failed call's is its error).
        The commands are packed here: redis-py's general packing cost more than the rest."""
        packed = b"".join(_evalsha(self._sha, keys, args) for keys, args in batch)
        pool = self._redis.connection_pool
        connection = await pool.get_connection()  # type: ignore[no-untyped-call]

        async def attempt() -> list[object]:
            await connection.send_packed_command(packed)
            results: list[object] = []
            for _ in batch:
                try:
                    results.append(await connection.read_response())
                except ResponseError as error:
                    results.append(error)
            return results

        async def failed(error: Exception) -> None:
            await connection.disconnect()

        try:  # on a lost connection, retried as redis-py's pipelines are
            return await connection.retry.call_with_retry(attempt, failed)  # type: ignore[no-any-return]
        except BaseException:
            await connection.disconnect()  # replies may be left unread on it
            raise
        finally:
            await pool.release(connection)


_Call = tuple[Sequence[str], Sequence[Arg]]


def _evalsha(sha: str, keys: Sequence[str], args: Sequence[Arg]) -> bytes:
    """EVALSHA in the Redis protocol; arguments are str (UTF-8), int or bytes."""
    parts = [sha.encode(), b"%d" % len(keys)]
    for arg in (*keys, *args):
        if isinstance(arg, bytes):
            parts.append(arg)
        elif isinstance(arg, int):
            parts.append(b"%d" % arg)
        else:
            parts.append(str(arg).encode())
    out = [b"*%d\r\n$7\r\nEVALSHA\r\n" % (len(parts) + 1)]
    out.extend(b"$%d\r\n%s\r\n" % (len(part), part) for part in parts)
    return b"".join(out)
