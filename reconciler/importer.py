"""`regsync import`: a registries file written from the team's current registries.

Each registry is mapped back through the provider table (the API's authType to the
YAML's `auth_type:`, the API's username to the provider's username field, the fixed
usernames of GAR/GCR dropped). The API never returns a credential, so each one becomes
a `${VAR}` placeholder with a deterministic, valid environment variable name made from
the slug. The file validates and plans to no change apart from the credentials ("will
be set"): an entry the API accepted but the schema refuses (an ECR endpoint with a
10-digit account, a slug with a space) is written commented out, with the reason.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from reconciler.model import RemoteRegistry
from reconciler.providers import PROVIDERS, AuthMode, Provider

SCHEMA_MODELINE = "# yaml-language-server: $schema=./schema/registries.schema.json\n"
HEADER = SCHEMA_MODELINE + """\
# Written by `regsync import` from the team's registries.
# The API never returns credentials: set each ${VAR} below before `regsync plan`.
# The first apply re-sets every credential from these variables.
"""


#: The suffix of a placeholder, per secret field.
_SUFFIX = {"password": "PASSWORD", "token": "TOKEN", "secret_access_key": "SECRET_ACCESS_KEY",
           "service_account_key": "SA_KEY"}
_MAX_STEM = 40


#: An ECR host (an ECR registry's slug defaults to it): account and region name it.
_ECR_HOST = re.compile(r"([0-9]{12})\.dkr\.ecr(?:-fips)?\.([a-z0-9-]+)\.amazonaws\.com(?:\.cn)?")


def env_var_name(slug: str, field: str) -> str:
    """``<SLUG>_<SUFFIX>``: the slug uppercased, each run of other characters one ``_``,
    clipped to 40 characters (between words where it can); ``REG_`` first when it would
    start with a digit. An ECR host gives ``ECR_<ACCOUNT>_<REGION>``."""
    ecr = _ECR_HOST.fullmatch(slug)
    if ecr:
        slug = f"ecr-{ecr[1]}-{ecr[2]}"
    stem = re.sub(r"[^A-Z0-9]+", "_", slug.upper()).strip("_")
    if len(stem) > _MAX_STEM:
        cut = stem[:_MAX_STEM + 1].rfind("_")
        stem = stem[:cut] if cut > 0 else stem[:_MAX_STEM]
    if not stem or stem[0].isdigit():
        stem = f"REG_{stem}".rstrip("_")
    return f"{stem}_{_SUFFIX.get(field, field.upper())}"


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


@dataclass(frozen=True)
class Imported:
    text: str  # the registries file
    refused: tuple[tuple[str, str], ...] = ()  # (slug, why) of the entries commented out


def _dump(data) -> str:
    import yaml

    return yaml.safe_dump(data, sort_keys=False, default_flow_style=False, allow_unicode=True,
                          width=1000)


def _schema_problem(entry: dict) -> str:
    """Why ``regsync validate`` would refuse a file holding only ``entry``, or ""."""
    from reconciler.config import check_text

    for d in check_text(_dump({"version": 1, "registries": [entry]}), "import"):
        if d.severity == "error":
            return d.message
    return ""


def import_registries(remote: Sequence[RemoteRegistry], *,
                      app_names: Mapping[str, str] | None = None) -> Imported:
    """A registries file listing ``remote`` (sorted by slug); entries the schema refuses
    are in it commented out, with the reason, so that the file validates. With
    ``app_names`` (app ID -> slug), app scopes are written as `apps:` slugs."""
    used: set[str] = set()
    entries: list[dict] = []
    skipped: list[str] = []
    refused: list[tuple[str, str]] = []
    commented: list[str] = []
    for reg in sorted(remote, key=lambda r: r.slug):
        entry, why = _entry(reg, used, app_names or {})
        if entry is None:
            skipped.append(f"# not imported: {reg.slug!r}: {why}\n")
            continue
        problem = _schema_problem(entry)
        if problem:
            refused.append((reg.slug, problem))
            lines = _dump([entry]).splitlines()
            commented.append(
                f"# {reg.slug!r}: the API accepted it, but regsync validate refuses it: "
                f"{' '.join(problem.split())}\n"
                "# Fix it in the Vendor Portal (or recreate it), then uncomment:\n"
                + "".join(f"# {line}\n" for line in lines)
            )
        else:
            entries.append(entry)
    body = _dump({"version": 1, "registries": entries})
    if commented:
        if not entries:
            body = body.replace("registries: []\n",
                                "registries: []  # uncommented entries replace the []\n")
        body += "".join(commented)
    return Imported(HEADER + "".join(skipped) + body, tuple(refused))


def import_config(remote: Sequence[RemoteRegistry], *,
                  app_names: Mapping[str, str] | None = None) -> str:
    """YAML text of a registries file listing ``remote`` (sorted by slug)."""
    return import_registries(remote, app_names=app_names).text
