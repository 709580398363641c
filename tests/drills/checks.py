"""What must hold after a drill, read from the database and the image folder.

Every job terminal; each job held exactly once and settled exactly once (capture = price ×
images stored, capture + release = hold); no hold left; the ledger audit clean; every
SUCCEEDED job's images on disk as PNGs of the asked size.
"""

from __future__ import annotations

import io
from collections import Counter, defaultdict
from collections.abc import Collection

from PIL import Image

from stargraph.domain.jobs import TERMINAL, JobStatus
from stargraph.storage import DiskImageFiles
from stargraph.store.ledger import TortoiseLedger
from stargraph.store.models import HoldRow, ImageRow, JobRow, LedgerEntryRow


async def unfinished(job_ids: Collection[str]) -> list[tuple[str, str]]:
    """(id, status) of the jobs that are not terminal yet."""
    terminal = [s.value for s in TERMINAL]
    rows = await JobRow.filter(id__in=list(job_ids)).exclude(status__in=terminal)
    return [(r.id, r.status) for r in rows]


async def statuses(job_ids: Collection[str]) -> Counter[str]:
    return Counter(r.status for r in await JobRow.filter(id__in=list(job_ids)))


async def money_problems(job_ids: Collection[str], price: int) -> list[str]:
    """Every way in which a job was not held once and settled once, correctly."""
    moves: dict[str, Counter[str]] = defaultdict(Counter)
    amounts: dict[str, dict[str, int]] = defaultdict(dict)
    for entry in await LedgerEntryRow.filter(job_id__in=list(job_ids)):
        assert entry.job_id is not None  # as the filter says
        moves[entry.job_id][entry.kind] += 1
        amounts[entry.job_id][entry.kind] = entry.amount
    images = Counter(r.job_id for r in await ImageRow.filter(job_id__in=list(job_ids)))  # type: ignore[attr-defined]
    problems: list[str] = []
    for job in await JobRow.filter(id__in=list(job_ids)):
        problems += _job_money(job, moves[job.id], amounts[job.id], images[job.id], price)
    open_holds = await HoldRow.filter(job_id__in=list(job_ids), settled=False).count()
    if open_holds:
        problems.append(f"{open_holds} hold(s) never settled")
    return problems


def _job_money(
    job: JobRow, moves: Counter[str], amount: dict[str, int], images: int, price: int
) -> list[str]:
    found: list[str] = []
    if moves["hold"] != 1 or amount.get("hold") != job.cost:
        found.append(f"{job.id}: holds {moves['hold']}, held {amount.get('hold')} of {job.cost}")
    if moves["capture"] > 1 or moves["release"] > 1 or not (moves["capture"] or moves["release"]):
        found.append(f"{job.id}: settled with moves {dict(moves)}")
    captured, released = amount.get("capture", 0), amount.get("release", 0)
    if captured + released != job.cost:
        found.append(f"{job.id}: captured {captured} + released {released} != held {job.cost}")
    if captured != price * images or job.charged != captured:
        found.append(f"{job.id}: charged {job.charged}, captured {captured} for {images} image(s)")
    if job.status != JobStatus.SUCCEEDED.value and captured:
        found.append(f"{job.id}: {job.status} but charged {captured}")
    return found


async def image_problems(job_ids: Collection[str], files: DiskImageFiles) -> list[str]:
    """Every SUCCEEDED job has `count` image rows whose files are PNGs of its size."""
    problems: list[str] = []
    jobs = await JobRow.filter(id__in=list(job_ids), status=JobStatus.SUCCEEDED.value)
    rows_of: dict[str, list[ImageRow]] = defaultdict(list)
    for row in await ImageRow.filter(job_id__in=[j.id for j in jobs]):
        rows_of[row.job_id].append(row)  # type: ignore[attr-defined]
    for job in jobs:
        rows = rows_of[job.id]
        if len(rows) != job.count:
            problems.append(f"{job.id}: {len(rows)} image rows for count {job.count}")
        for row in rows:
            problems += _file_problems(job, row, files)
    return problems


def _file_problems(job: JobRow, row: ImageRow, files: DiskImageFiles) -> list[str]:
    if not files.exists(row.path):
        return [f"{job.id}: image {row.path} missing on disk"]
    data = files.resolve(row.path).read_bytes()
    with Image.open(io.BytesIO(data)) as image:
        if image.format != "PNG" or image.size != (job.width, job.height):
            return [f"{job.id}: {row.path} is {image.format} {image.size}"]
    return []


async def assert_settled_and_stored(
    job_ids: Collection[str],
    *,
    files: DiskImageFiles,
    price: int,
    expected: Counter[str],
    context: str = "",
) -> None:
    """The whole after-run check; `expected` counts jobs per final status."""
    late = await unfinished(job_ids)
    assert not late, f"{len(late)} job(s) not terminal: {late[:10]}\n{context}"
    found = await statuses(job_ids)
    assert found == expected, f"final states {dict(found)} != {dict(expected)}\n{context}"
    money = await money_problems(job_ids, price)
    assert not money, "\n".join(money[:20])
    audit = await TortoiseLedger().audit()
    assert audit == [], audit[:10]
    pictures = await image_problems(job_ids, files)
    assert not pictures, "\n".join(pictures[:20])
