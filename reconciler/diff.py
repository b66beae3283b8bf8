"""Desired against actual, per slug: a pure function from plain data to a ``Plan``.

Credentials cannot be read back from the API, so they are compared through the state
file: the keyed fingerprint of the secret regsync last set, and the registry's
``updatedAt`` right after that change (a later one means someone changed it elsewhere).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Collection, Mapping, Sequence
from dataclasses import replace
from datetime import datetime, timedelta

from reconciler.errors import PlanError
from reconciler.model import Config, DesiredRegistry, RemoteRegistry, matches
from reconciler.plan import (
    CREDENTIALS_CHANGED,
    CREDENTIALS_RESET,
    CREDENTIALS_SET,
    Change,
    FieldChange,
    Plan,
)
from reconciler.state import Fingerprinter, State

#: The fields compared between the file and the API, in display order.
COMPARED = ("provider", "endpoint", "authType", "username", "appIds")


def _comparable_desired(d: DesiredRegistry) -> dict:
    return {
        "provider": d.provider,
        "endpoint": d.endpoint,
        "authType": d.auth_type,
        "username": d.username,
        # omitted app_ids = every app = the API's [] or null
        "appIds": frozenset(d.app_ids or ()),
    }


def _comparable_remote(r: RemoteRegistry) -> dict:
    return {
        "provider": r.provider,
        "endpoint": r.endpoint,
        "authType": r.auth_type,
        "username": r.username,
        "appIds": frozenset(r.app_ids or ()),
    }


def _shown(name: str, value: object) -> object:
    """The value as a FieldChange holds it: app ids as a sorted tuple."""
    if name == "appIds" and isinstance(value, frozenset):
        return tuple(sorted(value))
    return value


def _field_changes(old: dict, new: dict) -> list[FieldChange]:
    """The compared fields that differ. They are strings, None and frozensets, for which
    ``!=`` is the exact comparison: a structural differ (deepdiff, ~0.2 ms a call) would
    cost a second per 5,000 registries and find nothing more."""
    return [
        FieldChange(name, _shown(name, old[name]), _shown(name, new[name]))
        for name in COMPARED
        if old[name] != new[name]
    ]


#: How much later the listed updatedAt may be than the one in regsync's own create or
#: update answer before it counts as a change made elsewhere: a store that rounds
#: timestamps (to whole seconds, say) must not make every plan re-set credentials.
CLOCK_TOLERANCE = timedelta(seconds=1)


def _later(remote_ts: str | None, state_ts: str | None) -> bool:
    """Whether the API's updatedAt is later than the one regsync recorded."""
    if not remote_ts or not state_ts:
        return False
    try:
        a, b = datetime.fromisoformat(remote_ts), datetime.fromisoformat(state_ts)
        if (a.tzinfo is None) != (b.tzinfo is None):
            return remote_ts != state_ts
        return a - b > CLOCK_TOLERANCE
    except ValueError:
        return remote_ts != state_ts  # unparseable: any difference counts


def _same_secret_as_before(
    desired: DesiredRegistry,
    remote: RemoteRegistry | None,
    recorded_fingerprint: str | None,
    fingerprinter: Fingerprinter | None,
) -> bool:
    """Whether the recorded fingerprint is that of the file's secret with the team's
    current username and auth type: then those changed, not the secret."""
    if remote is None or fingerprinter is None or not recorded_fingerprint:
        return False
    if (remote.username, remote.auth_type) == (desired.username, desired.auth_type):
        return False
    before = dataclasses.replace(desired, username=remote.username, auth_type=remote.auth_type)
    return fingerprinter.fingerprint(before) == recorded_fingerprint


def _credentials(
    desired: DesiredRegistry,
    remote: RemoteRegistry | None,
    state: State,
    fingerprint: str,
    key_changed: bool,
    fingerprinter: Fingerprinter | None = None,
) -> tuple[FieldChange | None, list[str]]:
    recorded = state.registries.get(desired.slug)
    reasons: list[str] = []
    if (
        remote is not None
        and recorded is not None
        and recorded.team_id
        and remote.team_id
        and recorded.team_id != remote.team_id
    ):
        # The same file (and REGSYNC_STATE_KEY) used with another team: what regsync
        # set there says nothing about this team's registry.
        reasons.append(
            f'the state file recorded this registry for team "{recorded.team_id}", but '
            f'the API lists it in team "{remote.team_id}": credentials will be set from '
            "the file"
        )
        recorded = None
    if remote is None or recorded is None or recorded.fingerprint is None:
        description = CREDENTIALS_SET
    elif recorded.fingerprint != fingerprint:
        description = CREDENTIALS_CHANGED
        if key_changed:
            reasons.append(
                "the state file's fingerprint key changed (REGSYNC_STATE_KEY or the API "
                "token is different): credentials will be re-set from the file"
            )
        if _same_secret_as_before(desired, remote, recorded.fingerprint, fingerprinter):
            description = None  # only the username (or auth type) changed, and shows as such
    else:
        description = None
    if remote is not None and recorded is not None and _later(
        remote.updated_at, recorded.updated_at
    ):
        reasons.append(
            f"changed outside regsync (updatedAt {remote.updated_at}, regsync's last change "
            f"{recorded.updated_at}): credentials will be re-set from the file"
        )
        description = description or CREDENTIALS_RESET
    if description is None:
        return None, reasons
    return FieldChange("credentials", None, description, secret=True), reasons


def _create(desired: DesiredRegistry, state: State, fingerprint: str, key_changed) -> Change:
    fields = [
        FieldChange(name, None, value)
        for name, value in (
            ("provider", desired.provider),
            ("endpoint", desired.endpoint),
            ("authType", desired.auth_type),
            ("username", desired.username),
            ("appIds", tuple(sorted(set(desired.app_ids or ())))),
        )
    ]
    credentials, reasons = _credentials(desired, None, state, fingerprint, key_changed)
    assert credentials is not None  # with no remote registry, credentials are always set
    fields.append(credentials)
    return Change(
        "create", desired.slug, desired.provider, tuple(fields), tuple(reasons), desired=desired
    )


def _some(slugs, limit: int = 10) -> str:
    shown = sorted(slugs)
    more = f", and {len(shown) - limit} more" if len(shown) > limit else ""
    return ", ".join(shown[:limit]) + more


def diff(
    config: Config,
    remote: Sequence[RemoteRegistry],
    state: State,
    fingerprinter: Fingerprinter,
    *,
    prune: bool,
    targets: Collection[str] | None = None,
    app_names: Mapping[str, str] | None = None,
) -> Plan:
    """The plan that makes the team's registries match ``config``.

    ``config`` has resolved secrets. Deletes happen when ``prune`` or
    ``config.settings.prune`` is set; ``targets`` limits the plan to those slugs.
    With ``app_names`` (app ID -> slug), app scopes are shown by slug.
    """
    settings = config.settings
    prune = prune or settings.prune
    wanted = tuple(targets) if targets is not None else None
    in_scope = (lambda slug: matches(slug, wanted)) if wanted is not None else (lambda slug: True)
    key_changed = bool(state.key_id) and state.key_id != fingerprinter.key_id

    actual = {r.slug: r for r in remote}
    changes: list[Change] = []
    ignored: set[str] = set()
    warnings: list[str] = []

    for desired in config.registries:
        if not in_scope(desired.slug):
            continue
        if settings.ignores(desired.slug):
            ignored.add(desired.slug)
            continue
        if desired.secret is None:
            raise PlanError(f"{desired.label}: the credential is not resolved")
        fingerprint = fingerprinter.fingerprint(desired)
        current = actual.get(desired.slug)
        if current is None:
            changes.append(_create(desired, state, fingerprint, key_changed))
            continue
        fields = _field_changes(_comparable_remote(current), _comparable_desired(desired))
        credentials, reasons = _credentials(desired, current, state, fingerprint, key_changed,
                                            fingerprinter)
        if credentials is not None:
            fields.append(credentials)
        changes.append(
            Change(
                "update" if fields else "noop",
                desired.slug,
                desired.provider,
                tuple(fields),
                tuple(reasons),
                desired=desired,
                remote=current,
            )
        )

    listed = {d.slug for d in config.registries}
    unmanaged: list[RemoteRegistry] = []
    for current in remote:
        if current.slug in listed or not in_scope(current.slug):
            continue
        if settings.ignores(current.slug) or current.is_replicated:
            # isReplicated marks a registry Replicated itself provides: never ours to delete.
            ignored.add(current.slug)
        elif prune:
            changes.append(
                Change(
                    "delete",
                    current.slug,
                    current.provider,
                    last_used_at=current.last_used_at,
                    remote=current,
                )
            )
        else:
            unmanaged.append(current)

    if wanted is not None:
        known = listed | set(actual)
        unmatched = sorted({p for p in wanted if not any(matches(s, (p,)) for s in known)})
        if unmatched:
            raise PlanError(
                "--target " + ", ".join(map(repr, unmatched))
                + ": matches no registry in the file or the team"
                + (f" (slugs: {_some(known)})" if known else " (both have none)")
            )

    deletes = sum(1 for c in changes if c.action == "delete")
    if deletes > settings.max_deletes:
        warnings.insert(
            0,
            f"This plan destroys {deletes} {'registry' if deletes == 1 else 'registries'}, "
            f"more than settings.max_deletes "
            f"({settings.max_deletes}). regsync apply refuses it without --force.",
        )
    if app_names:
        changes = [_apps_by_slug(c, app_names) for c in changes]
    return Plan(
        changes=tuple(changes),
        unmanaged=tuple(unmanaged),
        ignored=tuple(ignored),
        warnings=tuple(warnings),
        max_deletes=settings.max_deletes,
    )


def _apps_by_slug(change: Change, names: Mapping[str, str]) -> Change:
    """``change`` with its appIds field showing app slugs (IDs the team lacks stay IDs)."""
    from reconciler.apps import named

    def by_slug(ids: object) -> object:  # a tuple of app IDs; None for a new registry's old value
        return named(ids, names) if isinstance(ids, tuple) else ids

    fields = tuple(
        replace(f, old=by_slug(f.old), new=by_slug(f.new)) if f.name == "appIds" else f
        for f in change.fields
    )
    return replace(change, fields=fields)
