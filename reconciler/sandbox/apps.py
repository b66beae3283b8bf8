"""The team's apps, as the Vendor API's ``GET /v3/apps`` lists them (the official
CLI's ``ListApps``): seeded by ``regsync sandbox --app SLUG[=ID]``, replaced
by ``POST /_sandbox/apps`` or ``SandboxServer.set_apps``, kept in memory, back to the
seeds on reset.

An app's ID, unless given, is derived from its slug, so the same seed gives the same
IDs on every run (registries' ``appIds`` can then be written down in tests).
"""

from __future__ import annotations

import hashlib
import re
import threading
from dataclasses import dataclass

from reconciler.sandbox.store import now_rfc3339

_SLUG = re.compile(r"^[a-z0-9](?:[a-z0-9-]{0,98}[a-z0-9])?$")
_ID = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
MAX_APPS = 1000


@dataclass(frozen=True)
class App:
    id: str
    name: str
    slug: str
    created: str

    def to_api(self, team_id: str) -> dict:
        return {"id": self.id, "name": self.name, "slug": self.slug, "teamId": team_id,
                "created": self.created, "isArchived": False, "isKotsApp": True}


def app_id(slug: str) -> str:
    """The ID an app seeded without one gets: stable for its slug."""
    return hashlib.sha256(b"regsync-sandbox/app/" + slug.encode()).hexdigest()[:27]


def make_app(*, slug, name=None, id=None) -> App:  # noqa: A002 - the API's field name
    """An app from untrusted input; ValueError naming the field that is wrong."""
    if not isinstance(slug, str) or not _SLUG.match(slug):
        raise ValueError(f"app slug {slug!r} must be lowercase letters, digits and dashes "
                         "(at most 100, not starting or ending with a dash)")
    if name is None:
        name = slug
    if not isinstance(name, str) or not name.strip() or len(name) > 200 or not name.isprintable():
        raise ValueError(f"the name of app {slug!r} must be printable text of 1 to 200 characters")
    if id is None:
        id = app_id(slug)  # noqa: A001
    if not isinstance(id, str) or not _ID.match(id):
        raise ValueError(f"the id of app {slug!r} must be 1 to 64 letters, digits, '-' or '_'")
    return App(id=id, name=name, slug=slug, created=now_rfc3339())


def parse_app_option(text: str) -> App:
    """``SLUG`` or ``SLUG=ID`` (the ``--app`` option); ValueError with a hint."""
    slug, sep, given = text.partition("=")
    try:
        return make_app(slug=slug, id=given if sep else None)
    except ValueError as exc:
        raise ValueError(f"--app {text!r}: {exc} (write SLUG or SLUG=ID)") from None


class Apps:
    """The apps the sandbox's team has; thread-safe."""

    def __init__(self, seeds=()):
        self._lock = threading.Lock()
        self._seeds = _apps(seeds)
        self._apps = list(self._seeds)

    def list(self) -> list[App]:
        with self._lock:
            return list(self._apps)

    def reset(self) -> None:
        with self._lock:
            self._apps = list(self._seeds)

    def replace(self, entries) -> None:
        """The team's apps are ``entries`` now (``App``s or mappings with ``slug`` and
        optional ``name``, ``id``); everything is checked first, ValueError changes nothing."""
        apps = _apps(entries)
        with self._lock:
            self._apps = list(apps)

    def configure(self, data) -> None:
        """The body of ``POST /_sandbox/apps``: ``{"apps": [{"slug", "name"?, "id"?}]}``,
        replacing the apps before."""
        if not isinstance(data, dict) or not set(data) <= {"apps"}:
            raise ValueError('the apps body must be {"apps": [{"slug": ..., "name": ..., "id": ...}]}')
        entries = data.get("apps") or []
        if not isinstance(entries, list):
            raise ValueError("apps must be a list")
        self.replace(entries)


def _apps(entries) -> tuple[App, ...]:
    apps = []
    for entry in entries:
        if isinstance(entry, App):
            apps.append(entry)
            continue
        if not isinstance(entry, dict) or not set(entry) <= {"slug", "name", "id"}:
            raise ValueError('each app must be an object with "slug" and optional "name", "id"')
        apps.append(make_app(slug=entry.get("slug"), name=entry.get("name"), id=entry.get("id")))
    _check_unique(apps)
    return tuple(apps)


def _check_unique(apps) -> None:
    if len(apps) > MAX_APPS:
        raise ValueError(f"a sandbox team holds at most {MAX_APPS} apps")
    for field in ("slug", "id"):
        seen = set()
        for app in apps:
            value = getattr(app, field)
            if value in seen:
                raise ValueError(f"two apps have the {field} {value!r}")
            seen.add(value)
