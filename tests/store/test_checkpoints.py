"""SQLite WAL checkpoints: no commit copies the log back; the checkpointer's thread does, and
keeps the log from growing without end."""

from __future__ import annotations

import sqlite3
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from stargraph.store import sql
from stargraph.store.checkpoints import WalCheckpointer, checkpoint
from stargraph.store.db import close_db, init_db

ROW = "x" * 3000  # most of a 4 KiB page: one page a row


@pytest.fixture
def database(tmp_path: Path) -> Iterator[Path]:
    path = tmp_path / "wal.db"
    writer = sqlite3.connect(path, isolation_level=None)
    writer.execute("PRAGMA journal_mode=WAL")
    writer.execute("CREATE TABLE t (v TEXT)")
    writer.close()
    yield path


def _writer(path: Path) -> sqlite3.Connection:
    """A connection set up as StarGraph's are: no checkpoint at commit."""
    connection = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    connection.execute("PRAGMA wal_autocheckpoint=0")
    return connection


def _write(connection: sqlite3.Connection, rows: int) -> None:
    for _ in range(rows):  # a commit each, as submissions commit
        connection.execute("INSERT INTO t VALUES (?)", (ROW,))


def _wal_pages(path: Path) -> int:
    wal = path.with_name(path.name + "-wal")
    return max(0, wal.stat().st_size - 32) // (4096 + 24) if wal.exists() else 0


def test_commits_leave_the_log_to_the_checkpointer(database: Path) -> None:
    writer = _writer(database)
    _write(writer, 1200)  # past the 1 000 pages at which a commit would copy it back
    size_before = database.stat().st_size
    assert _wal_pages(database) > 1200, "a commit checkpointed the log"

    checkpointer = WalCheckpointer(database, interval_s=0.01)
    checkpointer.start()
    deadline = time.monotonic() + 10
    while database.stat().st_size < size_before + 1200 * 4096 and time.monotonic() < deadline:
        time.sleep(0.01)
    checkpointer.stop()

    assert database.stat().st_size >= size_before + 1200 * 4096  # the rows are in the file now
    assert writer.execute("SELECT COUNT(*) FROM t").fetchone()[0] == 1200
    writer.close()


def test_a_copied_log_starts_over_at_the_next_write(database: Path) -> None:
    writer, checkpointer = _writer(database), _writer(database)
    _write(writer, 300)
    first = checkpoint(checkpointer, restart_frames=10_000)
    assert first.copied_frames == first.log_frames >= 300

    _write(writer, 5)
    again = checkpoint(checkpointer, restart_frames=10_000)
    assert again.log_frames < 300  # overwritten from the start, not appended to
    assert _wal_pages(database) == first.log_frames  # the file keeps its size, never grows
    writer.close()
    checkpointer.close()


def test_a_log_past_the_bound_is_restarted_once_readers_let_go(database: Path) -> None:
    """A reader on an old snapshot stops a passive checkpoint short; past `restart_frames`
    the checkpointer waits for the reader (within the busy timeout) and copies everything."""
    writer, checkpointer = _writer(database), _writer(database)
    checkpointer.execute("PRAGMA busy_timeout=5000")

    def copied_with_a_reader(restart_frames: int) -> tuple[int, int]:
        reader = sqlite3.connect(database, isolation_level=None, check_same_thread=False)
        reader.execute("BEGIN")
        reader.execute("SELECT COUNT(*) FROM t").fetchone()  # holds this snapshot
        _write(writer, 50)
        release = threading.Timer(0.2, reader.execute, ["COMMIT"])
        release.start()
        done = checkpoint(checkpointer, restart_frames)
        release.join()
        reader.close()
        return done.copied_frames, done.log_frames

    copied, logged = copied_with_a_reader(restart_frames=10_000)
    assert copied < logged  # passive only: the reader's snapshot kept the new pages out

    copied, logged = copied_with_a_reader(restart_frames=10)
    assert copied == logged  # restarted: waited for the reader, then copied all
    writer.close()
    checkpointer.close()


def test_stop_ends_the_thread_and_a_second_start_is_refused(database: Path) -> None:
    checkpointer = WalCheckpointer(database, interval_s=60)
    checkpointer.start()
    with pytest.raises(RuntimeError):
        checkpointer.start()
    started = time.monotonic()
    checkpointer.stop()  # no waiting out the interval
    assert time.monotonic() - started < 5
    assert not any(t.name == "stargraph-wal-checkpoints" for t in threading.enumerate())


def test_a_missing_file_is_not_created_and_the_thread_carries_on(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    missing = tmp_path / "app.db"  # its folder exists: a plain connect would create it
    checkpointer = WalCheckpointer(missing, interval_s=0.01)
    checkpointer.start()
    time.sleep(0.1)
    checkpointer.stop()
    assert not missing.exists()
    assert "cannot open" in caplog.text


async def test_an_open_sqlite_database_has_a_checkpointer_and_no_commit_checkpoints(
    tmp_path: Path,
) -> None:
    def running() -> int:
        return sum(t.name == "stargraph-wal-checkpoints" for t in threading.enumerate())

    await init_db(f"sqlite://{tmp_path / 'app.db'}")
    try:
        rows = await sql.fetch(sql.Statement("PRAGMA wal_autocheckpoint"))
        assert rows[0][0] == 0
        assert running() == 1
    finally:
        await close_db()
    assert running() == 0
