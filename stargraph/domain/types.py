"""Identifiers and small values shared by the whole domain."""

from __future__ import annotations

import enum
import random
import uuid
from dataclasses import dataclass
from typing import NewType

JobId = NewType("JobId", str)  # lowercase UUID; also the ComfyUI prompt id
UserId = NewType("UserId", int)
ImageId = NewType("ImageId", str)  # lowercase UUID
BackendId = NewType("BackendId", str)  # the backend's base URL


def new_job_id() -> JobId:
    """A fresh lowercase UUID4 string, usable as a ComfyUI prompt id."""
    return JobId(str(uuid.uuid4()))


def unique_hex() -> str:
    """16 hex digits from 64 random bits: unique, not secret (no system call for
    randomness; Python reseeds `random` in a forked child). For request ids and the like."""
    return f"{random.getrandbits(64):016x}"


def new_image_id() -> ImageId:
    return ImageId(str(uuid.uuid4()))


class Role(enum.StrEnum):
    USER = "user"
    ADMIN = "admin"


class Priority(enum.IntEnum):
    """Priority bands; a lower value is dispatched first."""

    URGENT = 0
    HIGH = 1
    NORMAL = 2
    LOW = 3


@dataclass(frozen=True, slots=True)
class Principal:
    """The authenticated caller of a use case."""

    user_id: UserId
    username: str
    role: Role

    @property
    def is_admin(self) -> bool:
        return self.role is Role.ADMIN
