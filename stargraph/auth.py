"""Secrets: argon2 password hashes and opaque bearer tokens stored only as SHA-256 digests."""

from __future__ import annotations

import hashlib
import secrets

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError


class Passwords:
    """argon2id hashing; the defaults are argon2-cffi's (RFC 9106 low-memory profile).

    Hashing takes tens of milliseconds on purpose: callers on an event loop run it in a thread.
    Tests may pass smaller costs; stored hashes carry their own parameters, so any instance
    verifies any hash and `needs_rehash` tells when to upgrade one.
    """

    def __init__(self, time_cost: int | None = None, memory_cost: int | None = None,
                 parallelism: int | None = None) -> None:  # fmt: skip
        default = PasswordHasher()
        self._hasher = PasswordHasher(
            time_cost=default.time_cost if time_cost is None else time_cost,
            memory_cost=default.memory_cost if memory_cost is None else memory_cost,
            parallelism=default.parallelism if parallelism is None else parallelism,
        )
        self._dummy = self._hasher.hash(secrets.token_urlsafe(16))

    def hash(self, password: str) -> str:
        return self._hasher.hash(password)

    def verify(self, stored: str | None, password: str) -> bool:
        """Whether `password` matches; with no stored hash it spends the same time and fails."""
        try:
            return self._hasher.verify(stored or self._dummy, password) and stored is not None
        except (VerificationError, InvalidHashError):
            return False

    def needs_rehash(self, stored: str) -> bool:
        return self._hasher.check_needs_rehash(stored)


def new_token() -> str:
    """A bearer token: 32 random bytes, URL-safe text. Shown to the user once, never stored."""
    return secrets.token_urlsafe(32)


def token_digest(token: str) -> str:
    """What the database keeps of a token: its SHA-256, hex."""
    return hashlib.sha256(token.encode("utf-8")).hexdigest()
