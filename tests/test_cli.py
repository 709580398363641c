"""The operator's command line, run as a real subprocess against a temporary SQLite database."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from stargraph.cli import COMMANDS, build_parser
from stargraph.domain.ledger import Balance
from stargraph.domain.types import UserId
from stargraph.store.db import close_db, init_db
from stargraph.store.ledger import TortoiseLedger
from stargraph.store.models import UserRow


def stargraph(
    tmp_path: Path, *args: str, stdin: str = "", **env: str
) -> subprocess.CompletedProcess[str]:
    """Run `python -m stargraph ARGS` in tmp_path (no stray .env) with only our settings."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith("STARGRAPH_")}
    clean["STARGRAPH_DATABASE_URL"] = f"sqlite://{tmp_path / 'cli.db'}"
    clean.update(env)
    return subprocess.run(
        [sys.executable, "-m", "stargraph", *args],
        cwd=tmp_path, env=clean, input=stdin, capture_output=True, text=True, timeout=60,
    )  # fmt: skip


async def balance_of(tmp_path: Path, name: str) -> tuple[str, Balance]:
    await init_db(f"sqlite://{tmp_path / 'cli.db'}")
    try:
        user = await UserRow.get(username=name)
        return user.role, await TortoiseLedger().balance(UserId(user.id))
    finally:
        await close_db()


def test_migrate_creates_the_schema_once(tmp_path: Path) -> None:
    first = stargraph(tmp_path, "migrate")
    assert first.returncode == 0, first.stderr
    assert first.stdout.startswith("applied 0_")
    again = stargraph(tmp_path, "migrate")
    assert (again.returncode, again.stdout.strip()) == (0, "the database is up to date")


async def test_users_create_and_points_grant(tmp_path: Path) -> None:
    made = stargraph(tmp_path, "users", "create", "alice", "--password", "password1")
    assert made.returncode == 0, made.stderr
    assert "created user alice" in made.stdout and "100 points" in made.stdout
    admin = stargraph(tmp_path, "users", "create", "root", "--password", "password1", "--admin",
                      "--points", "0")  # fmt: skip
    assert admin.returncode == 0, admin.stderr
    granted = stargraph(tmp_path, "points", "grant", "alice", "25", "--reason", "launch gift")
    assert granted.returncode == 0, granted.stderr
    assert granted.stdout.strip() == "alice: available 125, frozen 0"
    taken = stargraph(tmp_path, "points", "grant", "ALICE", "-5", "--reason", "correction")
    assert taken.returncode == 0, taken.stderr
    assert await balance_of(tmp_path, "alice") == ("user", Balance(120, 0))
    assert await balance_of(tmp_path, "root") == ("admin", Balance(0, 0))


def test_the_password_can_come_from_stdin(tmp_path: Path) -> None:
    made = stargraph(tmp_path, "users", "create", "bob", stdin="from-stdin-pw\n")
    assert made.returncode == 0, made.stderr
    assert stargraph(tmp_path, "users", "create", "carol", stdin="short\n").returncode == 1


REFUSALS = [
    (("users", "create", "x", "--password", "password1"), "username must be 3 to 32 characters"),
    (("points", "grant", "nobody", "5", "--reason", "r"), "no user named 'nobody'"),
    (("points", "grant", "dave", "-500", "--reason", "r"), "not enough points: 100 available"),
    (("points", "grant", "dave", "0", "--reason", "r"), "amount must not be zero"),
    (("users", "create", "Dave", "--password", "password1"), "the username 'Dave' is taken"),
]


def test_refusals_exit_1_with_the_reason(tmp_path: Path) -> None:
    assert stargraph(tmp_path, "users", "create", "dave", "--password", "password1").returncode == 0
    for args, message in REFUSALS:
        refused = stargraph(tmp_path, *args)
        assert (refused.returncode, refused.stderr.strip()) == (1, f"error: {message}")


def test_a_bad_setting_stops_with_its_variable_named(tmp_path: Path) -> None:
    bad = stargraph(tmp_path, "migrate", STARGRAPH_SIGNUP_POINTS="lots")
    assert bad.returncode == 2
    assert "STARGRAPH_SIGNUP_POINTS" in bad.stderr
    assert not (tmp_path / "cli.db").exists()


def test_help_lists_every_command(tmp_path: Path) -> None:
    shown = stargraph(tmp_path, "--help")
    assert shown.returncode == 0
    for command in COMMANDS:
        assert command.words[0] in shown.stdout
    assert stargraph(tmp_path).returncode == 2


def test_only_the_chosen_command_loads_its_arguments() -> None:
    parser = build_parser(["migrate"])
    assert parser.parse_args(["migrate"]).command.words == ("migrate",)
    full = build_parser(["points", "grant"]).parse_args(
        ["points", "grant", "a", "-3", "--reason", "r"]
    )
    assert (full.name, full.amount, full.reason) == ("a", -3, "r")
