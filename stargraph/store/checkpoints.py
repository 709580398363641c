"""SQLite WAL checkpoints, off the commit path.

By default the SQLite connection whose commit takes the write-ahead log past 1 000 pages
copies the log back into the database file and syncs it, inside that commit: a pause of
milliseconds that every submission waiting on the commit shares, once every few hundred jobs.
StarGraph's connections turn that off (`wal_autocheckpoint=0`); instead each process that
opens a SQLite database runs a `WalCheckpointer`: a thread with a connection of its own that
checkpoints every `interval_s`. Its PASSIVE checkpoint waits for no reader or writer, and
none waits for it; it copies each page once however often it changed, and syncs once.

Under a steady stream of writes a passive checkpoint may never find the log all copied, so
the log would never start over and would grow. When it holds more than `restart_frames`
pages, the checkpointer runs a RESTART checkpoint, which waits (like a writer, up to the
busy timeout) for a moment without writers and makes the next writer start the log over.
"""

from __future__ import annotations

import logging
import sqlite3
import threading
from pathlib import Path
from typing import NamedTuple

log = logging.getLogger("stargraph.store")

CHECKPOINT_INTERVAL_S = 0.5
RESTART_FRAMES = 16_000  # 64 MB of 4 KiB pages


class Checkpoint(NamedTuple):
    """One checkpoint's result, as `PRAGMA wal_checkpoint` reports it."""

    busy: bool  # a RESTART could not get its moment without writers
    log_frames: int  # pages in the log
    copied_frames: int  # of those, pages now in the database file


class WalCheckpointer:
    """Checkpoints one SQLite database's write-ahead log from a thread of its own."""

    def __init__(
        self,
        path: Path,
        *,
        interval_s: float = CHECKPOINT_INTERVAL_S,
        restart_frames: int = RESTART_FRAMES,
        busy_timeout_s: float = 5.0,
    ) -> None:
        self._path = path
        self._interval_s = interval_s
        self._restart_frames = restart_frames
        self._busy_timeout_s = busy_timeout_s
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        """Start the thread (once)."""
        if self._thread is not None:
            raise RuntimeError("the checkpointer is already started")
        self._thread = threading.Thread(
            target=self._run, name="stargraph-wal-checkpoints", daemon=True
        )
        self._thread.start()

    def stop(self) -> None:
        """Stop the thread after its last checkpoint; returns once it has ended."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join()

    def _run(self) -> None:
        connection: sqlite3.Connection | None = None
        try:
            stopping = False
            while not stopping:  # the last pass copies what the last commits wrote
                stopping = self._stop.wait(self._interval_s)
                connection = connection or self._connect()
                if connection is not None:
                    self._checkpoint_logged(connection)
        finally:
            if connection is not None:
                connection.close()

    def _connect(self) -> sqlite3.Connection | None:
        """A connection to the database file, never creating one; None (logged) when it
        cannot be opened now: the next pass tries again."""
        try:
            return sqlite3.connect(
                f"{self._path.resolve().as_uri()}?mode=rw",
                uri=True,
                timeout=self._busy_timeout_s,
                isolation_level=None,
            )
        except sqlite3.Error as exc:
            log.warning("cannot open %s to checkpoint it: %s", self._path, exc)
            return None

    def _checkpoint_logged(self, connection: sqlite3.Connection) -> None:
        try:
            checkpoint(connection, self._restart_frames)
        except sqlite3.Error as exc:  # the next pass tries again
            log.warning("WAL checkpoint of %s failed: %s", self._path, exc)


def checkpoint(connection: sqlite3.Connection, restart_frames: int) -> Checkpoint:
    """A passive checkpoint, then a restarting one when the log has outgrown
    `restart_frames` pages."""
    done = _wal_checkpoint(connection, "PASSIVE")
    if done.log_frames > restart_frames:
        done = _wal_checkpoint(connection, "RESTART")
    return done


def _wal_checkpoint(connection: sqlite3.Connection, mode: str) -> Checkpoint:
    busy, log_frames, copied = connection.execute(f"PRAGMA wal_checkpoint({mode})").fetchone()
    return Checkpoint(bool(busy), log_frames, copied)
