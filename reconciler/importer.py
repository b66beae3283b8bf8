"""`regsync import`: a registries file written from the team's current registries.

Each registry is mapped back through the provider table (the API's authType to the
YAML's `auth_type:`, the API's username to the provider's username field, the fixed
usernames of GAR/GCR dropped). The API never returns a credential, so each one becomes
a `${VAR}` placeholder with a deterministic, valid environment variable name. The file
validates and plans to no change apart from the credentials ("will be set").
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence

from reconciler.model import RemoteRegistry
from reconciler.providers import PROVIDERS, AuthMode, Provider

HEADER = """\
# Written by `regsync import` from the team's registries.
# The API never returns credentials: set each ${VAR} below before `regsync plan`.
# The first apply re-sets every credential from these variables.
"""


def env_var_name(slug: str, field: str) -> str:
    """``REGSYNC_<SLUG>_<FIELD>``, uppercased, every non-alphanumeric as ``_``."""
    return re.sub(r"[^A-Z0-9]", "_", f"REGSYNC_{slug}_{field}".upper())


def _auth_mode(provider: Provider, api_auth_type: str) -> tuple[str, AuthMode] | None:
    for key, mode in provider.auth_modes.items():
        if mode.api_auth_type == api_auth_type:
            return key, mode
    if len(provider.auth_modes) == 1 and not api_auth_type:
        return next(iter(provider.auth_modes.items()))
    return None


def _entry(reg: RemoteRegistry, used: set[str], app_names: Mapping[str, str]) -> tuple[dict | None, str]:
    """The YAML mapping for one registry, or None and why it cannot be imported."""
    if reg.is_replicated:
        return None, "provided by Replicated itself (isReplicated); regsync leaves it alone"
    provider = PROVIDERS.get(reg.provider)
    if provider is None:
        return None, f"provider {reg.provider!r} is not one regsync manages"
    found = _auth_mode(provider, reg.auth_type)
    if found is None:
        return None, f"{provider.name} with authType {reg.auth_type!r} is not supported"
    key, mode = found
    entry: dict = {"provider": provider.name}
    if reg.slug != reg.endpoint:
        entry["slug"] = reg.slug
    if reg.endpoint != provider.default_endpoint:
        entry["endpoint"] = reg.endpoint
    if provider.has_auth_type_field:
        entry["auth_type"] = key
    if mode.username_field:
        entry[mode.username_field] = reg.username
    var = env_var_name(reg.slug, mode.secret_field)
    n = 2
    while var in used:  # two slugs that differ only in punctuation
        var = f"{env_var_name(reg.slug, mode.secret_field)}_{n}"
        n += 1
    used.add(var)
    entry[mode.secret_field] = f"${{{var}}}"
    if reg.app_ids:
        slugs = sorted(app_names[i] for i in set(reg.app_ids) if i in app_names)
        ids = sorted(i for i in set(reg.app_ids) if i not in app_names)
        if slugs:
            entry["apps"] = slugs
        if ids:  # an app the team's list lacks keeps its ID
            entry["app_ids"] = ids
    return entry, ""


def import_config(remote: Sequence[RemoteRegistry], *,
                  app_names: Mapping[str, str] | None = None) -> str:
    """YAML text of a registries file listing ``remote`` (sorted by slug). With
    ``app_names`` (app ID -> slug), app scopes are written as `apps:` slugs."""
    import yaml

    used: set[str] = set()
    entries: list[dict] = []
    skipped: list[str] = []
    for reg in sorted(remote, key=lambda r: r.slug):
        entry, why = _entry(reg, used, app_names or {})
        if entry is None:
            skipped.append(f"# not imported: {reg.slug!r}: {why}\n")
        else:
            entries.append(entry)
    body = yaml.safe_dump(
        {"version": 1, "registries": entries},
        sort_keys=False,
        default_flow_style=False,
        allow_unicode=True,
        width=1000,
    )
    return HEADER + "".join(skipped) + body
