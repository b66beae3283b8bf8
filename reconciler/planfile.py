"""Saved plans (``regsync plan --out``): applied exactly, or refused as stale.

A plan file ties what is applied to what was reviewed: the digest of the registries
file, a digest of the team's registries as listed, the keyed fingerprint of each secret
(never the secret) and the plan's data. ``check_fresh`` refuses a plan when any of these
no longer holds, with the reason.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from reconciler.errors import PlanError
from reconciler.model import Config, RemoteRegistry
from reconciler.plan import Plan
from reconciler.state import Fingerprinter, read_text, write_atomic

PLANFILE_FORMAT_VERSION = 1
_KIND = "regsync-plan"
_AGAIN = "run regsync plan again and review the new plan"


def config_digest(config_path) -> str:
    """sha256 of the registries file's bytes."""
    try:
        return hashlib.sha256(Path(config_path).read_bytes()).hexdigest()
    except OSError as exc:
        raise PlanError(f"{config_path}: cannot read the registries file: {exc.strerror}") from exc


def remote_digest(remote: Sequence[RemoteRegistry]) -> str:
    """sha256 of the listed registries, canonical. ``lastUsedAt`` is left out: it moves
    with every customer pull and changes nothing regsync would do."""
    canonical = [
        {
            "slug": r.slug,
            "provider": r.provider,
            "endpoint": r.endpoint,
            "authType": r.auth_type,
            "username": r.username,
            "appIds": sorted(set(r.app_ids)),
            "teamId": r.team_id,
            "createdAt": r.created_at,
            "updatedAt": r.updated_at,
            "isReplicated": r.is_replicated,
        }
        for r in sorted(remote, key=lambda r: r.slug)
    ]
    text = json.dumps(canonical, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()


def fingerprints(config: Config, fingerprinter: Fingerprinter) -> dict[str, str]:
    """The keyed fingerprint of every registry's resolved secret, by slug."""
    return {r.slug: fingerprinter.fingerprint(r) for r in config.registries if r.secret is not None}


@dataclass(frozen=True)
class SavedPlan:
    data: dict
    config_path: str
    config_sha256: str
    remote_sha256: str
    fingerprints: dict[str, str]
    key_id: str
    prune: bool = False  # the options the plan was made with, so apply repeats them
    targets: tuple[str, ...] = ()
    state_path: str | None = None
    rekey: bool = False
    replace: tuple[str, ...] = ()


def save_plan(
    path,
    plan: Plan,
    *,
    config_path,
    config_sha256: str,
    remote_sha256: str,
    fingerprints: Mapping[str, str],
    key_id: str,
    prune: bool = False,
    targets: Sequence[str] = (),
    state_path: str | None = None,
    rekey: bool = False,
    replace: Sequence[str] = (),
) -> None:
    document = {
        "kind": _KIND,
        "format_version": PLANFILE_FORMAT_VERSION,
        "config_path": os.fspath(config_path),
        "config_sha256": config_sha256,
        "remote_sha256": remote_sha256,
        "key_id": key_id,
        "fingerprints": dict(sorted(fingerprints.items())),
        "options": {"prune": bool(prune), "targets": sorted(targets), "state": state_path,
                    "rekey": bool(rekey), "replace": sorted(set(replace))},
        "plan": plan.data,
    }
    try:
        write_atomic(os.fspath(path), json.dumps(document, indent=2) + "\n")
    except OSError as exc:
        raise PlanError(f"{path}: cannot write the plan file: {exc.strerror or exc}") from exc


def load_plan(path) -> SavedPlan:
    path = os.fspath(path)
    text = read_text(path, what="plan file", error=PlanError)
    assert text is not None  # without missing_ok, a missing file raises
    try:
        doc = json.loads(text)
    except json.JSONDecodeError as exc:
        hint = ""
        if re.search(r"^registries\s*:", text, flags=re.M):
            hint = ("; this is a registries file: write regsync apply -c FILE (a PLANFILE is "
                    "what regsync plan --out saves)")
        raise PlanError(
            f"{path}:{exc.lineno}:{exc.colno}: not a regsync plan file (invalid JSON: {exc.msg})"
            f"{hint}"
        ) from exc
    if not isinstance(doc, dict) or doc.get("kind") != _KIND:
        hint = ""
        if isinstance(doc, dict) and "digest" in doc and "changes" in doc:
            hint = ("; this is the output of regsync plan --format json: pass it as "
                    "regsync apply --expect-plan FILE")
        raise PlanError(f"{path}: not a regsync plan file (written by regsync plan --out){hint}")
    version = doc.get("format_version")
    if not isinstance(version, int) or isinstance(version, bool) or version < 1:
        raise PlanError(f"{path}: not a regsync plan file (format_version is missing)")
    if version > PLANFILE_FORMAT_VERSION:
        raise PlanError(
            f"{path}: the plan file has format_version {version}, newer than this regsync "
            f"understands ({PLANFILE_FORMAT_VERSION}); upgrade regsync"
        )
    strings = ("config_path", "config_sha256", "remote_sha256", "key_id")
    fps, data = doc.get("fingerprints"), doc.get("plan")
    options = doc.get("options", {})
    if (
        not isinstance(options, dict)
        or not isinstance(options.get("prune", False), bool)
        or not isinstance(options.get("targets", []), list)
        or not all(isinstance(t, str) for t in options.get("targets", []))
        or not isinstance(options.get("state") or "", str)
        or not isinstance(options.get("rekey", False), bool)
        or not isinstance(options.get("replace", []), list)
        or not all(isinstance(s, str) for s in options.get("replace", []))
    ):
        raise PlanError(f"{path}: the plan file is damaged (its options have the wrong type)")
    if (
        any(not isinstance(doc.get(k), str) for k in strings)
        or not isinstance(fps, dict)
        or not all(isinstance(k, str) and isinstance(v, str) for k, v in fps.items())
        or not isinstance(data, dict)
    ):
        raise PlanError(
            f"{path}: the plan file is damaged (a field is missing or has the wrong type)"
        )
    return SavedPlan(
        data=data,
        config_path=doc["config_path"],
        config_sha256=doc["config_sha256"],
        remote_sha256=doc["remote_sha256"],
        fingerprints=dict(fps),
        key_id=doc["key_id"],
        prune=options.get("prune", False),
        targets=tuple(options.get("targets", ())),
        state_path=options.get("state") or None,
        rekey=options.get("rekey", False),
        replace=tuple(options.get("replace", ())),
    )


def _comparable(data: dict) -> dict:
    """Plan data without what may move without changing what apply does (lastUsedAt, and
    the path the registries file was named by, which its warnings quote)."""
    changes = [{k: v for k, v in c.items() if k != "last_used_at"} for c in data.get("changes", [])]
    rest = {k: v for k, v in data.items() if k not in ("file", "file_warnings")}
    return {**rest, "changes": changes}


def check_fresh(
    saved: SavedPlan,
    *,
    config_sha256: str,
    remote_sha256: str,
    fingerprints: Mapping[str, str],
    plan: Plan,
    key_id: str | None = None,
) -> None:
    """Raise PlanError, with the reason, unless ``saved`` still describes what apply
    would do now. ``plan`` is the plan recomputed from the current file, team and state."""
    stale = "the saved plan is stale: "
    if saved.config_sha256 != config_sha256:
        raise PlanError(
            f"{stale}the registries file changed since the plan ({saved.config_path}); {_AGAIN}"
        )
    if saved.remote_sha256 != remote_sha256:
        raise PlanError(
            f"{stale}the team's registries changed since the plan (someone created, changed "
            f"or deleted one); {_AGAIN}"
        )
    if key_id is not None and saved.key_id != key_id:
        raise PlanError(
            f"{stale}the fingerprint key changed since the plan (REGSYNC_STATE_KEY or the "
            f"API token is different); {_AGAIN}"
        )
    labels = {c.slug: c.desired.label for c in plan.changes if c.desired is not None}
    for slug in sorted(set(saved.fingerprints) | set(fingerprints)):
        if saved.fingerprints.get(slug) != fingerprints.get(slug):
            label = labels.get(slug, f'"{slug}"')
            raise PlanError(f"{stale}the secret of {label} no longer matches the plan; {_AGAIN}")
    then, now = _comparable(saved.data), _comparable(plan.data)
    if then != now:
        before, after = saved.data.get("summary"), plan.data["summary"]
        counts = f"saved {_counts(before)}; now {_counts(after)}; " if before != after else ""
        raise PlanError(
            f"{stale}the plan computed now differs from the saved one ({counts}differs in: "
            f"{_what_differs(then, now)}): the state file changed, or other --target/--prune "
            f"options were given; {_AGAIN}"
        )


def _keyed(data: dict) -> dict:
    """Plan data with its changes keyed by action and slug, so that a difference is named by
    the registry it concerns rather than by a position in a list."""
    changes = data.get("changes", [])
    keyed = {
        f"{c.get('action')} {c.get('slug')}": c for c in changes if isinstance(c, dict)
    }
    return {**data, "changes": keyed}


def _what_differs(then: dict, now: dict, limit: int = 5) -> str:
    """Which changes (or which other parts of the plan) differ between two plan documents.

    The one place regsync wants a structural diff of nested data: a saved plan against
    the one computed now, once per apply of a saved plan. deepdiff names every differing
    path, including items added to or removed from a list; only the names are shown (the
    plan holds no secret, but values from the API are not echoed here either)."""
    from deepdiff import DeepDiff

    from reconciler.render import printable

    found: list[str] = []
    tree = DeepDiff(_keyed(then), _keyed(now), view="tree")
    for level in (level for levels in tree.values() for level in levels):
        path = level.path(output_format="list")
        if not path or path[0] in ("digest", "digest_items", "summary"):
            continue
        name = f"change {path[1]}" if path[0] == "changes" and len(path) > 1 else str(path[0])
        if name not in found:
            found.append(name)
    if not found:
        return "the plan's summary"
    shown = ", ".join(printable(name)[:100] for name in sorted(found)[:limit])
    more = f" and {len(found) - limit} more" if len(found) > limit else ""
    return shown + more


def _counts(summary) -> str:
    if not isinstance(summary, dict):
        return "unknown"
    words = (("create", "add"), ("update", "change"), ("delete", "destroy"))
    return ", ".join(f"{summary.get(key, 0)} to {word}" for key, word in words)
