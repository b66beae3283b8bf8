"""`regsync logs`: the pull logs the Vendor API keeps per registry, filtered and shown.

The API answers logs for one registry at a time (``?endpoint=`` or ``?slug=``), so the
team's registries are listed once and each asked for in turn. Everything in a log entry
comes from outside: the renderers escape control characters and clip every value.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime, timedelta
from typing import TextIO

from reconciler.errors import RegsyncError
from reconciler.model import RegistryLog

#: The longest a value may be in the table; JSON values get more room.
CELL_LIMIT = 60
JSON_LIMIT = 1000

_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}
_PART = re.compile(r"(\d+)([smhdw])")


def parse_duration(text: str) -> timedelta:
    """``90s``, ``30m``, ``24h``, ``7d``, ``2w`` or a sum such as ``1h30m``.

    Raises ValueError with a message for the user."""
    raw = text.strip().lower()
    pos, seconds = 0, 0
    for match in _PART.finditer(raw):
        if match.start() != pos:
            break
        seconds += int(match.group(1)) * _UNITS[match.group(2)]
        pos = match.end()
    if not raw or pos != len(raw) or seconds == 0:
        shown = text if len(text) <= 40 else text[:37] + "..."
        raise ValueError(
            f"{shown!r} is not a duration; write a number and a unit, s m h d or w "
            "(e.g. 30m, 24h, 7d, 1h30m)"
        )
    try:
        return timedelta(seconds=seconds)
    except OverflowError:  # more days than a timedelta holds: longer than any log is old
        return timedelta.max


def parse_time(value: str | None) -> datetime | None:
    """An RFC 3339 timestamp as an aware datetime, or None when absent or unreadable."""
    if not value or not isinstance(value, str):
        return None
    try:
        when = datetime.fromisoformat(value.strip().replace("Z", "+00:00").replace("z", "+00:00"))
    except ValueError:
        return None
    return when if when.tzinfo else when.replace(tzinfo=UTC)


def select(
    logs: Iterable[RegistryLog],
    *,
    since: timedelta | None = None,
    failures: bool = False,
    now: datetime | None = None,
) -> list[RegistryLog]:
    """The entries to show, newest first. With ``since``, only entries with a readable
    date no older than that; with ``failures``, only unsuccessful ones."""
    cutoff = None
    if since is not None:
        try:
            cutoff = (now or datetime.now(UTC)) - since
        except OverflowError:  # a window reaching before year 1 holds every date
            cutoff = datetime.min.replace(tzinfo=UTC)
    out = []
    for entry in logs:
        if failures and entry.is_success:
            continue
        if cutoff is not None:
            when = parse_time(entry.created_at)
            if when is None or when < cutoff:
                continue
        out.append(entry)
    epoch = datetime.min.replace(tzinfo=UTC)
    out.sort(key=lambda e: parse_time(e.created_at) or epoch, reverse=True)
    return out


def fetch(api, slugs: Sequence[str] = ()) -> list[RegistryLog]:
    """The logs of ``slugs`` (every registry of the team when empty). Each log keeps the
    slug it was asked for, whatever the API put in the entry. A slug the team does not
    have is an error naming the team's registries."""
    from dataclasses import replace

    team = [r.slug for r in api.list_registries()]
    wanted = list(dict.fromkeys(slugs)) if slugs else team
    unknown = [s for s in wanted if s not in team]
    if unknown:
        have = ", ".join(clip(s, CELL_LIMIT) for s in sorted(team)) or "none"
        raise RegsyncError(
            f"no registry with slug {', '.join(repr(clip(s, CELL_LIMIT)) for s in unknown)} "
            f"in the team (its registries: {have})"
        )
    out: list[RegistryLog] = []
    for slug in wanted:
        out.extend(replace(entry, slug=slug) for entry in api.registry_logs(slug=slug))
    return out


def clip(text: str, limit: int) -> str:
    """``text`` with control characters escaped (``\\x1b``), cut to ``limit`` characters."""
    from reconciler.render import clipped

    return clipped(str(text), limit)


_HEADER = ("DATE", "REGISTRY", "CUSTOMER", "ACTION", "IMAGE", "TAG", "STATUS", "SUCCESS")


def _row(entry: RegistryLog) -> tuple[str, ...]:
    values = (
        entry.created_at or "-", entry.slug, entry.customer_name or "-", entry.action or "-",
        entry.image or "-", entry.tag or "-", str(entry.status_code or "-"),
        "yes" if entry.is_success else "no",
    )
    return tuple(clip(v, CELL_LIMIT) for v in values)


def render_table(logs: Sequence[RegistryLog], stream: TextIO) -> None:
    rows = [_row(entry) for entry in logs]
    widths = [max(len(x) for x in col) for col in zip(_HEADER, *rows, strict=True)]
    for row in (_HEADER, *rows):
        stream.write("  ".join(v.ljust(w) for v, w in zip(row, widths, strict=True)).rstrip() + "\n")


def render_json(logs: Sequence[RegistryLog], stream: TextIO) -> None:
    def text(value) -> str | None:
        return None if value is None else clip(value, JSON_LIMIT)

    rows = [
        {
            "registry": text(e.slug), "createdAt": text(e.created_at),
            "customerName": text(e.customer_name), "action": text(e.action),
            "image": text(e.image), "tag": text(e.tag), "statusCode": e.status_code,
            "isSuccess": e.is_success, "endpoint": text(e.endpoint),
        }
        for e in logs
    ]
    stream.write(json.dumps(rows, indent=2) + "\n")
