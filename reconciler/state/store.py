"""One state, wherever it lives: load it, lock it, write it, check its key.

A backend (``filebackend``, ``s3``, ``gitstore``) offers ``read``/``write`` (the write
is a compare-and-swap on the version read: an ETag, a commit) and
``try_lock``/``release``/``current_lock``/``force_unlock``. On top of them:

- ``StateStore.load``/``save``: parse, check, and write the whole state once;
- ``StateStore.locked``: the lock for a whole run, with a timeout;
- ``StateStore.writer``: how apply records each change. A local file gets an
  append-only journal (each change on disk before the next step); a shared backend
  gets the state pushed in the background at most every ``push_interval`` seconds
  and once at the end, since a push is a network round trip (a ``git push`` far more).
"""

from __future__ import annotations

import os
import secrets
import threading
from collections.abc import Mapping
from contextlib import contextmanager

from reconciler.errors import StateError
from reconciler.state.location import Location

KEY_ENV = "REGSYNC_STATE_KEY"
PUSH_INTERVAL = 5.0


def open_backend(location: Location, *, repo_dir: str | os.PathLike | None = None):
    """The backend for ``location``; ``repo_dir`` is where a ``git:`` state finds its
    repository (the registries file's directory). Imports boto3 only for ``s3://``."""
    if location.kind == "s3":
        from reconciler.state.s3 import S3Backend

        return S3Backend(location)
    if location.kind == "git":
        from reconciler.state.gitstore import GitBackend

        return GitBackend(location, repo_dir or os.getcwd())
    from reconciler.state.filebackend import FileBackend

    return FileBackend(location)


def new_key() -> str:
    """A random 256-bit key for REGSYNC_STATE_KEY, as 64 hex digits."""
    return secrets.token_hex(32)


def fingerprint_key(location: Location, env: Mapping[str, str], api_token: str) -> bytes:
    """REGSYNC_STATE_KEY; required for a shared state, since each job's token may differ."""
    from reconciler.state import state_key

    explicit = (env.get(KEY_ENV) or "").strip()
    if location.shared and not explicit:
        raise StateError(
            f"{location}: a shared state needs {KEY_ENV}, the key of its fingerprints, the same "
            "in every job (each job's API token may differ); make one with `regsync state new-key` "
            "and give it to every job as a secret"
        )
    return state_key(env, api_token)


def check_key(location: Location, state, fingerprinter, *, rekey: bool = False) -> bool:
    """Refuse a state written with another key before anything is planned; with
    ``rekey``, accept the new key: its fingerprints are dropped (each credential then
    shows "will be set" once). True when the state was rekeyed."""
    if not state.key_id or state.key_id == fingerprinter.key_id:
        return False
    if not any(r.fingerprint for r in state.registries.values()):
        return False
    if not rekey:
        raise StateError(
            f"{location}: this state was written with another {KEY_ENV} (key check "
            f"{state.key_id}, yours {fingerprinter.key_id}; without {KEY_ENV}, the key comes "
            "from the API token); use the key it was written with, or pass --rekey to accept "
            "this one (every credential is then re-set once)"
        )
    from dataclasses import replace

    state.registries = {
        slug: replace(r, fingerprint=None) for slug, r in state.registries.items()
    }
    state.key_id = fingerprinter.key_id
    return True


class StateStore:
    def __init__(self, location: Location, *, repo_dir: str | os.PathLike | None = None, backend=None):
        self.location = location
        self.backend = backend or open_backend(location, repo_dir=repo_dir)
        self.version = None  # what the last read or write saw (ETag, commit); None: no state yet
        self.exists = False
        self.recovered = False  # a local journal was replayed: the file is behind

    def load(self):
        from reconciler.state import parse_state

        text, self.version = self.backend.read()
        self.exists = text is not None
        state = parse_state(str(self.location), text)
        if self.location.kind == "file":
            from reconciler.state.filebackend import replay_journal

            self.recovered = replay_journal(self.location.path, state)
        return state

    def save(self, state) -> None:
        """Write the whole state (serial + 1; the lineage set once) as a compare-and-swap
        on the version this store last saw."""
        from reconciler.state import new_lineage, state_text

        if not state.lineage:
            state.lineage = new_lineage()
        state.serial += 1
        try:
            self.version = self.backend.write(state_text(state), self.version)
        except BaseException:
            state.serial -= 1
            raise
        self.exists = True
        self.recovered = False

    @contextmanager
    def locked(self, operation: str, *, timeout: float = 0.0, on_wait=None):
        from reconciler.state.lock import LockInfo, acquire

        # a try on a shared backend is a network round trip (a push, for git): poll gently
        poll = 0.05 if self.location.kind == "file" else 1.0
        acquire(self.backend, LockInfo.new(operation), timeout=timeout, poll=poll, on_wait=on_wait)
        try:
            yield self
        except BaseException:
            try:
                self.backend.release()
            except StateError:
                pass  # a lost lock: the run's own error says more (e.g. its write refused)
            raise
        self.backend.release()

    def writer(self, state, *, key_id: str, push_interval: float = PUSH_INTERVAL, compact_first: bool = False):
        if compact_first or self.recovered:
            self.save(state)
        if self.location.kind == "file":
            from reconciler.state.filebackend import JournalWriter

            return JournalWriter(self, state, key_id=key_id)
        return PushingWriter(self, state, key_id=key_id, interval=push_interval)


class PushingWriter:
    """Records go to memory at once; the state is pushed at most every ``interval``
    seconds while changes come in, and once more by ``close``. A run that dies between
    pushes loses only records of credentials it set: the next plan shows those as
    "will be set", and the next apply sets them again (no duplicate: the API has the
    registries, and the plan sees them)."""

    def __init__(self, store: StateStore, state, *, key_id: str, interval: float):
        self.store = store
        self.state = state
        self.key_id = key_id
        self.interval = interval
        self.lock = threading.Lock()
        self.added = 0
        self._dirty = False
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._push_lock = threading.Lock()
        self.error: Exception | None = None

    def add(self, slug: str, record) -> None:
        from reconciler.state import put_record

        with self.lock:
            put_record(self.state, slug, record, self.key_id)
            self.added += 1
            self._dirty = True
            if self._thread is None:
                self._thread = threading.Thread(target=self._loop, name="regsync-state-push", daemon=True)
                self._thread.start()

    def _loop(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                self.push()
                self.error = None
            except Exception as exc:  # noqa: BLE001 - tried again later, reported by close
                self.error = exc

    def push(self) -> None:
        from copy import copy

        with self._push_lock:
            with self.lock:
                if not self._dirty:
                    return
                self._dirty = False
                snapshot = copy(self.state)
                snapshot.registries = dict(self.state.registries)
            try:
                self.store.save(snapshot)
            except BaseException:
                with self.lock:
                    self._dirty = True
                raise
            with self.lock:
                self.state.serial, self.state.lineage = snapshot.serial, snapshot.lineage

    def close(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        self.push()
