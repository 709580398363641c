"""Tortoise models: tables only. Rows are converted to domain values in the store modules.

Each table's SQL comment is its `table_description` (plain words: no quotes or backslashes,
which aerich's MySQL DDL does not escape); docstrings stay free to change. After any change
here run `stargraph makemigrations NAME` (all three engines) and commit the files it writes.
"""

from __future__ import annotations

from typing import Any

from tortoise import fields
from tortoise.models import Model


class UserRow(Model):
    """A login. `username_key` (the name in lower case) keeps names unique case-insensitively
    on every engine, whatever the column collation."""

    id = fields.IntField(primary_key=True)
    username = fields.CharField(max_length=64)
    username_key = fields.CharField(max_length=64, unique=True)
    password_hash = fields.CharField(max_length=255)
    role = fields.CharField(max_length=16, default="user")
    created_at = fields.DatetimeField(auto_now_add=True)

    class Meta:
        table = "users"
        table_description = "logins"


class TokenRow(Model):
    """An access token, stored as its SHA-256 digest; the raw token is shown once."""

    id = fields.IntField(primary_key=True)
    digest = fields.CharField(max_length=64, unique=True)
    user: fields.ForeignKeyRelation[UserRow] = fields.ForeignKeyField(
        "models.UserRow", related_name="tokens", on_delete=fields.CASCADE
    )
    created_at = fields.DatetimeField(auto_now_add=True)
    expires_at = fields.DatetimeField()
    revoked_at = fields.DatetimeField(null=True)

    class Meta:
        table = "access_tokens"
        table_description = "access tokens stored as SHA-256 digests"


class AccountRow(Model):
    """A user's points: `available` can be spent, `frozen` is held for unfinished jobs.
    `open_holds` counts the user's unsettled holds (one per unfinished job), so that the cap
    on unfinished jobs is a condition on this row, which every engine re-checks on the row's
    newest version once it holds its lock."""

    user: fields.OneToOneRelation[UserRow] = fields.OneToOneField(
        "models.UserRow", related_name="account", on_delete=fields.CASCADE, primary_key=True
    )
    available = fields.BigIntField(default=0)
    frozen = fields.BigIntField(default=0)
    open_holds = fields.IntField(default=0)

    class Meta:
        table = "accounts"
        table_description = "points per user: available and frozen"


class LedgerEntryRow(Model):
    """Append-only record of one move of points, with the balances right after it.

    `move_key` makes each move idempotent: "hold:<job>", "capture:<job>", "release:<job>",
    or the caller's key for a grant.
    """

    id = fields.BigIntField(primary_key=True)
    user: fields.ForeignKeyRelation[UserRow] = fields.ForeignKeyField(
        "models.UserRow", related_name="ledger", on_delete=fields.CASCADE
    )
    kind = fields.CharField(max_length=16)  # grant | hold | capture | release
    amount = fields.BigIntField()
    available_after = fields.BigIntField()
    frozen_after = fields.BigIntField()
    job_id = fields.CharField(max_length=36, null=True, db_index=True)
    move_key = fields.CharField(max_length=100, unique=True)
    reason = fields.CharField(max_length=255, null=True)
    created_at = fields.DatetimeField(auto_now_add=True)

    class Meta:
        table = "ledger_entries"
        table_description = "append-only moves of points with the balances after each"
        indexes = (("user", "id"),)


class HoldRow(Model):
    """The one hold of a job; `settled` flips exactly once (capture and/or release)."""

    job_id = fields.CharField(max_length=36, primary_key=True)
    user: fields.ForeignKeyRelation[UserRow] = fields.ForeignKeyField(
        "models.UserRow", related_name="holds", on_delete=fields.CASCADE
    )
    amount = fields.BigIntField()
    captured = fields.BigIntField(null=True)
    settled = fields.BooleanField(default=False)
    created_at = fields.DatetimeField(auto_now_add=True)
    settled_at = fields.DatetimeField(null=True)

    class Meta:
        table = "holds"
        table_description = "the one hold of each job and its single settlement"


class JobRow(Model):
    id = fields.CharField(max_length=36, primary_key=True)  # lowercase UUID = ComfyUI prompt id
    user: fields.ForeignKeyRelation[UserRow] = fields.ForeignKeyField(
        "models.UserRow", related_name="jobs", on_delete=fields.CASCADE
    )
    status = fields.CharField(max_length=16, db_index=True)
    workflow = fields.CharField(max_length=64)
    prompt = fields.TextField()
    negative_prompt = fields.TextField()
    translated_prompt = fields.TextField(null=True)
    translation = fields.CharField(max_length=16)
    positive_prompt = fields.TextField()
    effective_negative_prompt = fields.TextField()
    count = fields.IntField()
    width = fields.IntField()
    height = fields.IntField()
    steps = fields.IntField()
    cfg = fields.FloatField()
    sampler = fields.CharField(max_length=64)
    scheduler = fields.CharField(max_length=64)
    model = fields.CharField(max_length=255)
    seed = fields.BigIntField()
    priority = fields.IntField()
    front = fields.BooleanField(default=False)  # moved to the very front by an admin
    cost = fields.BigIntField()
    charged = fields.BigIntField(null=True)
    graph: fields.JSONField[dict[str, Any]] = fields.JSONField()
    idempotency_key = fields.CharField(max_length=128, null=True)
    backend = fields.CharField(max_length=255, null=True)
    attempts = fields.IntField(default=0)
    progress_step = fields.IntField(null=True)
    progress_max = fields.IntField(null=True)
    error_code = fields.CharField(max_length=64, null=True)
    error_message = fields.TextField(null=True)
    created_at = fields.DatetimeField(auto_now_add=True, db_index=True)
    dispatched_at = fields.DatetimeField(null=True)
    started_at = fields.DatetimeField(null=True)
    finished_at = fields.DatetimeField(null=True)

    class Meta:
        table = "jobs"
        table_description = "image generation jobs"
        unique_together = (("user", "idempotency_key"),)
        # The submit path counts a user's unfinished jobs: without this index it reads every
        # job the user ever had.
        indexes = (("user", "created_at"), ("user", "status"))


class ImageRow(Model):
    id = fields.CharField(max_length=36, primary_key=True)
    job: fields.ForeignKeyRelation[JobRow] = fields.ForeignKeyField(
        "models.JobRow", related_name="images", on_delete=fields.CASCADE
    )
    user: fields.ForeignKeyRelation[UserRow] = fields.ForeignKeyField(
        "models.UserRow", related_name="images", on_delete=fields.CASCADE
    )
    index = fields.IntField()  # position in the job's batch
    path = fields.CharField(max_length=255)  # relative to the storage dir
    width = fields.IntField()
    height = fields.IntField()
    seed = fields.BigIntField()
    created_at = fields.DatetimeField(auto_now_add=True, db_index=True)

    class Meta:
        table = "images"
        table_description = "generated images"
        unique_together = (("job", "index"),)
        indexes = (("user", "created_at"),)
