"""Users, accounts and access tokens in SQL: registration, login, logout, authentication."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta

from tortoise.exceptions import IntegrityError
from tortoise.transactions import in_transaction

from stargraph.auth import Passwords, new_token, token_digest
from stargraph.domain.errors import Conflict, Forbidden, NotFound, Unauthenticated
from stargraph.domain.ledger import Balance, Ledger
from stargraph.domain.types import Principal, Role, UserId
from stargraph.domain.users import (
    PASSWORD_MAX,
    USERNAME_MAX,
    Session,
    User,
    check_password,
    check_points,
    check_username,
    signup_grant_key,
    username_key,
)
from stargraph.store import sql
from stargraph.store.convert import aware
from stargraph.store.models import AccountRow, TokenRow, UserRow

Clock = Callable[[], datetime]
LoginGuard = Callable[[str, str | None], Awaitable[None]]
_BAD_LOGIN = "wrong username or password"


def _utcnow() -> datetime:
    return datetime.now(UTC)


class UserService:
    """Everything about who a caller is. Tokens are random, kept as SHA-256 digests, expire
    after `token_ttl_s` and can be revoked; passwords are argon2 hashes made off the loop.

    A token checked in the last `token_cache_s` seconds is not looked up again: logout forgets
    it in this process at once, other processes refuse it within `token_cache_s`.
    """

    def __init__(
        self,
        ledger: Ledger,
        signup_points: int,
        token_ttl_s: int,
        *,
        passwords: Passwords | None = None,
        open_registration: bool = True,
        login_guard: LoginGuard | None = None,
        clock: Clock = _utcnow,
        token_cache_s: float = 5.0,
    ) -> None:
        self._ledger = ledger
        self._signup_points = signup_points
        self._ttl = timedelta(seconds=token_ttl_s)
        self._passwords = passwords or Passwords()
        self._open = open_registration
        self._guard = login_guard
        self._now = clock
        self._recent = _RecentTokens()
        self._recent_ttl = timedelta(seconds=token_cache_s)

    async def register(self, username: str, password: str) -> Session:
        """Self-service sign-up with the signup points; raises Forbidden when it is closed."""
        if not self._open:
            raise Forbidden("registration is closed")
        user = await self.create_user(username, password)
        return Session(await self._issue(user.id), user)

    async def create_user(
        self, username: str, password: str, role: Role = Role.USER, points: int | None = None
    ) -> User:
        """User, account and starting points (default: the signup points) in one transaction."""
        check_username(username)
        check_password(password)
        points = self._signup_points if points is None else points
        check_points(points)
        hashed = await asyncio.to_thread(self._passwords.hash, password)
        try:
            async with in_transaction():
                row = await UserRow.create(
                    username=username, username_key=username_key(username),
                    password_hash=hashed, role=role.value,
                )  # fmt: skip
                await AccountRow.create(user_id=row.id)
                if points:
                    key = signup_grant_key(UserId(row.id))
                    await self._ledger.grant(UserId(row.id), points, "signup", key=key)
        except IntegrityError:
            raise Conflict(f"the username {username!r} is taken") from None
        return _user(row)

    async def login(self, username: str, password: str, client: str | None = None) -> Session:
        """A new token for the right password; one message for every wrong answer."""
        if self._guard is not None:
            await self._guard(username, client)
        if (
            len(password) > PASSWORD_MAX
            or len(username) > USERNAME_MAX
            or not username.isprintable()
        ):
            raise Unauthenticated(_BAD_LOGIN)  # no account has one: spend no hashing on it
        row = await UserRow.get_or_none(username_key=username_key(username))
        stored = row.password_hash if row else None
        if not await asyncio.to_thread(self._passwords.verify, stored, password) or row is None:
            raise Unauthenticated(_BAD_LOGIN)
        if self._passwords.needs_rehash(row.password_hash):
            new_hash = await asyncio.to_thread(self._passwords.hash, password)
            await UserRow.filter(id=row.id).update(password_hash=new_hash)
        return Session(await self._issue(UserId(row.id)), _user(row))

    async def logout(self, token: str) -> None:
        """Revoke the token; revoking an unknown or revoked one is harmless."""
        digest = token_digest(token)
        self._recent.forget(digest)
        await TokenRow.filter(digest=digest, revoked_at=None).update(revoked_at=self._now())

    async def authenticate(self, token: str) -> Principal:
        """The caller behind a live token; Unauthenticated if unknown, expired or revoked."""
        digest, now = token_digest(token), self._now()
        principal = self._recent.get(digest, now)
        if principal is not None:
            return principal
        rows = await sql.fetch(_LIVE_TOKEN, digest, now)
        if not rows:
            raise Unauthenticated("the token is unknown, expired or revoked")
        row = rows[0]
        principal = Principal(UserId(row["id"]), row["username"], Role(row["role"]))
        until = min(now + self._recent_ttl, _datetime(row["expires_at"]))
        self._recent.put(digest, principal, until)
        return principal

    async def get(self, user_id: UserId) -> User:
        row = await UserRow.get_or_none(id=user_id)
        if row is None:
            raise NotFound(f"no user {user_id}")
        return _user(row)

    async def find(self, username: str) -> User | None:
        row = await UserRow.get_or_none(username_key=username_key(username))
        return _user(row) if row else None

    async def grant(
        self, principal: Principal, user_id: UserId, amount: int, reason: str
    ) -> Balance:
        """An admin's grant (negative: take back) to any user."""
        if not principal.is_admin:
            raise Forbidden("only admins grant points")
        await self.get(user_id)
        return await self._ledger.grant(user_id, amount, f"{reason} (by {principal.username})")

    async def _issue(self, user_id: UserId) -> str:
        token = new_token()
        await TokenRow.create(
            digest=token_digest(token), user_id=user_id, expires_at=self._now() + self._ttl
        )
        return token


# Every request of a user not seen in the last `token_cache_s` seconds looks its token up: raw
# SQL (`store.sql`), a fraction of what the ORM's query with its join costs.
_LIVE_TOKEN = sql.Statement(
    "SELECT u.id, u.username, u.role, t.expires_at FROM access_tokens t"
    " JOIN users u ON u.id = t.user_id"
    " WHERE t.digest = ? AND t.revoked_at IS NULL AND t.expires_at > ?"
)


def _datetime(value: datetime | str) -> datetime:
    """A datetime column as raw SQL reads it: SQLite hands back its ISO text."""
    return aware(datetime.fromisoformat(value) if isinstance(value, str) else value)


class _RecentTokens:
    """Token digest → principal, each until a given time; the oldest go first when full."""

    def __init__(self, size: int = 10_000) -> None:
        self._size = size
        self._entries: dict[str, tuple[Principal, datetime]] = {}

    def get(self, digest: str, now: datetime) -> Principal | None:
        entry = self._entries.get(digest)
        if entry is None:
            return None
        if now < entry[1]:
            return entry[0]
        del self._entries[digest]
        return None

    def put(self, digest: str, principal: Principal, until: datetime) -> None:
        if len(self._entries) >= self._size:
            del self._entries[next(iter(self._entries))]
        self._entries[digest] = (principal, until)

    def forget(self, digest: str) -> None:
        self._entries.pop(digest, None)


def _user(row: UserRow) -> User:
    return User(
        id=UserId(row.id),
        username=row.username,
        role=Role(row.role),
        created_at=aware(row.created_at),
    )
