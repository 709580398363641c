"""Guessing passwords and stealing secrets: login is throttled per account name and per client
address, tokens and passwords never rest in the database in a usable form.

Tokens are looked up by their SHA-256 digest, so the only comparison an attacker can time is
between digests of their own guesses and stored digests, which says nothing about a token;
image-link signatures are compared with `hmac.compare_digest`. What can be checked without a
stopwatch is checked here: what is stored.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

from stargraph.store.models import TokenRow, UserRow
from tests.e2e.harness import Stack, running_stargraph
from tests.hostile.state import snapshot

LOGIN = "mutation($u: String!, $p: String!) { login(username: $u, password: $p) { token } }"
PASSWORD = "correct horse 1"


async def _login_code(stack: Stack, username: str, password: str) -> str:
    body = await stack.client.post(LOGIN, {"u": username, "p": password})
    if not body.get("errors"):
        return "ok"
    code: str = body["errors"][0]["extensions"]["code"]
    return code


async def test_login_is_throttled_per_username(tmp_path: Path) -> None:
    async with running_stargraph(tmp_path, worker=False, login_attempts_per_minute=3) as stack:
        await stack.client.register("victim", PASSWORD)
        await stack.client.register("bystander", PASSWORD)
        codes = [await _login_code(stack, "victim", f"guess {i}xx") for i in range(3)]
        assert codes == ["UNAUTHENTICATED"] * 3
        before = await snapshot(stack.services)
        assert await _login_code(stack, "victim", PASSWORD) == "RATE_LIMITED"
        assert await _login_code(stack, "VICTIM", PASSWORD) == "RATE_LIMITED"  # same account
        assert await snapshot(stack.services) == before  # no token was issued
        assert await _login_code(stack, "bystander", PASSWORD) == "ok"


async def test_login_is_throttled_per_client_address(tmp_path: Path) -> None:
    limit = 2
    async with running_stargraph(tmp_path, worker=False, login_attempts_per_minute=limit) as stack:
        await stack.client.register("target", PASSWORD)
        codes = []
        for i in range(60):  # a new name each time: only the address can be counted
            codes.append(await _login_code(stack, f"name{i}", "not it at all"))
            if codes[-1] == "RATE_LIMITED":
                break
        assert codes[-1] == "RATE_LIMITED", codes
        assert len(codes) > limit + 1  # not the per-name limit
        before = await snapshot(stack.services)
        assert await _login_code(stack, "target", PASSWORD) == "RATE_LIMITED"
        assert await snapshot(stack.services) == before


def _stored_bytes(db_file: Path) -> bytes:
    """The SQLite database as it is on disk, write-ahead log included."""
    files = [db_file, db_file.with_name(db_file.name + "-wal")]
    return b"".join(f.read_bytes() for f in files if f.exists())


async def test_tokens_are_stored_as_digests_and_passwords_as_argon2id(tmp_path: Path) -> None:
    async with running_stargraph(tmp_path, worker=False) as stack:
        registered = await stack.client.register("keeper", PASSWORD)
        login = await stack.client.data(LOGIN, {"u": "keeper", "p": PASSWORD})
        tokens = [registered.token, login["login"]["token"]]
        digests = [row.digest for row in await TokenRow.all()]
        assert sorted(digests) == sorted(hashlib.sha256(t.encode()).hexdigest() for t in tokens)
        user = await UserRow.get(username_key="keeper")
        assert user.password_hash.startswith("$argon2id$")
        assert PASSWORD not in user.password_hash
        on_disk = _stored_bytes(tmp_path / "stargraph.sqlite3")
        assert on_disk, "the database file was found"
        for secret in (*tokens, PASSWORD):
            assert secret.encode() not in on_disk, secret
        assert (await registered.data("{ me { username } }"))["me"]["username"] == "keeper"


async def test_a_token_is_refused_once_revoked_or_altered(tmp_path: Path) -> None:
    async with running_stargraph(tmp_path, worker=False) as stack:
        user = await stack.client.register("leaver", PASSWORD)
        token = user.token or ""
        for forged in (
            token[:-1],
            token + "x",
            token.upper(),
            hashlib.sha256(token.encode()).hexdigest(),
        ):
            body = await stack.client.as_user(forged).post("{ me { id } }")
            assert body["errors"][0]["extensions"]["code"] == "UNAUTHENTICATED", forged
        assert (await user.data("mutation { logout }"))["logout"] is True
        body = await user.post("{ me { id } }")
        assert body["errors"][0]["extensions"]["code"] == "UNAUTHENTICATED"
