"""The journal: every accepted message is on local disk, fsync'd, before the listener acknowledges it.

SQLite in WAL mode with ``synchronous=FULL``: a commit returns only after the WAL is fsync'd.
Messages that arrive together (one per concurrent MLLP connection) share one transaction and so
one fsync (group commit): each connection waits only for the commit that holds its message, and
the next commit gathers everything that arrived meanwhile. bench/journal.py measured the choice.

An entry stays until the storage database says it is done downstream (ingest.forwarder); on every
start, whatever is left is produced to the broker again, in order of arrival (so in order per key).
Other processes (the worker's /api/stats, `radflow journal`) read it with :func:`read_stats`.
One listener writes a journal: it holds an exclusive lock on ``<journal>.lock`` while open (the
system drops the lock with the process, so a crash never leaves it held).
"""

from __future__ import annotations

import asyncio
import errno
import fcntl
import logging
import os
import sqlite3
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from kernel.errors import IngestError

log = logging.getLogger(__name__)

_SCHEMA = """
CREATE TABLE IF NOT EXISTS entries (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    message_id TEXT NOT NULL,
    topic TEXT NOT NULL,
    key TEXT NOT NULL,
    value BLOB NOT NULL,
    raw BLOB NOT NULL,
    status TEXT NOT NULL,
    institution TEXT NOT NULL,
    accession TEXT NOT NULL,
    received_at REAL NOT NULL
)
"""
_VACUUM_PAGES = 2048  # free pages given back to the disk at a time (8 MiB)
_COLUMNS = "message_id, topic, key, value, raw, status, institution, accession, received_at"


class JournalError(IngestError):
    """The journal cannot take a message (disk full, over its bound, unwritable); the sender gets AE."""


class JournalFull(JournalError):
    """The journal holds RADFLOW_JOURNAL_MAX_BYTES already: downstream is behind or stopped."""


@dataclass(frozen=True)
class Entry:
    """One accepted message: what goes to the broker, and what decides when it is done."""

    message_id: str  # ingest.events.message_id: institution|MSH-10 ("" when MSH-10 is empty)
    topic: str
    key: str
    value: bytes  # the parsed event's JSON, as the broker carries it
    raw: bytes  # the HL7 bytes as received
    status: str = ""  # OBR-25 (P, F, C, X) or "order": what storage records it under; "" nothing downstream
    institution: str = ""
    accession: str = ""
    received_at: float = 0.0
    seq: int = 0

    def row(self) -> tuple[object, ...]:
        return (self.message_id, self.topic, self.key, self.value, self.raw, self.status, self.institution,
                self.accession, self.received_at)


@dataclass(frozen=True)
class Candidate:
    """What decides whether an entry is done downstream (storage.processed's contract)."""

    seq: int
    message_id: str
    status: str
    institution: str
    accession: str
    received_at: float


@dataclass(frozen=True)
class JournalStats:
    path: str
    bytes: int  # the files on disk (database + WAL)
    live_bytes: int  # the pages in use: what RADFLOW_JOURNAL_MAX_BYTES bounds
    pending: int  # entries not yet done downstream
    oldest_pending_age: float  # seconds since the oldest of them arrived; 0 when none
    max_bytes: int = 0

    def to_dict(self) -> dict[str, object]:
        return {"path": self.path, "bytes": self.bytes, "live_bytes": self.live_bytes, "pending": self.pending,
                "oldest_pending_age_s": round(self.oldest_pending_age, 1), "max_bytes": self.max_bytes}


def _connect(path: Path, read_only: bool = False) -> sqlite3.Connection:
    if read_only:
        conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True, check_same_thread=False, timeout=5)
    else:
        path.parent.mkdir(parents=True, exist_ok=True)
        conn = sqlite3.connect(path, check_same_thread=False, isolation_level=None, timeout=30)
        conn.execute("PRAGMA auto_vacuum=INCREMENTAL")  # released pages go back to the disk (new files only)
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=FULL")  # fsync the WAL at every commit: an AA survives power loss
        conn.execute(_SCHEMA)
    return conn


def file_bytes(path: Path) -> int:
    return sum(p.stat().st_size for p in (path, Path(f"{path}-wal")) if p.exists())


class Journal:
    """Append (group commit), read in order, release. One writer thread owns the connection."""

    def __init__(self, path: Path, max_bytes: int) -> None:
        self.path = Path(path)
        self.max_bytes = max_bytes
        self._thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="radflow-journal")
        self._conn: sqlite3.Connection | None = None
        self._waiting: list[tuple[Entry, asyncio.Future[int]]] = []
        self._writing = False
        self.appended = asyncio.Event()  # set after each commit: the forwarder wakes on it
        self.commits = 0
        self._lock: int | None = None

    def open(self) -> Journal:
        try:
            self._take_lock()
            self._conn = self._thread.submit(_connect, self.path).result()
        except JournalError:
            self.close()
            raise
        except (OSError, sqlite3.Error) as exc:
            self.close()
            raise JournalError(f"cannot open the journal at {self.path} (RADFLOW_JOURNAL_PATH): {exc}") from exc
        return self

    def close(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            self._thread.submit(conn.close).result()  # after any commit under way
        self._thread.shutdown(wait=True)
        self._drop_lock()

    def _take_lock(self) -> None:
        """Two listeners on one journal would each forward and release what the other holds."""
        lock_path = Path(f"{self.path}.lock")
        lock_path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o600)  # an OSError: open() names the setting
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            held = exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN)
            holder = os.pread(fd, 32, 0).decode(errors="replace").strip() if held else ""
            os.close(fd)
            if not held:  # no locks on this file system, say: open() names the setting
                raise
            raise JournalError(f"the journal at {self.path} is in use by pid {holder or '(unknown)'}: one listener "
                               "per journal. Stop the other `radflow ingest`/`serve`, or give this one its own "
                               "RADFLOW_HOME or RADFLOW_JOURNAL_PATH") from None
        self._lock = fd  # from here close() releases it, whatever fails next
        os.ftruncate(fd, 0)
        os.pwrite(fd, str(os.getpid()).encode(), 0)

    def _drop_lock(self) -> None:
        fd, self._lock = self._lock, None
        if fd is not None:
            os.close(fd)  # closing the descriptor drops the lock

    # -- the acknowledgement path ------------------------------------------------------------------
    async def append(self, entry: Entry) -> int:
        """Returns once ``entry`` is committed and fsync'd (its seq); raises JournalError otherwise."""
        if self._conn is None:
            raise JournalError("the journal is closed (the listener is stopping)")
        future: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        self._waiting.append((entry, future))
        if not self._writing:
            self._writing = True
            asyncio.ensure_future(self._commit_loop())
        return await future

    async def _commit_loop(self) -> None:
        loop = asyncio.get_running_loop()
        try:
            while self._waiting:
                batch, self._waiting = self._waiting, []  # everything that arrived while the last commit ran
                try:
                    seqs = await loop.run_in_executor(self._thread, self._write, [e for e, _ in batch])
                except JournalError as exc:
                    for _, future in batch:
                        if not future.done():
                            future.set_exception(exc)
                    continue
                self.commits += 1
                for seq, (_, future) in zip(seqs, batch, strict=True):
                    if not future.done():
                        future.set_result(seq)
                self.appended.set()
        finally:
            self._writing = False

    def _write(self, entries: list[Entry]) -> list[int]:
        conn = self._conn
        if conn is None:
            raise JournalError("the journal is not open")
        try:
            used = self._live_bytes(conn)
            if used + sum(len(e.value) + len(e.raw) for e in entries) > self.max_bytes:
                raise JournalFull(f"journal full ({used} of {self.max_bytes} bytes, RADFLOW_JOURNAL_MAX_BYTES)")
            conn.execute("BEGIN IMMEDIATE")
            try:
                seqs = self._insert(conn, entries)
                conn.execute("COMMIT")
            except BaseException:
                conn.execute("ROLLBACK") if conn.in_transaction else None
                raise
            return seqs
        except JournalError:
            raise
        except (OSError, sqlite3.Error) as exc:  # ENOSPC, EIO, SQLITE_FULL, a read-only file system
            raise JournalError(f"journal write failed ({_reason(exc)})") from exc

    @staticmethod
    def _insert(conn: sqlite3.Connection, entries: list[Entry]) -> list[int]:
        seqs = []
        for entry in entries:
            cursor = conn.execute(f"INSERT INTO entries ({_COLUMNS}) VALUES (?,?,?,?,?,?,?,?,?)", entry.row())
            seqs.append(int(cursor.lastrowid or 0))
        return seqs

    @staticmethod
    def _live_bytes(conn: sqlite3.Connection) -> int:
        pages = conn.execute("PRAGMA page_count").fetchone()[0] - conn.execute("PRAGMA freelist_count").fetchone()[0]
        return int(pages * conn.execute("PRAGMA page_size").fetchone()[0])

    # -- the forwarder's side ----------------------------------------------------------------------
    async def after(self, seq: int, limit: int = 500, raw: bool = True) -> list[Entry]:
        """Entries after ``seq``, oldest first (``raw=False``: without the HL7 bytes, as the broker
        needs only the event)."""
        return await asyncio.get_running_loop().run_in_executor(self._thread, self._after, seq, limit, raw)

    def _after(self, seq: int, limit: int, raw: bool) -> list[Entry]:
        assert self._conn is not None
        columns = _COLUMNS if raw else _COLUMNS.replace("raw", "x''")
        rows = self._conn.execute(f"SELECT {columns}, seq FROM entries WHERE seq > ? ORDER BY seq LIMIT ?",
                                  (seq, limit)).fetchall()
        return [Entry(*row) for row in rows]

    async def candidates(self, after: int, upto: int | None, limit: int) -> list[Candidate]:
        """Entries in (after, upto], oldest first, without their payloads."""
        return await asyncio.get_running_loop().run_in_executor(self._thread, self._candidates, after, upto, limit)

    def _candidates(self, after: int, upto: int | None, limit: int) -> list[Candidate]:
        assert self._conn is not None
        rows = self._conn.execute(
            "SELECT seq, message_id, status, institution, accession, received_at FROM entries WHERE seq > ? AND "
            "seq <= ? ORDER BY seq LIMIT ?", (after, upto if upto is not None else 2**62, limit)).fetchall()
        return [Candidate(*r) for r in rows]

    async def last_seq(self) -> int:
        """The newest entry's seq (0 when empty)."""
        def last() -> int:
            assert self._conn is not None
            return int(self._conn.execute("SELECT coalesce(max(seq), 0) FROM entries").fetchone()[0])

        return await asyncio.get_running_loop().run_in_executor(self._thread, last)

    async def release(self, seqs: list[int]) -> None:
        """Forget entries that are done downstream."""
        if seqs:
            await asyncio.get_running_loop().run_in_executor(self._thread, self._release, seqs)

    def _release(self, seqs: list[int]) -> None:
        assert self._conn is not None
        try:
            self._conn.executemany("DELETE FROM entries WHERE seq = ?", [(s,) for s in seqs])
            if self._conn.execute("PRAGMA freelist_count").fetchone()[0] > _VACUUM_PAGES:
                self._conn.execute(f"PRAGMA incremental_vacuum({_VACUUM_PAGES})")
        except sqlite3.Error as exc:  # kept, and tried again at the next pass
            log.warning("could not release %d journal entries (%s)", len(seqs), _reason(exc))

    async def stats(self) -> JournalStats:
        return await asyncio.get_running_loop().run_in_executor(self._thread, self._stats)

    def _stats(self) -> JournalStats:
        assert self._conn is not None
        return _stats_of(self._conn, self.path, self.max_bytes)


def _stats_of(conn: sqlite3.Connection, path: Path, max_bytes: int) -> JournalStats:
    pending, oldest = conn.execute("SELECT count(*), min(received_at) FROM entries").fetchone()
    age = max(0.0, time.time() - oldest) if oldest else 0.0
    return JournalStats(str(path), file_bytes(path), Journal._live_bytes(conn), int(pending), age, max_bytes)


def read_stats(path: Path, max_bytes: int = 0) -> JournalStats | None:
    """The journal's figures, read-only from another process; None when there is no journal there."""
    if not Path(path).exists():
        return None
    try:
        conn = _connect(Path(path), read_only=True)
        try:
            return _stats_of(conn, Path(path), max_bytes)
        finally:
            conn.close()
    except sqlite3.Error as exc:
        log.warning("cannot read the journal at %s (%s)", path, _reason(exc))
        return None


def _reason(exc: BaseException) -> str:
    if isinstance(exc, OSError) and exc.errno is not None:
        return f"{os.strerror(exc.errno)}"
    return f"{type(exc).__name__}: {exc}"
