"""The state: what regsync last set, so a plan can tell a changed secret from an
unchanged one although the API never returns a password.

This module holds the state's data and its text form, the fingerprints and their key,
and the local file's primitives; where a state lives and how it is shared are in
``location`` (the forms), ``store`` (load, lock, write), and one module per backend
(``filebackend``, ``s3``, ``gitstore``).

It holds, per slug, a keyed fingerprint (HMAC-SHA256) of the credential regsync last
sent and the API's ``updatedAt`` right after that change; never a secret. Keyed with
``REGSYNC_STATE_KEY`` when set, else with a key derived from the API token, so the file
alone does not let anyone test password guesses.

Writes are atomic (temp file in the same directory, fsync, ``os.replace``, mode 0600);
``StateLock`` serialises applies with an exclusive ``flock`` on ``<path>.lock``.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from reconciler.errors import StateError, outside

if TYPE_CHECKING:  # validate imports reconciler.state.location; keep this package light
    from reconciler.model import DesiredRegistry

STATE_FORMAT_VERSION = 1

_KEY_DERIVATION_SALT = b"regsync-state-key-v1"
_FINGERPRINT_PREFIX = "hmac-sha256:"


@dataclass
class RegistryState:
    provider: str
    endpoint: str
    fingerprint: str | None  # "hmac-sha256:<hex>" of the credential regsync last set
    updated_at: str | None  # the API's updatedAt right after regsync's own change
    team_id: str | None = None  # the API's teamId then: a record is only good for that team
    set_at: str | None = None  # when regsync recorded it (UTC, this machine's clock)


@dataclass
class State:
    serial: int = 0
    lineage: str = ""  # uuid4 hex, set on first save
    key_id: str = ""  # short id of the fingerprint key (not the key)
    registries: dict[str, RegistryState] = field(default_factory=dict)

    def to_data(self) -> dict:
        return {
            "format_version": STATE_FORMAT_VERSION,
            "serial": self.serial,
            "lineage": self.lineage,
            "key_id": self.key_id,
            "registries": {
                slug: registry_data(r) for slug, r in sorted(self.registries.items())
            },
        }


def put_record(state: State, slug: str, record: RegistryState | None, key_id: str) -> None:
    """One change recorded in ``state``: a registry's new record, or None for a delete;
    ``key_id`` is the key of the newest fingerprints."""
    if record is None:
        state.registries.pop(slug, None)
    else:
        state.registries[slug] = record
    state.key_id = key_id


def new_lineage() -> str:
    return uuid.uuid4().hex


def registry_data(r: RegistryState) -> dict:
    data = {
        "provider": r.provider,
        "endpoint": r.endpoint,
        "fingerprint": r.fingerprint,
        "updated_at": r.updated_at,
    }
    if r.team_id:  # absent from files written before it was recorded
        data["team_id"] = r.team_id
    if r.set_at:
        data["set_at"] = r.set_at
    return data


def _not_a_state(path: str, what: str) -> StateError:
    return StateError(
        f"{path}: not a regsync state file ({what}); restore it from a backup, "
        "or delete it to start over (every credential will then be re-set)"
    )


def registry_from_data(path: str, slug: str, entry: object) -> RegistryState:
    if not isinstance(entry, dict):  # the slug as read: escaped and clipped in the message
        raise _not_a_state(path, f"registries.{outside(slug, 80)} is not an object")
    values = {}
    for name in ("provider", "endpoint", "fingerprint", "updated_at", "team_id", "set_at"):
        value = entry.get(name)
        if value is not None and not isinstance(value, str):
            raise _not_a_state(path, f"registries.{outside(slug, 80)}.{name} is not a string")
        values[name] = value
    return RegistryState(
        provider=values["provider"] or "",
        endpoint=values["endpoint"] or "",
        fingerprint=values["fingerprint"],
        updated_at=values["updated_at"],
        team_id=values["team_id"] or None,
        set_at=values["set_at"] or None,
    )


def state_text(state: State) -> str:
    return json.dumps(state.to_data(), indent=2) + "\n"


def _state_from_data(path: str, data: object) -> State:
    def bad(what: str) -> StateError:
        return _not_a_state(path, what)

    if not isinstance(data, dict):
        raise bad("the document is not a JSON object")
    version = data.get("format_version")
    if not isinstance(version, int) or isinstance(version, bool):
        raise bad("format_version is missing")
    if version > STATE_FORMAT_VERSION:
        raise StateError(
            f"{path}: the state file has format_version {version}, newer than this "
            f"regsync understands ({STATE_FORMAT_VERSION}); upgrade regsync"
        )
    if version < 1:
        raise bad(f"format_version {version} is not valid")
    serial, lineage, key_id = data.get("serial", 0), data.get("lineage", ""), data.get("key_id", "")
    if not isinstance(serial, int) or isinstance(serial, bool) or serial < 0:
        raise bad("serial is not a non-negative integer")
    if not isinstance(lineage, str) or not isinstance(key_id, str):
        raise bad("lineage and key_id must be strings")
    raw = data.get("registries") or {}
    if not isinstance(raw, dict):
        raise bad("registries is not an object")
    registries = {slug: registry_from_data(path, slug, entry) for slug, entry in raw.items()}
    return State(serial=serial, lineage=lineage, key_id=key_id, registries=registries)


def load_state(path) -> State:
    """The state in the local file ``path`` (with the journal of an apply that died
    replayed onto it); an empty State when the file does not exist yet."""
    from reconciler.state.filebackend import replay_journal

    path = os.fspath(path)
    state = parse_state(path, read_text(path, what="state file", error=StateError, missing_ok=True))
    replay_journal(path, state)
    return state


def parse_state(path: str, text: str | None) -> State:
    """The State in ``text`` (read from ``path``, named in errors); empty for None."""
    if text is None:
        return State()
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise StateError(
            f"{path}:{exc.lineno}:{exc.colno}: the state file is not valid JSON ({exc.msg}); "
            "restore it from a backup, or delete it to start over "
            "(every credential will then be re-set)"
        ) from exc
    return _state_from_data(path, data)


def read_text(path: str, *, what: str, error: type[Exception], missing_ok: bool = False) -> str | None:
    """The UTF-8 text of ``path`` (None when it does not exist and ``missing_ok``); a
    file that cannot be read raises ``error`` naming the file and what it is."""
    try:
        return Path(path).read_text(encoding="utf-8")
    except FileNotFoundError as exc:
        if missing_ok:
            return None
        reason = exc.strerror
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
    raise error(f"{path}: cannot read the {what}: {reason}")


def write_atomic(path: str, text: str) -> None:
    """Write ``text`` to ``path`` atomically with mode 0600. Raises OSError."""
    import tempfile

    directory = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(dir=directory, prefix=f".{os.path.basename(path)}.", suffix=".tmp")
    try:
        os.fchmod(fd, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
    try:  # make the rename itself durable; not every filesystem allows this
        dir_fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(dir_fd)
    except OSError:
        pass
    finally:
        os.close(dir_fd)


def save_state(path, state: State) -> None:
    """Write ``state`` to the local file ``path`` at once (serial + 1, the lineage set
    once). apply records through ``store.StateStore.writer`` instead."""
    from reconciler.state.location import Location
    from reconciler.state.store import StateStore

    StateStore(Location("file", os.fspath(path))).save(state)


class StateLock:
    """The lock of a local state file, as ``with StateLock(path):`` (an exclusive
    ``flock`` on ``<path>.lock`` holding who took it). A second holder polls until
    ``timeout`` seconds, then fails naming the holder. The operating system releases
    the lock when its process ends. Other backends lock through ``store.StateStore``."""

    def __init__(self, path, *, timeout: float = 0.0, poll: float = 0.05, operation: str = "apply"):
        from reconciler.state.filebackend import FileBackend
        from reconciler.state.location import Location

        self.path = os.fspath(path)
        self.backend = FileBackend(Location("file", self.path))
        self.lock_path = self.backend.lock_path
        self.timeout = timeout
        self.poll = poll
        self.operation = operation

    def acquire(self) -> None:
        from reconciler.state.lock import LockInfo, acquire

        acquire(self.backend, LockInfo.new(self.operation), timeout=self.timeout, poll=self.poll)

    def release(self) -> None:
        self.backend.release()

    def __enter__(self) -> StateLock:
        self.acquire()
        return self

    def __exit__(self, *exc) -> None:
        self.release()


class Fingerprinter:
    """Keyed fingerprints of credentials: HMAC-SHA256, so they cannot be tested
    against guesses without the key."""

    def __init__(self, key: bytes):
        if not key:
            raise ValueError("the fingerprint key is empty")
        self._key = bytes(key)
        self.key_id = hmac.new(self._key, b"regsync-key-id-v1", hashlib.sha256).hexdigest()[:8]

    def __repr__(self) -> str:
        return f"Fingerprinter(key_id={self.key_id!r})"

    def fingerprint(self, reg: DesiredRegistry) -> str:
        if reg.secret is None:
            raise ValueError(f"{reg.label}: the credential is not resolved")
        message = json.dumps(
            [reg.slug, reg.auth_type, reg.username, reg.secret.reveal()],
            separators=(",", ":"),
        ).encode()
        return _FINGERPRINT_PREFIX + hmac.new(self._key, message, hashlib.sha256).hexdigest()


def state_key(env: Mapping[str, str], api_token: str) -> bytes:
    """``REGSYNC_STATE_KEY`` when set, else a key derived from the API token."""
    explicit = (env.get("REGSYNC_STATE_KEY") or "").strip()
    if explicit:
        return explicit.encode()
    if not api_token:
        raise StateError(
            "no key for the state file's fingerprints: set REGSYNC_STATE_KEY or "
            "REPLICATED_API_TOKEN"
        )
    return hmac.new(_KEY_DERIVATION_SALT, api_token.encode(), hashlib.sha256).digest()
