"""The `serve`, `api` and `schema` commands: run the HTTP service, or print the SDL.

`serve` is the API and the worker in one process (the default way to run StarGraph);
`api` is the API alone, for deployments that run workers apart. Both stop gracefully on
SIGTERM or SIGINT: uvicorn stops accepting, lets requests under way finish, closes
WebSockets, then the lifespan stops the worker (sends and endings under way complete) and
closes the database and Redis.
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import logging
import sys
from typing import Any

import uvicorn

from stargraph.bootstrap import SimulateOptions
from stargraph.runtime import configure_logging
from stargraph.settings import Settings, SettingsError, load_settings

log = logging.getLogger("stargraph")

GRACEFUL_SHUTDOWN_S = 15


def add_api_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on")
    parser.add_argument("--port", type=int, default=8000, help="port to listen on")


def add_serve_arguments(parser: argparse.ArgumentParser) -> None:
    add_api_arguments(parser)
    parser.add_argument(
        "--simulate",
        type=int,
        nargs="?",
        const=1,
        default=None,
        metavar="N",
        help="start N simulated ComfyUI backends in this process (default 1; no GPU needed)",
    )
    parser.add_argument(
        "--sim-step-time",
        type=float,
        default=0.05,
        metavar="SECONDS",
        help="seconds per sampler step of the simulated backends (default 0.05)",
    )


def _settings() -> Settings | None:
    try:
        return load_settings()
    except SettingsError as exc:
        print(exc, file=sys.stderr)
        return None


# Young collections only after this many new objects (700 by default): a served event's
# short-lived objects are then gone before one runs, fewer get promoted, and the full
# collections that stall the event loop (100-250 ms at 1 000 subscribers) come rarely: none
# in 10-second windows of bench/fanout.py, against one every 2-4 s before.
GC_YOUNG_THRESHOLD = 50_000


def freeze_startup_heap() -> None:
    """Hide what start-up made (modules, classes, the schema) from the garbage collector and
    collect young objects less often: a full collection then walks only what serving made,
    and comes rarely. Call it once, just before serving."""
    gc.collect()
    gc.freeze()
    _, older, oldest = gc.get_threshold()
    gc.set_threshold(GC_YOUNG_THRESHOLD, older, oldest)


def server_options(settings: Settings) -> dict[str, Any]:
    """uvicorn's options that come from the settings: the ones every served API uses."""
    return {
        "ws_max_size": settings.max_ws_message_bytes,
        "ws_per_message_deflate": settings.ws_compression,
        "timeout_graceful_shutdown": GRACEFUL_SHUTDOWN_S,
    }


def _run(settings: Settings, args: argparse.Namespace, *, worker: bool) -> int:
    from stargraph.app import create_app
    from stargraph.routes import HideLinkSignatures

    logging.getLogger("uvicorn.access").addFilter(HideLinkSignatures())

    simulate = None
    if worker and args.simulate is not None:
        simulate = SimulateOptions(backends=args.simulate, step_time_s=args.sim_step_time)
    app = create_app(settings, run_worker=worker, simulate=simulate, auto_migrate=worker)
    config = uvicorn.Config(
        app,
        host=args.host,
        port=args.port,
        lifespan="on",
        log_config=None,
        **server_options(settings),
    )
    log.info("StarGraph on http://%s:%d (GraphiQL at /graphql)", args.host, args.port)
    freeze_startup_heap()
    # Ctrl+C: uvicorn shuts down gracefully, then raises it again
    with contextlib.suppress(KeyboardInterrupt):
        uvicorn.Server(config).run()
    return 0


def run_serve(args: argparse.Namespace) -> int:
    """`stargraph serve`: the API and the worker in one process."""
    settings = _settings()
    if settings is None:
        return 2
    configure_logging(settings.log_level)
    return _run(settings, args, worker=True)


def run_api(args: argparse.Namespace) -> int:
    """`stargraph api`: the API alone (run `stargraph worker` beside it)."""
    settings = _settings()
    if settings is None:
        return 2
    configure_logging(settings.log_level)
    return _run(settings, args, worker=False)


def run_worker(args: argparse.Namespace) -> int:
    """`stargraph worker`: the engine alone; SIGTERM/SIGINT stop it gracefully."""
    from stargraph.worker import main

    freeze_startup_heap()
    main()
    return 0


def run_schema(args: argparse.Namespace) -> int:
    """`stargraph schema`: print the GraphQL SDL (as committed in schema.graphql)."""
    from stargraph.schema.build import sdl

    sys.stdout.write(sdl())
    return 0
