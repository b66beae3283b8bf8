"""The state lock's record (who holds it, since when, for what) and the wait for it.

Each backend stores a LockInfo its own way (a flock'ed file, an S3 object created with
If-None-Match, a git ref created with an empty lease); ``acquire`` polls any of them.
"""

from __future__ import annotations

import getpass
import json
import socket
import time
import uuid
from dataclasses import asdict, dataclass
from datetime import UTC, datetime

from reconciler.errors import StateError

MAX_LOCK_BYTES = 4096


def clean(text: object, limit: int = 200) -> str:
    """Text from outside (a lock's fields, git's or S3's messages) safe for one line."""
    s = str(text)
    s = "".join(c if c.isprintable() else c.encode("unicode_escape").decode("ascii") for c in s)
    return s if len(s) <= limit else s[: limit - 3] + "..."


@dataclass(frozen=True)
class LockInfo:
    id: str
    who: str
    when: str
    operation: str
    version: str

    @classmethod
    def new(cls, operation: str) -> LockInfo:
        from reconciler import __version__

        try:
            user = getpass.getuser()
        except Exception:  # noqa: BLE001 - no user name in some containers
            user = "unknown"
        return cls(
            id=str(uuid.uuid4()),
            who=f"{user}@{socket.gethostname()}",
            when=datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
            operation=operation,
            version=__version__,
        )

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2) + "\n"

    @classmethod
    def from_json(cls, raw: bytes | str) -> LockInfo:
        """Whatever the lock holds, as a LockInfo (unknown fields shown as "?")."""
        try:
            data = json.loads(raw) if 0 < len(raw) <= MAX_LOCK_BYTES else None
        except (ValueError, TypeError):
            data = None
        if not isinstance(data, dict):
            data = {}
        return cls(**{
            name: clean(data.get(name) or "?", 80)
            for name in ("id", "who", "when", "operation", "version")
        })

    def describe(self) -> str:
        return (
            f"lock {self.id} held by {self.who} since {self.when} "
            f"for `regsync {self.operation}` (regsync {self.version})"
        )


def held_error(location: str, holder: LockInfo, waited: float, hint: str) -> StateError:
    return StateError(f"{location} is locked: {holder.describe()}; waited {waited:g}s. {hint}")


def unlock_hint(holder: LockInfo, state_option: str) -> str:
    """For a lock that outlives its run (S3, git)."""
    return (f"If that run has finished or died, remove the lock with: "
            f"regsync state unlock {holder.id}{state_option}")


def acquire(backend, info: LockInfo, *, timeout: float, poll: float = 0.2, on_wait=None) -> None:
    """Take ``backend``'s lock for ``info``, polling until ``timeout`` seconds;
    ``on_wait(holder)`` is called once, when it starts waiting."""
    deadline = time.monotonic() + max(0.0, timeout)
    delay = min(poll, 0.05)
    waiting = False
    while True:
        holder = backend.try_lock(info)
        if holder is None:
            return
        if time.monotonic() >= deadline:
            raise held_error(str(backend.location), holder, timeout, backend.unlock_hint(holder))
        if not waiting and on_wait is not None:
            on_wait(holder)
        waiting = True
        time.sleep(min(delay, max(0.0, deadline - time.monotonic())))
        delay = min(delay * 2, poll)


def check_unlock(location: object, holder: LockInfo | None, lock_id: str) -> LockInfo:
    """The lock `state unlock LOCK_ID` may remove: refuses none, or another ID."""
    if holder is None:
        raise StateError(f"{location} is not locked; nothing to unlock")
    if holder.id != lock_id:
        raise StateError(f"{location} is locked with another ID: {holder.describe()}; not unlocked")
    return holder


def parse_duration(text: str) -> float:
    """``30s``, ``2m``, ``1h``, ``500ms`` or plain seconds, as seconds. Raises ValueError."""
    s = text.strip().lower()
    units = (("ms", 0.001), ("s", 1.0), ("m", 60.0), ("h", 3600.0))
    number, factor = s, 1.0
    for suffix, unit in units:
        if s.endswith(suffix) and not (suffix == "s" and s.endswith("ms")):
            number, factor = s[: -len(suffix)], unit
            break
    try:
        value = float(number) * factor
    except ValueError:
        raise ValueError(f"{text!r} is not a duration (e.g. 30s, 2m)") from None
    if not value >= 0 or value == float("inf"):
        raise ValueError(f"{text!r} is not a duration (e.g. 30s, 2m)")
    return value
