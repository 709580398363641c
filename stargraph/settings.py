"""The one settings object, read from `STARGRAPH_*` environment variables and `.env` once at start.

Inner objects never receive `Settings`; the composition root unpacks the plain values they need.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field, ValidationError, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from stargraph.http_client import Origin

PROJECT_ROOT = Path(__file__).resolve().parent.parent

CommaList = Annotated[list[str], NoDecode]


def _split_commas(value: object) -> object:
    if isinstance(value, str):
        return [part.strip() for part in value.split(",") if part.strip()]
    return value


def _http_urls(value: str | list[str]) -> str | list[str]:
    """An engine's address must be an http(s) URL with a host (ValueError names it)."""
    for url in [value] if isinstance(value, str) else value:
        Origin.parse(url)
    return value


class Settings(BaseSettings):
    """Every knob of a StarGraph process. Built once by the CLI or the test harness."""

    model_config = SettingsConfigDict(
        env_prefix="STARGRAPH_", env_file=".env", extra="ignore", frozen=True
    )

    # storage and brokers
    database_url: str = "sqlite://./stargraph.db"
    redis_url: str | None = None  # None: an in-process Redis (single process only)
    redis_prefix: str = Field(default="sg", pattern=r"^[A-Za-z0-9_.:-]{1,32}$")
    storage_dir: Path = Path("./data/images")
    workflows_dir: Path = PROJECT_ROOT / "workflows"

    # money
    price_per_image: int = Field(default=10, ge=0)
    signup_points: int = Field(default=100, ge=0)

    # engines
    comfyui_urls: CommaList = Field(default_factory=list)
    comfyui_max_inflight: int = Field(default=2, ge=1, le=64)
    default_model: str | None = None
    models: CommaList = Field(default_factory=list)  # offered before any backend answers
    samplers: CommaList = Field(default_factory=lambda: ["euler", "euler_ancestral", "dpmpp_2m"])
    schedulers: CommaList = Field(default_factory=lambda: ["normal", "karras", "simple"])
    job_timeout_s: float = Field(default=600, gt=0)
    dispatch_max_attempts: int = Field(default=5, ge=1)
    lease_s: float = Field(default=60, gt=0)

    # translation
    ollama_url: str = "http://127.0.0.1:11434"
    ollama_model: str = "qwen2.5:0.5b"
    ollama_timeout_s: float = Field(default=30, gt=0)
    translation_fallback: Literal["error", "passthrough"] = "error"

    # users and limits
    open_registration: bool = True
    token_ttl_s: int = Field(default=30 * 24 * 3600, gt=0)
    submits_per_minute: int = Field(default=30, ge=1)
    max_queued_per_user: int = Field(default=20, ge=1)
    login_attempts_per_minute: int = Field(default=10, ge=1)

    # API surface
    secret_key: str | None = None  # signs image links; set it when several API processes run
    image_url_ttl_s: int = Field(default=3600, gt=0)
    graphiql: bool = True
    introspection: bool = True
    allowed_origins: CommaList = Field(default_factory=list)
    max_query_depth: int = Field(default=12, ge=2)
    max_aliases: int = Field(default=30, ge=1)
    max_tokens: int = Field(default=2000, ge=50)
    max_page_size: int = Field(default=100, ge=1)
    max_body_bytes: int = Field(default=256 * 1024, ge=1024)
    max_ws_message_bytes: int = Field(default=64 * 1024, ge=1024)
    # permessage-deflate costs a zlib context per socket and a deflate per frame, for frames
    # of a few hundred bytes
    ws_compression: bool = False
    max_subscriptions_per_user: int = Field(default=20, ge=1)
    log_level: str = "INFO"

    # a separate worker process (`stargraph worker`): its own /metrics and /healthz, if set
    worker_metrics_port: int | None = Field(default=None, ge=1, le=65535)
    worker_metrics_host: str = "127.0.0.1"

    _split = field_validator(
        "comfyui_urls", "models", "samplers", "schedulers", "allowed_origins", mode="before"
    )(_split_commas)
    _engine_urls = field_validator("comfyui_urls", "ollama_url")(_http_urls)


class SettingsError(Exception):
    """A setting has a bad value; the message names the environment variable."""


def load_settings(**overrides: object) -> Settings:
    """Build and validate settings, turning pydantic's report into one message per variable."""
    try:
        return Settings(**overrides)  # type: ignore[arg-type]
    except ValidationError as exc:
        lines = []
        for err in exc.errors():
            name = "STARGRAPH_" + "_".join(str(p) for p in err["loc"][:1]).upper()
            lines.append(f"{name}: {err['msg']} (got {err.get('input')!r})")
        raise SettingsError("invalid configuration:\n  " + "\n  ".join(lines)) from None
