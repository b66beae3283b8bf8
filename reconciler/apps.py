"""App scoping by slug: a registry's `apps: [my-app, ...]` resolved into the IDs the
Vendor API takes, from one ``GET /v3/apps`` listing of the team's apps.

`apps:` may stand beside `app_ids:`; the registry is then shared with both. An unknown
slug is an error at its position in the file that lists the team's apps.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import replace

from reconciler.errors import ConfigError, Diagnostic
from reconciler.model import Config, RemoteRegistry, TeamApp

_SHOWN = 40  # apps named in an error before "and N more"


def needs_apps(config: Config) -> bool:
    """Whether any registry names apps by slug (only then is the team's list fetched)."""
    return any(r.app_slugs for r in config.registries)


def _clip(text: str, limit: int = 80) -> str:
    from reconciler.logs import clip

    return clip(text, limit)


def _team_list(apps: Sequence[TeamApp]) -> str:
    if not apps:
        return "the team has no apps"
    slugs = sorted({_clip(a.slug) for a in apps})
    more = f" and {len(slugs) - _SHOWN} more" if len(slugs) > _SHOWN else ""
    return "its apps: " + ", ".join(slugs[:_SHOWN]) + more


def resolve_apps(config: Config, apps: Sequence[TeamApp]) -> Config:
    """A copy of ``config`` whose registries' ``app_ids`` hold the IDs of their `apps:`
    (joined with any `app_ids:`). Raises ``ConfigError`` naming every unknown slug."""
    by_slug = {a.slug: a.id for a in apps}
    problems: list[Diagnostic] = []
    registries = []
    for reg in config.registries:
        if reg.app_slugs is None:
            registries.append(reg)
            continue
        ids = list(reg.app_ids or ())
        for j, slug in enumerate(reg.app_slugs):
            if slug in by_slug:
                ids.append(by_slug[slug])
                continue
            pos = reg.app_slug_positions[j] if j < len(reg.app_slug_positions) else reg.position
            problems.append(Diagnostic(
                pos.file if pos else config.path, pos.line if pos else 1, pos.col if pos else 1,
                reg.label, f'apps[{j}]: no app with slug "{slug}" in the team ({_team_list(apps)})',
            ))
        registries.append(replace(reg, app_ids=tuple(dict.fromkeys(ids))))
    if problems:
        raise ConfigError(problems)
    return replace(config, registries=tuple(registries))


def app_names(apps: Sequence[TeamApp]) -> dict[str, str]:
    """App ID -> slug, for showing app scopes by slug."""
    return {a.id: a.slug for a in apps}


def scope_names(api, remote: Sequence[RemoteRegistry]) -> dict[str, str] | None:
    """App ID -> slug from one ``GET /v3/apps``, only when a registry of ``remote`` is
    scoped to some apps (else None, and no call)."""
    if not any(r.app_ids for r in remote):
        return None
    return app_names(api.list_apps())


def named(ids: Sequence[str], names: Mapping[str, str]) -> tuple[str, ...]:
    """``ids`` as slugs where known (an ID the team's list lacks stays an ID), sorted."""
    return tuple(sorted(names.get(i, i) for i in ids))
