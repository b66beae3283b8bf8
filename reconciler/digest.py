"""The plan digest: one ``sha256:`` value that ties what apply does to what was reviewed.

It is computed over the changes apply would make (action, slug, provider, each
non-secret field's old and new value, the reasons) and, for every change that sets a
credential, the keyed fingerprint of that credential (``reconciler.state.Fingerprinter``):
a changed secret changes the digest, and the digest never holds or reveals a secret.
Nothing machine-specific goes in (no path, no time, no ``lastUsedAt``), so the same
file, secrets, state key and team give the same digest on any machine.

Each change also gets a short digest of its own (``items``), written beside the plan
digest in the markdown and JSON plans, so that ``apply --expect-plan FILE`` can say
which changes differ from the reviewed plan, not only that something does.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass
from pathlib import Path

from reconciler.errors import PlanError
from reconciler.plan import Change, Plan

_VERSION = "regsync-plan-digest-v1"
_DIGEST_RE = re.compile(r"sha256:[0-9a-f]{64}")
MARKER = "regsync-plan-digest"
ITEMS_MARKER = "regsync-plan-changes"
FILE_MARKER = "regsync-plan-file"
_MAX_FILE = 4 * 1024 * 1024  # a reviewed plan or a comment body: far below this


def _plain(value: object) -> object:
    return list(value) if isinstance(value, tuple) else value


def _canonical(change: Change, fingerprinter) -> list:
    fields = []
    for f in change.fields:
        if f.secret:
            fp = fingerprinter.fingerprint(change.desired) if change.desired is not None else None
            fields.append([f.name, f.new, fp])
        else:
            fields.append([f.name, _plain(f.old), _plain(f.new)])
    remote = change.remote
    where = [remote.endpoint, remote.updated_at] if change.action == "delete" and remote else None
    return [change.action, change.slug, change.provider, fields, list(change.reasons), where]


def _sha(value: object) -> str:
    text = json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=True)
    return hashlib.sha256(text.encode()).hexdigest()


def items(plan: Plan, fingerprinter) -> list[dict]:
    """One entry per pending change: action, slug and a 16-hex digest of that change."""
    return [
        {"action": c.action, "slug": c.slug, "digest": _sha([_VERSION, _canonical(c, fingerprinter)])[:16]}
        for c in plan.pending
    ]


def plan_digest(plan: Plan, fingerprinter) -> str:
    """``sha256:`` + 64 hex digits over every pending change, in apply order."""
    return "sha256:" + _sha([_VERSION, [_canonical(c, fingerprinter) for c in plan.pending]])


# --- hidden markers in markdown ---------------------------------------------------

def comment_safe(text: str) -> str:
    """``text`` that cannot end an HTML comment (``-->``) or break the marker's line."""
    return "".join(
        f"%{ord(ch):02X}" if ch in "%->:" or not ch.isprintable() or ch.isspace() else ch
        for ch in text
    )


def file_marker(path: str) -> str:
    """The hidden line that names the registries file a plan comment is for."""
    return f"<!-- {FILE_MARKER}: {comment_safe(path)} -->"


#: Past this many changes the per-change list is left out of the markdown (a comment
#: holds 65,536 characters); --expect-plan then says how the plan differs in counts.
MAX_MARKED_ITEMS = 200


def digest_markers(digest: str, change_items: list[dict]) -> list[str]:
    if len(change_items) > MAX_MARKED_ITEMS:
        return [f"<!-- {MARKER}: {digest} -->"]
    listed = " ".join(f"{i['action']}:{comment_safe(i['slug'])}:{i['digest']}" for i in change_items)
    return [f"<!-- {MARKER}: {digest} -->", f"<!-- {ITEMS_MARKER}: {listed} -->"]


# --- what was reviewed --------------------------------------------------------------

@dataclass(frozen=True)
class Reviewed:
    """The digest a reviewer saw, and its changes when the source had them."""

    digest: str
    items: tuple[tuple[str, str, str], ...] | None = None  # (action, slug, digest)
    source: str = ""


_MARKER_RE = re.compile(r"<!-- " + MARKER + r": (sha256:[0-9a-f]{64}) -->")
_ITEMS_RE = re.compile(r"<!-- " + ITEMS_MARKER + r": ([^\n]*?) ?-->")


def _unquote(text: str) -> str:
    return re.sub(r"%([0-9A-F]{2})", lambda m: chr(int(m.group(1), 16)), text)


def reviewed_from_text(text: str, *, source: str) -> Reviewed | None:
    """The digest (and changes) in a markdown plan, a plan comment or a JSON plan."""
    found = _MARKER_RE.findall(text)
    if found:
        if len(set(found)) > 1:
            raise PlanError(f"{source}: holds {len(set(found))} different plan digests; give one")
        listed = _ITEMS_RE.search(text)
        parsed: tuple[tuple[str, str, str], ...] | None = None
        if listed is not None:
            words = (word.split(":") for word in listed.group(1).split())
            parsed = tuple((parts[0], _unquote(parts[1]), parts[2]) for parts in words if len(parts) == 3)
        return Reviewed(found[0], parsed, source)
    try:
        data = json.loads(text)
    except (ValueError, RecursionError):  # not JSON, or nested past Python's limit
        return None
    if isinstance(data, dict) and isinstance(data.get("digest"), str) and _DIGEST_RE.fullmatch(data["digest"]):
        listed = data.get("digest_items")
        parsed = None
        if isinstance(listed, list) and all(isinstance(i, dict) for i in listed):
            parsed = tuple((str(i.get("action")), str(i.get("slug")), str(i.get("digest"))) for i in listed)
        return Reviewed(data["digest"], parsed, source)
    return None


def parse_expected(value: str) -> Reviewed:
    """``--expect-plan``: a ``sha256:...`` digest, or a file holding one (a markdown plan,
    the plan comment's body, or a JSON plan)."""
    value = value.strip()
    if _DIGEST_RE.fullmatch(value):
        return Reviewed(value)
    path = Path(value)
    if value.startswith("sha256:") or not path.is_file():
        raise PlanError(
            f"--expect-plan {value[:80]!r}: expected sha256: and 64 lowercase hex digits, "
            "or a file holding a regsync plan (markdown or JSON)"
        )
    try:
        with open(path, "rb") as f:
            raw = f.read(_MAX_FILE + 1)
    except OSError as exc:
        raise PlanError(f"{value}: cannot read the reviewed plan: {exc.strerror}") from exc
    if len(raw) > _MAX_FILE:
        raise PlanError(f"{value}: too large for a reviewed plan (over {_MAX_FILE} bytes)")
    reviewed = reviewed_from_text(raw.decode("utf-8", "replace"), source=value)
    if reviewed is None:
        raise PlanError(f"{value}: holds no regsync plan digest (<!-- {MARKER}: ... -->)")
    return reviewed


def _label(item: tuple[str, str, str]) -> str:
    from reconciler.render import printable

    return f"{item[0]} {printable(item[1])[:80]}"


def check_expected(reviewed: Reviewed, plan: Plan, fingerprinter) -> None:
    """Raise PlanError, saying what differs, unless ``plan`` is exactly the reviewed one."""
    now = plan.digest or plan_digest(plan, fingerprinter)
    if now == reviewed.digest:
        return
    head = (
        f"the plan differs from the reviewed plan (reviewed {reviewed.digest[:19]}..., "
        f"now {now[:19]}...)"
    )
    if reviewed.items is not None:
        current = {(i["action"], i["slug"]): i["digest"] for i in items(plan, fingerprinter)}
        before = {(a, s): d for a, s, d in reviewed.items}
        gone = [k for k in before if k not in current]
        new = [k for k in current if k not in before]
        changed = [k for k in current if k in before and current[k] != before[k]]
        parts = []
        for what, keys in (("no longer planned", gone), ("not reviewed", new),
                           ("changed since the review", changed)):
            if keys:
                shown = ", ".join(_label((a, s, "")) for a, s in sorted(keys)[:5])
                more = f" and {len(keys) - 5} more" if len(keys) > 5 else ""
                parts.append(f"{what}: {shown}{more}")
        detail = "; ".join(parts) or "the same changes, in another form (the secrets, state key or team changed)"
    else:
        detail = f"now: {plan.summary_line()}"
    raise PlanError(
        f"{head}: {detail}. Nothing was changed; run regsync plan, review the new plan, "
        "and apply that one"
    )
