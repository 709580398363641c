"""Endpoints beside GraphQL: signed image downloads, liveness, readiness and metrics."""

from __future__ import annotations

import asyncio
import logging
import re
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, Response
from starlette.routing import Route

from stargraph.domain.errors import Forbidden
from stargraph.domain.gallery import ImageStore, LinkSigner
from stargraph.domain.types import ImageId
from stargraph.metrics import CONTENT_TYPE

log = logging.getLogger("stargraph.api")

Check = Callable[[], Awaitable[None]]  # raises when the dependency is not usable

_LINK_SIGNATURE = re.compile(r"([?&]s=)[^&\s\"]+")


class HideLinkSignatures(logging.Filter):
    """An access line carries the request's query string, and a signed image link's
    signature (`s=`) gives whoever reads it the image until the link expires: it is
    written as `s=…`."""

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.args, tuple):
            record.args = tuple(
                _LINK_SIGNATURE.sub(r"\1…", arg) if isinstance(arg, str) else arg
                for arg in record.args
            )
        return True


class FileLocator(Protocol):
    def resolve(self, path: str) -> Path:
        """The absolute path of a stored file; ValueError if it would leave the storage root."""
        ...


@dataclass(frozen=True, slots=True)
class RouteDeps:
    """What these endpoints need; the app puts it on `app.state.routes` in its lifespan."""

    signer: LinkSigner
    images: ImageStore
    files: FileLocator
    readiness: dict[str, Check]  # name → check (database, redis, backends)
    scrape: Callable[[], Awaitable[bytes]]
    clock: Callable[[], float] = field(default=time.time)


def _deps(request: Request) -> RouteDeps:
    deps: RouteDeps = request.app.state.routes
    return deps


def _forbidden(reason: str) -> Response:
    return JSONResponse({"error": reason}, status_code=403)


async def download_image(request: Request) -> Response:
    """GET /images/{id}?e=<expiry>&s=<signature>: the PNG, for anyone holding a valid link."""
    deps = _deps(request)
    raw_id, expiry, signature = (
        request.path_params["image_id"],
        request.query_params.get("e", ""),
        request.query_params.get("s", ""),
    )
    if not expiry.isascii() or not expiry.isdigit() or len(expiry) > 12:
        return _forbidden("invalid image link")
    try:
        deps.signer.verify(ImageId(raw_id), int(expiry), signature, deps.clock())
        image = await deps.images.get(ImageId(str(uuid.UUID(raw_id))))
        path = deps.files.resolve(image.path) if image else None
    except Forbidden as exc:
        return _forbidden(exc.message)
    except ValueError:
        path = None
    if path is None or not path.is_file():
        return JSONResponse({"error": "image not found"}, status_code=404)
    max_age = max(0, int(expiry) - int(deps.clock()))
    return FileResponse(
        path, media_type="image/png", headers={"Cache-Control": f"private, max-age={max_age}"}
    )


async def healthz(request: Request) -> Response:
    return JSONResponse({"status": "ok"})


async def _run_check(name: str, check: Check) -> tuple[str, str]:
    try:
        await asyncio.wait_for(check(), timeout=3.0)
    except Exception as exc:  # a readiness probe reports every failure, whatever it is
        log.info("readiness check %s failed: %s", name, exc)
        return name, f"failing: {type(exc).__name__}: {exc}"[:200]
    return name, "ok"


async def readyz(request: Request) -> Response:
    """200 when the database, Redis and at least one backend are usable; 503 otherwise."""
    checks = _deps(request).readiness
    results = dict(await asyncio.gather(*(_run_check(n, c) for n, c in checks.items())))
    ready = all(v == "ok" for v in results.values())
    return JSONResponse(
        {"status": "ready" if ready else "not ready", "checks": results},
        status_code=200 if ready else 503,
    )


async def metrics(request: Request) -> Response:
    return Response(await _deps(request).scrape(), media_type=CONTENT_TYPE)


ROUTES = [
    Route("/images/{image_id}", download_image, methods=["GET", "HEAD"]),
    Route("/healthz", healthz, methods=["GET"]),
    Route("/readyz", readyz, methods=["GET"]),
    Route("/metrics", metrics, methods=["GET"]),
]
