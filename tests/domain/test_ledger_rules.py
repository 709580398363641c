"""The ledger's pure rules: amounts, clamping, the effect of each move, and the audit."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from stargraph.domain.errors import BadUserInput
from stargraph.domain.ledger import (
    Balance,
    EntryKind,
    HoldState,
    LedgerEntry,
    apply_move,
    audit_user,
    check_grant,
    check_hold,
    clamp_capture,
    settlement_of,
)
from stargraph.domain.types import JobId, UserId

USER = UserId(1)
JOB = JobId("00000000-0000-4000-8000-000000000001")
NOW = datetime(2026, 1, 1, tzinfo=UTC)


def entry(
    n: int, kind: EntryKind, amount: int, after: tuple[int, int], job: bool = True
) -> LedgerEntry:
    return LedgerEntry(n, USER, kind, amount, after[0], after[1], JOB if job else None, None, NOW)


def history() -> list[LedgerEntry]:
    """Grant 100, hold 40 for JOB, capture 30 and release 10."""
    return [
        entry(1, EntryKind.GRANT, 100, (100, 0), job=False),
        entry(2, EntryKind.HOLD, 40, (60, 40)),
        entry(3, EntryKind.CAPTURE, 30, (60, 10)),
        entry(4, EntryKind.RELEASE, 10, (70, 0)),
    ]


SETTLED = HoldState(JOB, USER, amount=40, captured=30, settled=True)


@pytest.mark.parametrize(
    ("held", "asked", "captured"), [(40, 30, 30), (40, 99, 40), (40, -1, 0), (0, 10, 0)]
)
def test_capture_is_clamped(held: int, asked: int, captured: int) -> None:
    assert clamp_capture(held, asked) == captured


def test_each_move_changes_the_balance_its_own_way() -> None:
    start = Balance(50, 20)
    assert apply_move(start, EntryKind.GRANT, -5) == Balance(45, 20)
    assert apply_move(start, EntryKind.HOLD, 10) == Balance(40, 30)
    assert apply_move(start, EntryKind.CAPTURE, 10) == Balance(50, 10)
    assert apply_move(start, EntryKind.RELEASE, 10) == Balance(60, 10)


def test_amount_rules() -> None:
    check_hold(0)
    with pytest.raises(ValueError):
        check_hold(-1)
    check_grant(-5, "refund")
    with pytest.raises(BadUserInput):
        check_grant(1, "x" * 256)


def test_settlement_of_a_stored_hold() -> None:
    result = settlement_of(SETTLED)
    assert (result.held, result.captured, result.released) == (40, 30, 10)


def test_a_consistent_history_is_clean() -> None:
    assert audit_user(USER, Balance(70, 0), history(), [SETTLED]) == []


def test_an_open_hold_is_clean_while_frozen() -> None:
    open_hold = HoldState(JOB, USER, 40, None, False)
    assert audit_user(USER, Balance(60, 40), history()[:2], [open_hold]) == []


def test_the_count_of_open_holds_must_match_the_unsettled_holds() -> None:
    open_hold = HoldState(JOB, USER, 40, None, False)
    assert audit_user(USER, Balance(60, 40), history()[:2], [open_hold], open_holds=1) == []
    assert audit_user(USER, Balance(70, 0), history(), [SETTLED], open_holds=0) == []
    [found] = audit_user(USER, Balance(70, 0), history(), [SETTLED], open_holds=1)
    assert found.problem == "open_holds 1 differs from 0 unsettled holds"


def problems(balance: Balance | None, entries: list[LedgerEntry], holds: list[HoldState]) -> str:
    return " | ".join(f.problem for f in audit_user(USER, balance, entries, holds))


def test_a_balance_that_differs_from_the_entries_is_found() -> None:
    assert "differs from the sum of entries" in problems(Balance(71, 0), history(), [SETTLED])


def test_a_tampered_entry_breaks_the_links_on_both_sides() -> None:
    entries = history()
    entries[1] = entry(2, EntryKind.HOLD, 40, (61, 40))
    found = audit_user(USER, Balance(70, 0), entries, [SETTLED])
    assert [f.problem for f in found] == [
        "entry 2: records available=61 frozen=40, moves give available=60 frozen=40",
        "entry 3: records available=60 frozen=10, moves give available=61 frozen=10",
    ]


def test_a_second_settlement_is_found() -> None:
    entries = [*history(), entry(5, EntryKind.RELEASE, 10, (80, -10))]
    text = problems(Balance(80, -10), entries, [SETTLED])
    assert "negative balance" in text
    assert f"job {JOB}: moves" in text


def test_holds_and_entries_must_match() -> None:
    assert "entries without a hold" in problems(Balance(70, 0), history(), [])
    early = HoldState(JOB, USER, 40, 30, settled=False)
    assert "captured 30 before settling" in problems(Balance(60, 40), history()[:2], [early])
    greedy = HoldState(JOB, USER, 40, 50, settled=True)
    assert "settled with capture 50 of 40" in problems(Balance(70, 0), history(), [greedy])
    assert "frozen 40 differs from open holds 0" in problems(Balance(60, 40), history()[:2], [])


def test_entries_without_an_account_are_found() -> None:
    assert "account does not" in problems(None, history()[:1], [])
