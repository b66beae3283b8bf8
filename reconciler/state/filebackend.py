"""A state in a local file: atomic writes, an ``flock`` lock, and apply's journal.

During an apply each recorded change is one line appended to ``<path>.journal`` (fsync'd,
several workers' lines in one write), and the state file is rewritten once at the end.
A run that dies leaves the journal; the next load replays it onto the file it was
started from, so nothing recorded is lost.
"""

from __future__ import annotations

import errno
import fcntl
import glob
import json
import os
import threading
import time

from reconciler.errors import StateError
from reconciler.state.location import Location
from reconciler.state.lock import LockInfo, check_unlock

JOURNAL_FORMAT = 1
STALE_TEMP_SECONDS = 60.0


class FileBackend:
    def __init__(self, location: Location):
        self.location = location
        self.path = location.path
        self.lock_path = f"{self.path}.lock"
        self.journal_path = f"{self.path}.journal"
        self._fd: int | None = None

    def unlock_hint(self, holder: LockInfo) -> str:
        return ("Try again when it has finished (a local lock is released when its process "
                "ends), or pass --lock-timeout to wait")

    # -- the state ------------------------------------------------------------

    def read(self) -> tuple[str | None, None]:
        from reconciler.state import read_text

        return read_text(self.path, what="state file", error=StateError, missing_ok=True), None

    def write(self, text: str, version) -> None:
        from reconciler.state import write_atomic

        clean_temporaries(self.path)
        try:
            write_atomic(self.path, text)
        except OSError as exc:
            raise StateError(f"{self.path}: cannot write the state file: {exc.strerror or exc}") from exc
        return None

    # -- the lock -------------------------------------------------------------

    def try_lock(self, info: LockInfo) -> LockInfo | None:
        try:
            fd = os.open(self.lock_path, os.O_RDWR | os.O_CREAT, 0o600)
        except OSError as exc:
            raise StateError(f"{self.lock_path}: cannot create the state lock: {exc.strerror or exc}") from exc
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            holder = _read_info(fd)
            os.close(fd)
            if exc.errno not in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                raise StateError(f"{self.lock_path}: cannot lock the state file: {exc.strerror or exc}") from exc
            return holder
        os.ftruncate(fd, 0)
        os.pwrite(fd, info.to_json().encode(), 0)
        self._fd = fd
        return None

    def release(self) -> None:
        if self._fd is not None:
            fd, self._fd = self._fd, None
            try:
                os.ftruncate(fd, 0)
            finally:
                fcntl.flock(fd, fcntl.LOCK_UN)
                os.close(fd)

    def current_lock(self) -> LockInfo | None:
        try:
            fd = os.open(self.lock_path, os.O_RDONLY)
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise StateError(f"{self.lock_path}: cannot read the state lock: {exc.strerror or exc}") from exc
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except OSError:
            return _read_info(fd)
        else:
            fcntl.flock(fd, fcntl.LOCK_UN)
            return None
        finally:
            os.close(fd)

    def force_unlock(self, lock_id: str) -> None:
        holder = check_unlock(self.path, self.current_lock(), lock_id)
        raise StateError(
            f"{self.path}: {holder.describe()} is held by a running process on this machine; "
            "a local state's lock goes away when that process ends: stop it instead"
        )


def _read_info(fd: int) -> LockInfo:
    try:
        raw = os.pread(fd, 4096, 0)
    except OSError:
        raw = b""
    if raw.strip().isdigit():  # a lock taken by an older regsync: only its pid
        return LockInfo("?", f"pid {raw.strip().decode()}", "?", "apply", "?")
    return LockInfo.from_json(raw)


def clean_temporaries(path: str) -> None:
    """Remove temporary files a killed write left beside ``path`` (not recent ones,
    which may belong to a write in progress)."""
    directory, name = os.path.split(os.path.abspath(path))
    now = time.time()
    for tmp in glob.glob(os.path.join(glob.escape(directory), f".{glob.escape(name)}.*.tmp")):
        try:
            if now - os.stat(tmp).st_mtime > STALE_TEMP_SECONDS:
                os.unlink(tmp)
        except OSError:
            pass


# -- the journal ------------------------------------------------------------------


def replay_journal(path: str, state) -> bool:
    """Apply the records of ``<path>.journal`` onto ``state`` (just loaded from ``path``)
    when the journal was started from that very state; True when it changed anything."""
    from reconciler.state import registry_from_data

    try:
        with open(f"{path}.journal", "rb") as f:
            lines = f.read().split(b"\n")
    except FileNotFoundError:
        return False
    except OSError as exc:
        raise StateError(f"{path}.journal: cannot read the state journal: {exc.strerror or exc}") from exc
    try:
        header = json.loads(lines[0])
    except ValueError:
        return False
    if (
        not isinstance(header, dict)
        or header.get("journal") != JOURNAL_FORMAT
        or header.get("base_lineage") != state.lineage
        or header.get("base_serial") != state.serial
    ):
        return False  # compacted already, or from another state: not ours to replay
    changed = False
    for raw in lines[1:]:
        try:
            entry = json.loads(raw)
            slug = entry["slug"]
            record = entry["record"]
        except (ValueError, KeyError, TypeError):
            continue  # the last line of a run killed mid-write
        if record is None:
            state.registries.pop(slug, None)
        else:
            state.registries[slug] = registry_from_data(path, slug, record)
        changed = True
    if changed:
        if isinstance(header.get("lineage"), str) and header["lineage"]:
            state.lineage = header["lineage"]
        if isinstance(header.get("key_id"), str) and header["key_id"]:
            state.key_id = header["key_id"]
    return changed


class JournalWriter:
    """Each ``add`` is on disk (one fsync'd line) before it returns. Group commit: while
    one worker writes, the lines of the others gather and go out in the next write."""

    def __init__(self, store, state, *, key_id: str):
        self.store = store
        self.state = state
        self.key_id = key_id
        self.path = store.backend.journal_path
        self.lock = threading.Lock()
        self._written = threading.Condition(self.lock)
        self._pending: list[bytes] = []
        self._queued = 0  # lines handed out so far
        self._durable = 0  # lines on disk
        self._writing = False
        self._failed: dict[int, Exception] = {}
        self._fd: int | None = None
        self.added = 0

    def _open(self) -> int:
        """Start the journal (its header line, fsync'd); returns its descriptor."""
        from reconciler.state import new_lineage

        header = {
            "journal": JOURNAL_FORMAT,
            "base_lineage": self.state.lineage,
            "base_serial": self.state.serial,
            "lineage": self.state.lineage or new_lineage(),
            "key_id": self.key_id,
        }
        try:
            fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            os.write(fd, json.dumps(header).encode() + b"\n")
            os.fsync(fd)
        except OSError as exc:
            raise StateError(f"{self.path}: cannot write the state journal: {exc.strerror or exc}") from exc
        self.state.lineage = header["lineage"]
        self._fd = fd
        return fd

    def add(self, slug: str, record) -> None:
        from reconciler.state import put_record, registry_data

        line = json.dumps({"slug": slug, "record": None if record is None else registry_data(record)})
        with self.lock:
            fd = self._fd if self._fd is not None else self._open()
            put_record(self.state, slug, record, self.key_id)
            self.added += 1
            self._pending.append(line.encode() + b"\n")
            self._queued += 1
            mine = self._queued
            while True:
                if mine in self._failed:
                    raise self._failed.pop(mine)
                if self._durable >= mine:
                    return
                if self._writing:
                    self._written.wait()
                    continue
                batch, self._pending, self._writing = b"".join(self._pending), [], True
                upto = self._queued
                self.lock.release()
                error = None
                try:
                    os.write(fd, batch)
                    os.fsync(fd)
                except OSError as exc:
                    error = StateError(f"{self.path}: cannot write the state journal: {exc.strerror or exc}")
                finally:
                    self.lock.acquire()
                    self._writing = False
                if error is None:
                    self._durable = upto
                else:
                    for n in range(self._durable + 1, upto + 1):
                        self._failed[n] = error
                    self._durable = upto  # reported to each line it carried, not retried
                self._written.notify_all()

    def close(self) -> None:
        """Compact: the whole state written once, then the journal removed."""
        with self.lock:
            fd, self._fd = self._fd, None
        if fd is None:
            return
        os.close(fd)
        self.store.save(self.state)
        try:
            os.unlink(self.path)
        except OSError:
            pass
