"""The sandbox's state: registries and test logs in SQLite, passwords sealed with AES-GCM.

One connection guarded by one lock (``:memory:`` databases cannot be shared across
connections). Each password is encrypted with a fresh 96-bit nonce, and the row's
slug as associated data, so a sealed password copied onto another row fails to open.
"""

from __future__ import annotations

import base64
import builtins
import json
import os
import sqlite3
import stat
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from reconciler.errors import SandboxError
from reconciler.secretvalue import Secret

KEY_ENV = "REGSYNC_SANDBOX_KEY"
TEAM_ID = "sandbox-team"
_AAD_PREFIX = b"regsync-sandbox/v1/registry/"

_SCHEMA = """
CREATE TABLE IF NOT EXISTS registries (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    slug TEXT NOT NULL UNIQUE,
    provider TEXT NOT NULL,
    endpoint TEXT NOT NULL,
    auth_type TEXT NOT NULL,
    username TEXT NOT NULL,
    sealed_password BLOB NOT NULL,
    app_ids TEXT NOT NULL,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL,
    last_used_at TEXT
);
CREATE TABLE IF NOT EXISTS logs (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    action TEXT NOT NULL,
    endpoint TEXT NOT NULL,
    slug TEXT NOT NULL,
    image TEXT NOT NULL,
    tag TEXT NOT NULL,
    status_code INTEGER NOT NULL,
    is_success INTEGER NOT NULL,
    created_at TEXT NOT NULL
);
"""


def now_rfc3339(after: str | None = None) -> str:
    """The current UTC time, RFC 3339 with microseconds; strictly later than ``after``."""
    now = datetime.now(UTC)
    if after:
        previous = datetime.fromisoformat(after.replace("Z", "+00:00"))
        if now <= previous:
            now = previous + timedelta(microseconds=1)
    return now.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def load_key(*, db: str, key_file: str | None = None, env: Mapping[str, str] | None = None) -> bytes:
    """The 32-byte AES key: ``REGSYNC_SANDBOX_KEY`` (base64), else a key file beside
    the db (``<db>.key``), created with mode 0600 when missing. A key file others can
    read is refused. An in-memory db without either gets a throwaway key."""
    env = os.environ if env is None else env
    if env.get(KEY_ENV):
        try:
            key = base64.b64decode(env[KEY_ENV], validate=True)
        except ValueError:
            raise SandboxError(f"{KEY_ENV} is not valid base64") from None
        if len(key) != 32:
            raise SandboxError(f"{KEY_ENV} must be 32 bytes once base64-decoded, not {len(key)}")
        return key
    if key_file is None:
        if db == ":memory:":
            return os.urandom(32)
        key_file = db + ".key"
    path = Path(key_file)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return _read_key_file(path)
    except OSError as exc:
        raise SandboxError(f"cannot create the sandbox key file {path}: {exc.strerror}") from exc
    key = os.urandom(32)
    with os.fdopen(fd, "wb") as fh:
        fh.write(base64.b64encode(key) + b"\n")
    return key


def _read_key_file(path: Path) -> bytes:
    try:
        mode = stat.S_IMODE(path.stat().st_mode)
        if mode & 0o077:
            raise SandboxError(
                f"the sandbox key file {path} has mode {mode:04o}; it must be readable by "
                f"its owner only (chmod 600 {path})"
            )
        raw = path.read_bytes().strip()
    except OSError as exc:
        raise SandboxError(f"cannot read the sandbox key file {path}: {exc.strerror}") from exc
    try:
        key = base64.b64decode(raw, validate=True)
    except ValueError:
        raise SandboxError(f"the sandbox key file {path} is not base64") from None
    if len(key) != 32:
        raise SandboxError(f"the sandbox key file {path} must hold 32 bytes, not {len(key)}")
    return key


def _refuse_loose_db(path: Path) -> None:
    """An existing database others can read is refused, like a loose key file: it
    holds the sealed credentials, and together with a readable key, the passwords."""
    try:
        mode = stat.S_IMODE(path.stat().st_mode)
    except FileNotFoundError:
        return
    if mode & 0o077:
        raise SandboxError(
            f"the sandbox database {path} has mode {mode:04o}; it must be readable by its "
            f"owner only (chmod 600 {path})"
        )


@dataclass(frozen=True)
class StoredRegistry:
    slug: str
    provider: str
    endpoint: str
    auth_type: str
    username: str
    app_ids: tuple[str, ...]
    created_at: str
    updated_at: str
    last_used_at: str | None

    def to_api(self, team_id: str = TEAM_ID) -> dict:
        return {
            "provider": self.provider,
            "endpoint": self.endpoint,
            "slug": self.slug,
            "authType": self.auth_type,
            "username": self.username,
            "appIds": list(self.app_ids),
            "teamId": team_id,
            "createdAt": self.created_at,
            "updatedAt": self.updated_at,
            "isReplicated": False,
            "lastUsedAt": self.last_used_at,
        }


class DuplicateSlug(Exception):
    pass


class Store:
    def __init__(self, *, db: str, key: bytes, team_id: str = TEAM_ID):
        from cryptography.hazmat.primitives.ciphers.aead import AESGCM

        if not isinstance(key, bytes) or len(key) != 32:
            raise SandboxError("the sandbox key must be 32 bytes")
        self._aead = AESGCM(key)
        self.team_id = team_id  # the teamId every registry of this sandbox answers with
        self._lock = threading.Lock()
        try:
            if db != ":memory:" and not db.startswith("file:"):
                _refuse_loose_db(Path(db))
                os.close(os.open(db, os.O_WRONLY | os.O_CREAT, 0o600))  # new db: owner only
            self._db = sqlite3.connect(db, check_same_thread=False, isolation_level=None)
            self._db.executescript(_SCHEMA)
        except OSError as exc:
            raise SandboxError(f"cannot open the sandbox database {db}: {exc.strerror}") from exc
        except sqlite3.Error as exc:
            raise SandboxError(f"cannot open the sandbox database {db}: {exc}") from exc
        self._check_key(db)

    def _check_key(self, db: str) -> None:
        """Refuse to start with a key that does not open the stored credentials."""
        row = self._db.execute("SELECT slug, sealed_password FROM registries LIMIT 1").fetchone()
        if row is not None:
            try:
                self._open(*row)
            except SandboxError:
                self._db.close()
                raise SandboxError(
                    f"the sandbox key does not open the credentials stored in {db} (use the "
                    f"key it was created with: {KEY_ENV} or the key file beside it)"
                ) from None

    def close(self) -> None:
        with self._lock:
            self._db.close()

    # -- sealing -------------------------------------------------------------------
    def _seal(self, slug: str, password: Secret) -> bytes:
        nonce = os.urandom(12)
        aad = _AAD_PREFIX + slug.encode()
        return nonce + self._aead.encrypt(nonce, password.reveal().encode(), aad)

    def _open(self, slug: str, sealed: bytes) -> Secret:
        from cryptography.exceptions import InvalidTag

        try:
            plain = self._aead.decrypt(sealed[:12], sealed[12:], _AAD_PREFIX + slug.encode())
        except InvalidTag:
            raise SandboxError(
                f"the stored credentials of {slug!r} do not open with this key "
                "(wrong REGSYNC_SANDBOX_KEY or key file?)"
            ) from None
        return Secret(plain.decode())

    # -- registries ----------------------------------------------------------------
    _COLUMNS = "slug, provider, endpoint, auth_type, username, app_ids, created_at, updated_at, last_used_at"

    @staticmethod
    def _row(row) -> StoredRegistry:
        slug, provider, endpoint, auth_type, username, app_ids, created, updated, used = row
        return StoredRegistry(slug, provider, endpoint, auth_type, username,
                              tuple(json.loads(app_ids)), created, updated, used)

    def list(self) -> list[StoredRegistry]:
        with self._lock:
            rows = self._db.execute(f"SELECT {self._COLUMNS} FROM registries ORDER BY seq").fetchall()
        return [self._row(r) for r in rows]

    def get(self, slug: str) -> StoredRegistry | None:
        with self._lock:
            row = self._db.execute(
                f"SELECT {self._COLUMNS} FROM registries WHERE slug = ?", (slug,)
            ).fetchone()
        return None if row is None else self._row(row)

    def saved_for(self, endpoint: str) -> StoredRegistry | None:
        """The first registry (in creation order) saved for ``endpoint``."""
        with self._lock:
            row = self._db.execute(
                f"SELECT {self._COLUMNS} FROM registries WHERE endpoint = ? ORDER BY seq LIMIT 1",
                (endpoint,),
            ).fetchone()
        return None if row is None else self._row(row)

    def password(self, slug: str) -> Secret | None:
        with self._lock:
            row = self._db.execute(
                "SELECT sealed_password FROM registries WHERE slug = ?", (slug,)
            ).fetchone()
        return None if row is None else self._open(slug, row[0])

    def create(self, *, slug, provider, endpoint, auth_type, username,
               password: Secret, app_ids) -> StoredRegistry:
        now = now_rfc3339()
        sealed = self._seal(slug, password)
        with self._lock:
            try:
                self._db.execute(
                    "INSERT INTO registries (slug, provider, endpoint, auth_type, username, "
                    "sealed_password, app_ids, created_at, updated_at) VALUES (?,?,?,?,?,?,?,?,?)",
                    (slug, provider, endpoint, auth_type, username, sealed,
                     json.dumps(list(app_ids)), now, now),
                )
            except sqlite3.IntegrityError:
                raise DuplicateSlug(slug) from None
        return StoredRegistry(slug, provider, endpoint, auth_type, username,
                              tuple(app_ids), now, now, None)

    def update(self, slug: str, *, password: Secret | None = None, **changes) -> StoredRegistry | None:
        """Apply ``changes`` (provider, endpoint, auth_type, username, app_ids) and bump
        updated_at. None when the registry is gone."""
        with self._lock:
            row = self._db.execute(
                "SELECT updated_at FROM registries WHERE slug = ?", (slug,)
            ).fetchone()
            if row is None:
                return None
            sets = {k: v for k, v in changes.items() if v is not None}
            if "app_ids" in sets:
                sets["app_ids"] = json.dumps(list(sets["app_ids"]))
            if password is not None:
                sets["sealed_password"] = self._seal(slug, password)
            sets["updated_at"] = now_rfc3339(after=row[0])
            assignments = ", ".join(f"{column} = ?" for column in sets)
            self._db.execute(
                f"UPDATE registries SET {assignments} WHERE slug = ?", (*sets.values(), slug)
            )
        return self.get(slug)

    def touch(self, slug: str) -> None:
        """Record a successful pull with the saved credentials (lastUsedAt)."""
        with self._lock:
            self._db.execute(
                "UPDATE registries SET last_used_at = ? WHERE slug = ?", (now_rfc3339(), slug)
            )

    def delete(self, slug: str) -> bool:
        with self._lock:
            cursor = self._db.execute("DELETE FROM registries WHERE slug = ?", (slug,))
        return cursor.rowcount > 0

    # -- logs ----------------------------------------------------------------------
    def add_log(self, *, action, endpoint, slug, image, tag, status_code, is_success) -> None:
        with self._lock:
            self._db.execute(
                "INSERT INTO logs (action, endpoint, slug, image, tag, status_code, is_success, "
                "created_at) VALUES (?,?,?,?,?,?,?,?)",
                (action, endpoint, slug, image, tag, status_code, int(is_success), now_rfc3339()),
            )

    def logs(self, *, slug: str | None = None, endpoint: str | None = None) -> builtins.list[dict]:
        """Newest first; ``endpoint`` matches an entry's endpoint or its slug (the
        official CLI sends a registry's name as ``endpoint``)."""
        where, args = [], []
        if slug:
            where.append("slug = ?")
            args.append(slug)
        if endpoint:
            where.append("(endpoint = ? OR slug = ?)")
            args += [endpoint, endpoint]
        clause = f"WHERE {' AND '.join(where)}" if where else ""
        with self._lock:
            rows = self._db.execute(
                "SELECT action, endpoint, slug, image, tag, status_code, is_success, created_at "
                f"FROM logs {clause} ORDER BY id DESC", args
            ).fetchall()
        return [
            {"action": a, "createdAt": c, "customerName": "", "endpoint": e, "image": i,
             "isSuccess": bool(s), "slug": sl, "statusCode": code, "tag": t}
            for a, e, sl, i, t, code, s, c in rows
        ]

    def reset(self) -> None:
        with self._lock:
            self._db.execute("DELETE FROM registries")
            self._db.execute("DELETE FROM logs")
