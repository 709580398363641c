"""What a request could change, read straight from SQL, Redis and the image folder.

Two snapshots are equal exactly when no user, token, balance, ledger entry, hold, job, image
row, image file or queued entry appeared, vanished or changed between them.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from stargraph.bootstrap import Services
from stargraph.store.models import (
    AccountRow,
    HoldRow,
    ImageRow,
    JobRow,
    LedgerEntryRow,
    TokenRow,
    UserRow,
)


@dataclass(frozen=True, slots=True)
class Snapshot:
    users: int
    live_tokens: int
    balances: tuple[tuple[int, int, int], ...]  # (user id, available, frozen)
    ledger_entries: int
    last_entry: int
    holds: tuple[tuple[str, bool], ...]  # (job id, settled)
    jobs: tuple[tuple[str, str, int, bool], ...]  # (id, status, priority, front)
    images: int
    image_files: int
    queue_length: int

    def difference(self, other: Snapshot) -> list[str]:
        """The names of the parts that differ, for a readable failure."""
        return [name for name in self.__slots__ if getattr(self, name) != getattr(other, name)]


async def snapshot(services: Services) -> Snapshot:
    balances = (
        await AccountRow.all().order_by("user_id").values_list("user_id", "available", "frozen")
    )
    last = await LedgerEntryRow.all().order_by("-id").first().values_list("id")
    return Snapshot(
        users=await UserRow.all().count(),
        live_tokens=await TokenRow.filter(revoked_at=None).count(),
        balances=tuple((int(u), int(a), int(f)) for u, a, f in balances),
        ledger_entries=await LedgerEntryRow.all().count(),
        last_entry=int(last[0]) if last else 0,
        holds=tuple(
            (j, bool(s))
            for j, s in await HoldRow.all().order_by("job_id").values_list("job_id", "settled")
        ),
        jobs=tuple(
            (j, s, int(p), bool(f))
            for j, s, p, f in await JobRow.all()
            .order_by("id")
            .values_list("id", "status", "priority", "front")
        ),
        images=await ImageRow.all().count(),
        image_files=_count_files(Path(services.settings.storage_dir)),
        queue_length=await services.queue.length(),
    )


def _count_files(root: Path) -> int:
    if not root.exists():
        return 0
    return sum(1 for p in root.rglob("*") if p.is_file() and not p.name.startswith("."))


async def audit_findings(services: Services) -> list[str]:
    """The ledger audit over every user, plus: no account below zero."""
    findings = [str(f) for f in await services.ledger.audit()]
    negative = await AccountRow.filter(available__lt=0).values_list("user_id", flat=True)
    findings += [f"user {u}: available below zero" for u in negative]
    negative = await AccountRow.filter(frozen__lt=0).values_list("user_id", flat=True)
    findings += [f"user {u}: frozen below zero" for u in negative]
    return findings
