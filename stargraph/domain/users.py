"""Users: the account holder as the domain sees it, and the rules for names and passwords."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime
from typing import NamedTuple

from stargraph.domain.errors import BadUserInput
from stargraph.domain.types import Principal, Role, UserId

USERNAME_MIN, USERNAME_MAX = 3, 32
PASSWORD_MIN, PASSWORD_MAX = 8, 128
_USERNAME = re.compile(r"[A-Za-z0-9_.-]+")


@dataclass(frozen=True, slots=True)
class User:
    id: UserId
    username: str
    role: Role
    created_at: datetime

    @property
    def principal(self) -> Principal:
        return Principal(user_id=self.id, username=self.username, role=self.role)


class Session(NamedTuple):
    """A fresh bearer token (shown once) and its user; unpacks as `token, user`."""

    token: str
    user: User


def check_username(username: str) -> None:
    """3–32 characters of letters, digits, `_`, `.` and `-`."""
    if not USERNAME_MIN <= len(username) <= USERNAME_MAX:
        raise BadUserInput(
            f"username must be {USERNAME_MIN} to {USERNAME_MAX} characters", field="username"
        )
    if not _USERNAME.fullmatch(username):
        raise BadUserInput(
            "username may contain only letters, digits, '_', '.' and '-'", field="username"
        )


def check_password(password: str) -> None:
    """8–128 characters; anything else is the user's choice."""
    if not PASSWORD_MIN <= len(password) <= PASSWORD_MAX:
        raise BadUserInput(
            f"password must be {PASSWORD_MIN} to {PASSWORD_MAX} characters", field="password"
        )


def username_key(username: str) -> str:
    """Names are unique regardless of case: `Alice` and `alice` are the same account."""
    return username.lower()


def signup_grant_key(user_id: UserId) -> str:
    """The ledger key that makes the signup bonus a one-time grant."""
    return f"signup:{user_id}"


def check_points(points: int) -> None:
    if points < 0:
        raise BadUserInput("starting points cannot be negative", field="points")
