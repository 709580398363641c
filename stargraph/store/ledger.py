"""Tortoise implementation of the domain's Ledger.

Each method is one transaction (a savepoint when the caller already holds one, so a use case
can hold points and write its job row atomically). `hold_new_jobs` takes the holds of new
jobs, many users' at once (the submissions that arrive together), each with its job's row and,
given a cap, only while the user has fewer than so many open holds: on PostgreSQL the
freezes, the holds, their entries and the jobs' rows are one statement
(data-modifying CTEs over arrays, atomic by themselves), one round trip instead of BEGIN, four
statements and COMMIT; elsewhere one transaction (on SQLite one freeze statement for all of
them). The hold's statements are raw SQL
(`store.sql`): they run on every submission. Exactly-once comes from the database:
`ledger_entries.move_key` is unique, a hold is the primary key of `holds`, and settling flips
`holds.settled` with a conditional UPDATE that only one caller can win. The cap is a
condition on the account row (`accounts.open_holds`, raised by every hold and lowered by its
settlement), so it holds across processes: each engine checks a conditional UPDATE's WHERE
on the row's newest version once it has the row's lock (a count of other rows in the same
statement would see only the statement's snapshot on PostgreSQL). Every conditional
UPDATE changes the row it matches, so the row count means the same on MariaDB (rows changed)
as on PostgreSQL and SQLite (rows matched). Writes come first in each transaction, so SQLite
takes its write lock before reading anything.
"""

from __future__ import annotations

import functools
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import cache
from typing import Any
from uuid import uuid4

from tortoise.exceptions import IntegrityError
from tortoise.expressions import F
from tortoise.transactions import in_transaction

from stargraph.domain.errors import BadUserInput, Conflict, InsufficientPoints, NotFound
from stargraph.domain.ledger import (
    AuditFinding,
    Balance,
    EntryKind,
    HoldState,
    LedgerEntry,
    Settlement,
    audit_user,
    capture_key,
    check_grant,
    check_hold,
    clamp_capture,
    hold_key,
    release_key,
    settlement_of,
)
from stargraph.domain.types import JobId, UserId
from stargraph.store import sql
from stargraph.store.convert import aware
from stargraph.store.models import AccountRow, HoldRow, LedgerEntryRow
from stargraph.store.sql import Statement

JobRowValues = tuple[str, Sequence[str], Sequence[object]]  # table, columns, values


@dataclass(frozen=True, slots=True)
class NewJobHold:
    """A hold for a job never held before, and the job's row to insert with it."""

    user_id: UserId
    job_id: JobId
    amount: int
    row: JobRowValues


class TortoiseLedger:
    """Points in SQL: `accounts` holds the balances, `ledger_entries` every move."""

    async def balance(self, user_id: UserId) -> Balance:
        return await _read_balance(user_id)

    async def grant(
        self, user_id: UserId, amount: int, reason: str, key: str | None = None
    ) -> Balance:
        """Add (negative: take back) available points; a repeated key returns the first result."""
        check_grant(amount, reason)
        move_key = key or f"grant:{uuid4().hex}"
        try:
            async with in_transaction():
                if not await _add_available(user_id, amount):
                    return await _first_result(move_key, user_id) or await _refuse(user_id, amount)
                after = await _read_balance(user_id)
                await _append(user_id, EntryKind.GRANT, amount, move_key, after, reason=reason)
                return after
        except IntegrityError:
            return await _repeated(move_key, user_id)

    async def hold(self, user_id: UserId, job_id: JobId, amount: int) -> Balance:
        """Freeze `amount` for the job; a repeat returns the first hold's balance."""
        check_hold(amount)
        key = hold_key(job_id)
        try:
            async with in_transaction():
                if not await _hold_rows(user_id, job_id, amount):
                    return await _first_result(key, user_id) or await _refuse(user_id)
                return await _read_balance(user_id)
        except IntegrityError:
            return await _repeated(key, user_id)

    async def hold_new_jobs(
        self, holds: Sequence[NewJobHold], max_open: int | None = None
    ) -> list[bool]:
        """`hold` for jobs never held before, of distinct users, each with the INSERT of its
        `row` (table, columns, values: the job's row), all rows in one table; no balance read
        back (the submit path). One statement on PostgreSQL; elsewhere one transaction, the
        freezes (one statement on SQLite), then the rows in one call per table. Per hold,
        whether it was taken: a refused one (no account, not enough points, or the user
        already at `max_open` open holds) wrote nothing. Raises IntegrityError, with nothing
        written, when any row clashes (a repeated hold, or a clash in a row)."""
        if len({hold.user_id for hold in holds}) != len(holds):
            raise ValueError("one hold per user in a batch: each freeze must see its own row")
        if len({(hold.row[0], tuple(hold.row[1])) for hold in holds}) > 1:
            raise ValueError("one table and one set of columns for every row of a batch")
        for hold in holds:
            check_hold(hold.amount)
        dialect = sql.dialect()
        if dialect == "postgres":
            return await _hold_many_in_one_statement(holds, max_open)
        if dialect == "sqlite" and not sql.in_transaction():
            work = functools.partial(_hold_many_at_once, holds, max_open)
            return await sql.sqlite_transaction(work)
        async with in_transaction():
            taken = await _freeze_many([(hold.user_id, hold.amount) for hold in holds], max_open)
            for statement, rows in _hold_inserts(holds, taken):
                await sql.execute_many(statement, rows)
        return taken

    async def refuse_hold(self, user_id: UserId, amount: int) -> None:
        """After a refused hold of `amount`: raise NotFound without an account, or
        InsufficientPoints when fewer points are available; return when the account has them
        now (the refusal had another reason, or the balance moved since)."""
        balance = await _read_balance(user_id)
        if balance.available < amount:
            raise InsufficientPoints(f"not enough points: {balance.available} available")

    async def settle(self, job_id: JobId, capture: int) -> Settlement:
        """Capture up to the hold, release the rest; once per job, repeats return the first."""
        async with in_transaction():
            won = await HoldRow.filter(job_id=job_id, settled=False).update(
                settled=True, settled_at=datetime.now(UTC)
            )
            row = await HoldRow.get_or_none(job_id=job_id)
            if row is None:
                raise NotFound(f"job {job_id} holds no points")
            if not won:
                return settlement_of(_hold_state(row))
            captured = clamp_capture(row.amount, capture)
            await HoldRow.filter(job_id=job_id).update(captured=captured)
            return await _settle_account(_hold_state(row), captured)

    async def entries(
        self, user_id: UserId, limit: int, before_id: int | None = None
    ) -> list[LedgerEntry]:
        """Newest first; `before_id` pages on to older entries."""
        query = LedgerEntryRow.filter(user_id=user_id)
        if before_id is not None:
            query = query.filter(id__lt=before_id)
        rows = await query.order_by("-id").limit(limit)
        return [_entry(row) for row in rows]

    async def audit(self, user_id: UserId | None = None) -> list[AuditFinding]:
        """Check every ledger invariant for one user or for all; empty means clean."""
        where = {} if user_id is None else {"user_id": user_id}
        accounts = {
            UserId(r.user_id): r  # type: ignore[attr-defined]
            for r in await AccountRow.filter(**where)
        }
        entries: dict[UserId, list[LedgerEntry]] = defaultdict(list)
        for row in await LedgerEntryRow.filter(**where).order_by("id"):
            entry = _entry(row)
            entries[entry.user_id].append(entry)
        holds: dict[UserId, list[HoldState]] = defaultdict(list)
        for hold_row in await HoldRow.filter(**where):
            hold = _hold_state(hold_row)
            holds[hold.user_id].append(hold)
        findings: list[AuditFinding] = []
        for uid in sorted(set(accounts) | set(entries) | set(holds)):
            account = accounts.get(uid)
            balance = None if account is None else Balance(account.available, account.frozen)
            open_holds = None if account is None else account.open_holds
            findings += audit_user(uid, balance, entries[uid], holds[uid], open_holds)
        return findings


MAX_BALANCE = 2**31 - 1  # what GraphQL's Int can show


async def _add_available(user_id: UserId, amount: int) -> bool:
    """One conditional UPDATE; available stays within 0..MAX_BALANCE."""
    changed = await AccountRow.filter(
        user_id=user_id, available__gte=max(0, -amount), available__lte=MAX_BALANCE - max(0, amount)
    ).update(available=F("available") + amount)
    return changed == 1


_INSERT_HOLD = Statement(
    "INSERT INTO holds (job_id, user_id, amount, settled, created_at) VALUES (?, ?, ?, ?, ?)"
)
# The entry records the balance the account row has right after the freeze, read in the
# same statement: no SELECT round trip in between.
_APPEND_HOLD = Statement(
    "INSERT INTO ledger_entries"
    " (user_id, kind, amount, available_after, frozen_after, job_id, move_key, created_at)"
    " SELECT user_id, ?, ?, available, frozen, ?, ?, ? FROM accounts WHERE user_id = ?"
)


@cache
def _insert(table: str, columns: tuple[str, ...]) -> Statement:
    return Statement(
        f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({', '.join('?' * len(columns))})"
    )


_COLUMN_TYPES = Statement(
    "SELECT attname AS name, format_type(atttypid, NULL) AS type FROM pg_attribute"
    " WHERE attrelid = CAST(? AS text)::regclass AND attnum > 0 AND NOT attisdropped"
)
_column_types: dict[str, dict[str, str]] = {}  # PostgreSQL: table → column → type, read once


async def _hold_many_in_one_statement(
    holds: Sequence[NewJobHold], max_open: int | None
) -> list[bool]:
    """PostgreSQL: `hold_new_jobs` as one statement; each value travels as an array with
    one element per hold."""
    table, columns = holds[0].row[0], tuple(holds[0].row[1])
    types = _column_types.get(table)
    if types is None:
        rows = await sql.fetch(_COLUMN_TYPES, table)
        types = _column_types[table] = {row["name"]: row["type"] for row in rows}
    capped = max_open is not None
    statement = _hold_many_and_insert(table, columns, tuple(types[c] for c in columns), capped)
    now = datetime.now(UTC)
    taken = await sql.fetch(
        statement,
        [hold.user_id for hold in holds],
        [hold.job_id for hold in holds],
        [hold.amount for hold in holds],
        [hold_key(hold.job_id) for hold in holds],
        *_cap_values(max_open),
        *(now, EntryKind.HOLD.value, now),
        *(list(column) for column in zip(*(hold.row[2] for hold in holds), strict=True)),
    )
    numbers = {int(row["n"]) for row in taken}
    return [n in numbers for n in range(1, len(holds) + 1)]


@cache
def _hold_many_and_insert(
    table: str, columns: tuple[str, ...], types: tuple[str, ...], capped: bool
) -> Statement:
    """PostgreSQL: `_freeze_one`, `_INSERT_HOLD`, `_APPEND_HOLD` and one more row, for many
    holds, as one statement. `unnest` pairs the arrays' elements up by position (`n`); the
    other writes take their values from the freeze's RETURNING (the balance right after it),
    so a hold whose freeze matches no row writes nothing, and the result lists the `n` of
    those taken. `l` locks the accounts in user id order before any is changed, whatever
    plan the update gets: two processes' statements then never wait for each other in a
    circle. When `capped`, the cap on open holds comes after the four arrays."""
    listed = ", ".join(columns)
    return Statement(
        "WITH v AS (SELECT * FROM unnest(?::bigint[], ?::text[], ?::bigint[], ?::text[])"
        " WITH ORDINALITY AS v (user_id, job_id, amount, move_key, n)),"
        " l AS (SELECT a.user_id FROM accounts a JOIN v ON a.user_id = v.user_id"
        " ORDER BY a.user_id FOR UPDATE OF a),"
        " f AS (UPDATE accounts a"
        " SET available = a.available - v.amount, frozen = a.frozen + v.amount,"
        " open_holds = a.open_holds + 1"
        " FROM v JOIN l ON l.user_id = v.user_id"
        f" WHERE a.user_id = v.user_id AND a.available >= v.amount{_below_cap('a', capped)}"
        " RETURNING v.n, v.user_id, v.job_id, v.amount, v.move_key, a.available, a.frozen),"
        " h AS (INSERT INTO holds (job_id, user_id, amount, settled, created_at)"
        " SELECT job_id, user_id, amount, FALSE, ? FROM f),"
        " e AS (INSERT INTO ledger_entries"
        " (user_id, kind, amount, available_after, frozen_after, job_id, move_key, created_at)"
        " SELECT user_id, ?, amount, available, frozen, job_id, move_key, ? FROM f),"
        f" r AS (INSERT INTO {table} ({listed})"
        f" SELECT {', '.join(f'r.{c}' for c in columns)}"
        f" FROM unnest({', '.join(f'?::{t}[]' for t in types)}) WITH ORDINALITY AS r ({listed}, n)"
        " JOIN f ON f.n = r.n)"
        " SELECT n FROM f"
    )


async def _hold_rows(user_id: UserId, job_id: JobId, amount: int) -> bool:
    """Freeze, the hold row and its ledger entry; False (nothing written) when the account
    is missing or short. Run inside a transaction."""
    if not await _freeze(user_id, amount):
        return False
    now = datetime.now(UTC)
    await sql.execute(_INSERT_HOLD, job_id, user_id, amount, False, now)
    kind = EntryKind.HOLD.value
    await sql.execute(_APPEND_HOLD, kind, amount, job_id, hold_key(job_id), now, user_id)
    return True


async def _freeze(user_id: UserId, amount: int, max_open: int | None = None) -> bool:
    """Move `amount` from available to frozen and open one more hold, when the account has
    the points and, with `max_open`, fewer open holds. Run inside a transaction."""
    statement = _freeze_one(max_open is not None)
    values = (amount, amount, user_id, amount, *_cap_values(max_open))
    return await sql.execute(statement, *values) == 1


async def _freeze_many(amounts: Sequence[tuple[UserId, int]], max_open: int | None) -> list[bool]:
    """`_freeze` for distinct users: one statement on SQLite (RETURNING tells which froze),
    one per user elsewhere. Run inside a transaction."""
    if sql.dialect() != "sqlite":
        return [await _freeze(user_id, amount, max_open) for user_id, amount in amounts]
    statement, values = _freeze_each_with(amounts, max_open)
    return _which_froze(amounts, await sql.fetch(statement, *values))


def _hold_many_at_once(
    holds: Sequence[NewJobHold], max_open: int | None, steps: sql.SqliteSteps
) -> list[bool]:
    """SQLite: `hold_new_jobs`'s transaction, as one `sql.sqlite_transaction`."""
    amounts = [(hold.user_id, hold.amount) for hold in holds]
    statement, values = _freeze_each_with(amounts, max_open)
    taken = _which_froze(amounts, steps.fetch(statement, *values))
    for insert, rows in _hold_inserts(holds, taken):
        steps.execute_many(insert, rows)
    return taken


def _freeze_each_with(
    amounts: Sequence[tuple[UserId, int]], max_open: int | None
) -> tuple[Statement, tuple[object, ...]]:
    """SQLite: the one freeze statement for `amounts`, and its values."""
    cases = [value for pair in amounts for value in pair]
    users = [user_id for user_id, _ in amounts]
    statement = _freeze_each(len(amounts), max_open is not None)
    return statement, (*cases, *cases, *users, *cases, *_cap_values(max_open))


def _which_froze(amounts: Sequence[tuple[UserId, int]], rows: Sequence[Any]) -> list[bool]:
    """Per user of `amounts`, whether the freeze's RETURNING lists it."""
    frozen = {int(row["user_id"]) for row in rows}
    return [int(user_id) in frozen for user_id, _ in amounts]


def _hold_inserts(
    holds: Sequence[NewJobHold], taken: Sequence[bool]
) -> list[tuple[Statement, list[tuple[object, ...]]]]:
    """The writes that follow the freezes: the taken holds, their entries, their rows."""
    held = [hold for hold, ok in zip(holds, taken, strict=True) if ok]
    if not held:
        return []
    now, kind = datetime.now(UTC), EntryKind.HOLD.value
    table, columns = held[0].row[0], tuple(held[0].row[1])
    return [
        (_INSERT_HOLD, [(h.job_id, h.user_id, h.amount, False, now) for h in held]),
        (
            _APPEND_HOLD,
            [(kind, h.amount, h.job_id, hold_key(h.job_id), now, h.user_id) for h in held],
        ),
        (_insert(table, columns), [tuple(h.row[2]) for h in held]),
    ]


def _cap_values(max_open: int | None) -> tuple[int, ...]:
    """The values a capped freeze adds after its others: the cap, when there is one."""
    return () if max_open is None else (max_open,)


def _below_cap(account: str, capped: bool) -> str:
    """SQL to AND to a freeze's WHERE: the account (as `account` names it) has fewer open
    holds than the next value; nothing when not `capped`."""
    return f" AND {account}.open_holds < ?" if capped else ""


@cache
def _freeze_one(capped: bool) -> Statement:
    """One account's freeze; when `capped`, the cap on open holds is the last value. It
    always changes the row (`open_holds`), so a free hold counts as a changed row on
    MariaDB too."""
    return Statement(
        "UPDATE accounts SET available = available - ?, frozen = frozen + ?,"
        " open_holds = open_holds + 1"
        f" WHERE user_id = ? AND available >= ?{_below_cap('accounts', capped)}"
    )


@cache
def _freeze_each(users: int, capped: bool) -> Statement:
    """SQLite: `_freeze_one` for `users` accounts at once, each with its own amount."""
    amount = f"CASE user_id {' '.join(['WHEN ? THEN ?'] * users)} END"
    return Statement(
        f"UPDATE accounts SET available = available - {amount}, frozen = frozen + {amount},"
        f" open_holds = open_holds + 1 WHERE user_id IN ({', '.join('?' * users)})"
        f" AND available >= {amount}{_below_cap('accounts', capped)} RETURNING user_id"
    )


async def _settle_account(hold: HoldState, captured: int) -> Settlement:
    released = hold.amount - captured
    await AccountRow.filter(user_id=hold.user_id).update(
        frozen=F("frozen") - hold.amount,
        available=F("available") + released,
        open_holds=F("open_holds") - 1,
    )
    after = await _read_balance(hold.user_id)
    if captured:
        before_release = Balance(after.available - released, after.frozen + released)
        await _append(hold.user_id, EntryKind.CAPTURE, captured, capture_key(hold.job_id),
                      before_release, job_id=hold.job_id)  # fmt: skip
    if released:
        await _append(hold.user_id, EntryKind.RELEASE, released, release_key(hold.job_id),
                      after, job_id=hold.job_id)  # fmt: skip
    return Settlement(job_id=hold.job_id, held=hold.amount, captured=captured, released=released)


async def _read_balance(user_id: UserId) -> Balance:
    row = await AccountRow.get_or_none(user_id=user_id)
    if row is None:
        raise NotFound(f"user {user_id} has no account")
    return Balance(available=row.available, frozen=row.frozen)


async def _append(
    user_id: UserId,
    kind: EntryKind,
    amount: int,
    move_key: str,
    after: Balance,
    *,
    job_id: JobId | None = None,
    reason: str | None = None,
) -> None:
    await LedgerEntryRow.create(
        user_id=user_id,
        kind=kind.value,
        amount=amount,
        available_after=after.available,
        frozen_after=after.frozen,
        job_id=job_id,
        move_key=move_key,
        reason=reason,
    )


async def _first_result(move_key: str, user_id: UserId) -> Balance | None:
    """The balance recorded by an earlier move with this key, if there was one."""
    row = await LedgerEntryRow.get_or_none(move_key=move_key)
    if row is None:
        return None
    if row.user_id != user_id:  # type: ignore[attr-defined]
        raise Conflict(f"move {move_key} belongs to another user")
    return Balance(row.available_after, row.frozen_after)


async def _repeated(move_key: str, user_id: UserId) -> Balance:
    """After a unique-key clash: the earlier move's result; none means another clash."""
    first = await _first_result(move_key, user_id)
    if first is None:
        raise Conflict(f"move {move_key} clashed with an existing record")
    return first


async def _refuse(user_id: UserId, amount: int = 0) -> Balance:
    """Why a conditional UPDATE matched nothing: no account, too many or not enough points."""
    balance = await _read_balance(user_id)
    if amount > 0:
        raise BadUserInput(f"a balance cannot exceed {MAX_BALANCE}", field="amount")
    raise InsufficientPoints(f"not enough points: {balance.available} available")


def _hold_state(row: HoldRow) -> HoldState:
    return HoldState(
        job_id=JobId(row.job_id),
        user_id=UserId(row.user_id),  # type: ignore[attr-defined]
        amount=row.amount,
        captured=row.captured,
        settled=row.settled,
    )


def _entry(row: LedgerEntryRow) -> LedgerEntry:
    return LedgerEntry(
        id=row.id,
        user_id=UserId(row.user_id),  # type: ignore[attr-defined]
        kind=EntryKind(row.kind),
        amount=row.amount,
        available_after=row.available_after,
        frozen_after=row.frozen_after,
        job_id=JobId(row.job_id) if row.job_id else None,
        reason=row.reason,
        created_at=aware(row.created_at),
    )
