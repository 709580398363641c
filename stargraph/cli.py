"""The `stargraph` command line: one table of subcommands, each a function taking parsed args.

Adding a command is one `Command` line in `COMMANDS`: its words, a help line, and
"module:function" references to `run(args) -> int` and optionally `add_arguments(parser)`.
References are imported only when that command runs (or its `--help` is shown), so the
database tools start without loading the web stack.
"""

from __future__ import annotations

import argparse
import asyncio
import getpass
import importlib
import sys
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

from stargraph.domain.errors import StarGraphError
from stargraph.settings import Settings, SettingsError, load_settings

T = TypeVar("T")
Run = Callable[[argparse.Namespace], int]
AddArguments = Callable[[argparse.ArgumentParser], None]


@dataclass(frozen=True, slots=True)
class Command:
    words: tuple[str, ...]  # ("users", "create") is `stargraph users create`
    help: str
    run: str  # "module:function" -> Run
    add_arguments: str | None = None  # "module:function" -> AddArguments


COMMANDS: tuple[Command, ...] = (
    Command(
        ("serve",),
        "run the API and the worker in one process (--simulate: no GPU needed)",
        "stargraph.serve:run_serve",
        "stargraph.serve:add_serve_arguments",
    ),
    Command(
        ("api",),
        "run the API alone (run workers beside it)",
        "stargraph.serve:run_api",
        "stargraph.serve:add_api_arguments",
    ),
    Command(("schema",), "print the GraphQL schema (SDL)", "stargraph.serve:run_schema"),
    Command(
        ("worker",), "run the worker alone (dispatcher, listeners)", "stargraph.serve:run_worker"
    ),
    Command(
        ("comfyui-sim",),
        "run a simulated ComfyUI (no GPU) for demos and tests",
        "stargraph.comfy.simulator:run",
        "stargraph.comfy.simulator:add_arguments",
    ),
    Command(("migrate",), "apply the database migrations", "stargraph.cli:run_migrate"),
    Command(
        ("users", "create"),
        "create a user (or an admin) with starting points",
        "stargraph.cli:run_users_create",
        "stargraph.cli:add_users_create_arguments",
    ),
    Command(
        ("points", "grant"),
        "grant points to a user (a negative amount takes them back)",
        "stargraph.cli:run_points_grant",
        "stargraph.cli:add_points_grant_arguments",
    ),
    Command(
        ("makemigrations",),
        "developers: write migrations for model changes on every engine",
        "stargraph.cli:run_makemigrations",
        "stargraph.cli:add_makemigrations_arguments",
    ),
)


def main(argv: Sequence[str] | None = None) -> None:
    """Console script entry point."""
    sys.exit(run(sys.argv[1:] if argv is None else list(argv)))


def run(argv: list[str]) -> int:
    """Parse `argv`, run the chosen command, and turn expected failures into exit codes:
    2 for bad configuration or usage, 1 for a refused operation."""
    args = build_parser(argv).parse_args(argv)
    try:
        return int(_resolve(args.command.run)(args))
    except SettingsError as exc:
        print(exc, file=sys.stderr)
        return 2
    except StarGraphError as exc:
        print(f"error: {exc.message}", file=sys.stderr)
        return 1


def build_parser(argv: Sequence[str] = ()) -> argparse.ArgumentParser:
    """The full parser; only the command that `argv` names has its arguments loaded."""
    parser = argparse.ArgumentParser(prog="stargraph", description=__doc__.splitlines()[0])
    groups: dict[tuple[str, ...], Any] = {
        (): parser.add_subparsers(required=True, metavar="COMMAND")
    }
    for command in COMMANDS:
        sub = _subparsers(groups, command.words[:-1])
        leaf = sub.add_parser(command.words[-1], help=command.help, description=command.help)
        leaf.set_defaults(command=command)
        if command.add_arguments and tuple(argv[: len(command.words)]) == command.words:
            _resolve(command.add_arguments)(leaf)
    return parser


def _subparsers(groups: dict[tuple[str, ...], Any], words: tuple[str, ...]) -> Any:
    if words not in groups:
        parent = _subparsers(groups, words[:-1])
        group = parent.add_parser(words[-1], help=f"{words[-1]} commands")
        groups[words] = group.add_subparsers(required=True, metavar="COMMAND")
    return groups[words]


def _resolve(reference: str) -> Any:
    module, _, name = reference.partition(":")
    return getattr(importlib.import_module(module), name)


# ---------------------------------------------------------------- database commands


def _in_database(settings: Settings, work: Callable[[], Awaitable[T]]) -> T:
    """Open the configured database (migrating SQLite, as `serve` does), run, close."""
    from stargraph.store.db import close_db, engine_of, init_db, migrate

    async def go() -> T:
        await init_db(settings.database_url)
        try:
            if engine_of(settings.database_url) == "sqlite":
                await migrate(settings.database_url)
            return await work()
        finally:
            await close_db()

    return asyncio.run(go())


def _user_service(settings: Settings) -> Any:
    from stargraph.store.ledger import TortoiseLedger
    from stargraph.store.users import UserService

    return UserService(TortoiseLedger(), settings.signup_points, settings.token_ttl_s)


def run_migrate(args: argparse.Namespace) -> int:
    """`stargraph migrate`: bring the configured database to the latest schema."""
    from stargraph.store.db import migrate

    url = load_settings().database_url
    applied = asyncio.run(migrate(url))
    for version in applied:
        print(f"applied {version}")
    if not applied:
        print("the database is up to date")
    return 0


def add_users_create_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("name", help="3-32 letters, digits, '_', '.' or '-'")
    parser.add_argument("--password", help="8-128 characters (default: read one line from stdin)")
    parser.add_argument("--admin", action="store_true", help="give the user the admin role")
    parser.add_argument("--points", type=int, help="starting points (default: the signup points)")


def run_users_create(args: argparse.Namespace) -> int:
    """`stargraph users create NAME`: a user, their account and starting points."""
    from stargraph.domain.types import Role

    settings = load_settings()
    password = args.password if args.password is not None else _read_password()
    role = Role.ADMIN if args.admin else Role.USER

    async def create() -> str:
        users = _user_service(settings)
        user = await users.create_user(args.name, password, role=role, points=args.points)
        points = settings.signup_points if args.points is None else args.points
        return f"created {role.value} {user.username} (id {user.id}) with {points} points"

    print(_in_database(settings, create))
    return 0


def _read_password() -> str:
    if sys.stdin.isatty():
        return getpass.getpass("password: ")
    return sys.stdin.readline().rstrip("\n")


def add_points_grant_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("name", help="the user's name")
    parser.add_argument("amount", type=int, help="points to add; negative to take back")
    parser.add_argument("--reason", required=True, help="why, kept in the user's ledger")


def run_points_grant(args: argparse.Namespace) -> int:
    """`stargraph points grant NAME AMOUNT --reason R`."""
    from stargraph.domain.errors import NotFound
    from stargraph.store.ledger import TortoiseLedger

    settings = load_settings()

    async def grant() -> str:
        user = await _user_service(settings).find(args.name)
        if user is None:
            raise NotFound(f"no user named {args.name!r}")
        balance = await TortoiseLedger().grant(user.id, args.amount, f"{args.reason} (by operator)")
        return f"{user.username}: available {balance.available}, frozen {balance.frozen}"

    print(_in_database(settings, grant))
    return 0


def add_makemigrations_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("name", help="a short name for the change, e.g. add_job_note")
    parser.add_argument("--postgres", default="postgres://postgres@127.0.0.1:5432/",
                        help="a PostgreSQL server to build the migration on")  # fmt: skip
    parser.add_argument("--mysql", default="mysql://root:@127.0.0.1:3306/",
                        help="a MariaDB/MySQL server to build the migration on")  # fmt: skip


def run_makemigrations(args: argparse.Namespace) -> int:
    """`stargraph makemigrations NAME`: one new migration per engine from the model changes."""
    from stargraph.store.migrations import make_migrations

    servers = {"postgres": args.postgres, "mysql": args.mysql}
    written = asyncio.run(make_migrations(args.name, servers))
    for engine, version in written.items():
        print(f"{engine}: wrote {version}")
    if not written:
        print("no model changes")
    return 0
