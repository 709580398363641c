"""Turning GraphQL IDs into domain ids. Malformed ids are simply not found."""

from __future__ import annotations

import uuid

from stargraph.domain.errors import NotFound
from stargraph.domain.types import ImageId, JobId, UserId


def _uuid(value: str, what: str) -> str:
    try:
        return str(uuid.UUID(value))
    except ValueError:
        raise NotFound(f"{what} not found") from None


def job_id(value: str) -> JobId:
    return JobId(_uuid(value, "job"))


def image_id(value: str) -> ImageId:
    return ImageId(_uuid(value, "image"))


def user_id(value: str) -> UserId:
    if not value.isascii() or not value.isdigit() or len(value) > 18:
        raise NotFound("user not found")
    return UserId(int(value))
