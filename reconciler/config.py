"""The registries file: read it, check it (schema + what a schema cannot say), and map it
onto the API's terms as a ``Config`` with unresolved secrets.

Validation happens on the unresolved file, before any secret is read, so no message can
contain a secret value; secrets are resolved later by ``reconciler.secrets``.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from reconciler import imageref, schema, yamlpos
from reconciler.errors import ConfigError, Diagnostic
from reconciler.providers import PROVIDERS, SECRET_FIELDS

if TYPE_CHECKING:
    from reconciler.model import Config

ENV_REF = re.compile(r"^\$\{([A-Za-z_][A-Za-z0-9_]*)\}$")
_PORT = re.compile(r"^(?:\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9.-]+):([0-9]{1,5})\Z")  # what the schema's host allows
RESERVED_SLUGS = {"test": "it collides with the Vendor API's PUT /v3/external_registry/test route"}
ENCRYPTED_REGEX = "^(password|token|secret_access_key|service_account_key)$"


def load_config(path: str) -> Config:
    """Parse and check ``path``. Raises ``ConfigError`` carrying every problem found."""
    result = _analyse(path, build=True)
    if result.config is None:
        raise ConfigError(result.diagnostics)
    return result.config


def check_files(
    paths: Iterable[str], *, check_env: bool = False, env: Mapping[str, str] | None = None
) -> list[Diagnostic]:
    """Everything ``regsync validate`` reports for ``paths``: errors and warnings, in file
    order then position. Never raises for bad content. With ``check_env``, ``${VAR}``s
    unset or empty in ``env`` are errors too (their values are never shown)."""
    out: list[Diagnostic] = []
    for path in paths:
        result = _analyse(path, build=False)
        diagnostics = list(result.diagnostics)
        if check_env and result.doc is not None and result.labels is not None:  # set together
            diagnostics.extend(_env_diagnostics(result.doc, result.labels, env or {}))
        out.extend(sorted(diagnostics, key=lambda d: (d.line, d.col)))
    return out


def is_sops(data: Any) -> bool:
    """A sops-encrypted file has a top-level ``sops:`` mapping."""
    return isinstance(data, dict) and isinstance(data.get("sops"), dict)


def effective_slug(entry: dict) -> str | None:
    """The slug the API will use: ``slug:``, else the endpoint, else the provider's host."""
    slug = entry.get("slug")
    if isinstance(slug, str) and slug:
        return slug
    endpoint = entry.get("endpoint")
    if isinstance(endpoint, str) and endpoint:
        return endpoint
    provider = _provider(entry)
    return provider.default_endpoint if provider else None


def _provider(entry: Any):
    name = entry.get("provider") if isinstance(entry, dict) else None
    return PROVIDERS.get(name) if isinstance(name, str) else None


class Labels:
    """Breadcrumbs for diagnostics: ``registries[2] (dockerhub "acme")``, ``settings``, or ""."""

    def __init__(self, data: Any):
        self.data = data

    def __call__(self, ctx: tuple) -> str:
        if not ctx:
            return ""
        if ctx[0] != "registries":
            return ".".join(str(p) for p in ctx)
        index = ctx[1]
        entry = self.data["registries"][index]
        provider = _provider(entry)
        if provider is None:
            return f"registries[{index}]"
        slug = effective_slug(entry)
        return f'registries[{index}] ({provider.name} "{slug}")' if slug else f"registries[{index}] ({provider.name})"


@dataclass
class _Result:
    diagnostics: list[Diagnostic] = field(default_factory=list)
    doc: yamlpos.Document | None = None
    labels: Labels | None = None
    config: Config | None = None


def _analyse(path: str, *, build: bool) -> _Result:
    """Read and check ``path``; with ``build``, also map a file without errors to a Config."""

    def at_start(message: str) -> _Result:
        return _Result([Diagnostic(path, 1, 1, "", message)])

    try:
        raw = open(path, "rb").read()
    except FileNotFoundError:
        root, ext = os.path.splitext(path)
        other = root + {".yaml": ".yml", ".yml": ".yaml"}.get(ext, ext)
        if other != path and os.path.isfile(other):
            return at_start(f"file not found, but {other} is there: name it "
                            f"(regsync validate {other}; -c {other} for the other commands)")
        return at_start(
            f"file not found; write one, or make it from the team's registries with: "
            f"regsync import -o {path}"
        )
    except IsADirectoryError:
        return at_start("is a directory, not a registries file")
    except OSError as exc:
        return at_start(f"cannot read the file: {exc.strerror or exc}")
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        col = exc.start - (raw.rfind(b"\n", 0, exc.start) + 1) + 1
        return _Result([Diagnostic(path, line, col, "", "the file is not UTF-8 text")])
    return _analyse_text(text, path, build=build)


def check_text(text: str, name: str) -> list[Diagnostic]:
    """What ``regsync validate`` would report for a file holding ``text`` (for ``import``,
    which checks what it writes)."""
    return _analyse_text(text, name, build=False).diagnostics


def _analyse_text(text: str, path: str, *, build: bool) -> _Result:
    def at_start(message: str) -> _Result:
        return _Result([Diagnostic(path, 1, 1, "", message)])

    try:
        doc = yamlpos.load(text, path)
    except yamlpos.YamlError as exc:
        return _Result(exc.diagnostics)
    if doc.data is None:
        return at_start("the file is empty; start it with version: 1 and registries:")
    sops = is_sops(doc.data)
    labels = Labels(doc.data)
    result = _Result(doc=doc, labels=labels)
    encrypted = _encrypted_non_secret(doc) if sops else None
    if encrypted:
        result.diagnostics.append(encrypted)
        return result
    diagnostics = schema.check(doc, context=labels, sops=sops) + _semantic(doc, labels, sops)
    result.diagnostics = sorted(diagnostics, key=lambda d: (d.line, d.col))
    if build and not any(d.severity == "error" for d in result.diagnostics):
        warnings = tuple(d for d in result.diagnostics if d.severity == "warning")
        result.config = _build(doc, sops, warnings)
    return result


def _encrypted_non_secret(doc: yamlpos.Document) -> Diagnostic | None:
    """sops without an encrypted_regex encrypts every value; validate then cannot read the file."""

    def walk(value, path):
        if isinstance(value, dict):
            for key, item in value.items():
                if path == () and key == "sops":
                    continue
                yield from walk(item, path + (key,))
        elif isinstance(value, list):
            for i, item in enumerate(value):
                yield from walk(item, path + (i,))
        elif isinstance(value, str) and value.startswith("ENC[") and not (path and path[-1] in SECRET_FIELDS):
            yield path

    for path in walk(doc.data, ()):
        line, col = doc.value_pos(path)
        where = schema.field_name(path)
        return Diagnostic(
            doc.file, line, col, "",
            f"sops encrypted {where}, which is not a secret; regsync must read it without keys: "
            f"re-encrypt with sops encrypt --encrypted-regex '{ENCRYPTED_REGEX}'",
        )
    return None


def _semantic(doc: yamlpos.Document, labels: Labels, sops: bool) -> list[Diagnostic]:
    """What the schema cannot say: unique and reserved slugs, image references, where
    secrets may come from, and the providers' warnings."""
    out: list[Diagnostic] = []
    settings = doc.data.get("settings") if isinstance(doc.data, dict) else None
    if isinstance(settings, dict) and isinstance(settings.get("state"), str):
        from reconciler.state.location import parse_location

        try:
            parse_location(settings["state"])
        except ValueError as exc:
            line, col = doc.value_pos(("settings", "state"))
            out.append(Diagnostic(doc.file, line, col, "settings", f"state: {exc}"))
    registries = doc.data.get("registries") if isinstance(doc.data, dict) else None
    if not isinstance(registries, list):
        return out
    seen: dict[str, tuple[int, int]] = {}  # slug -> (index, line)

    def emit(path, message, severity="error"):
        line, col = doc.value_pos(path)
        out.append(Diagnostic(doc.file, line, col, labels(path[:2]), message, severity))

    for i, entry in enumerate(registries):
        if not isinstance(entry, dict):
            continue
        base = ("registries", i)
        provider = _provider(entry)
        slug = effective_slug(entry)
        explicit = isinstance(entry.get("slug"), str) and bool(entry.get("slug"))
        slug_path = base + ("slug",) if explicit else base
        origin = "" if explicit else " (the endpoint, as slug: is omitted)"
        if isinstance(slug, str):
            if slug in RESERVED_SLUGS:
                emit(slug_path, f'slug "{slug}"{origin} is reserved: {RESERVED_SLUGS[slug]}; choose another slug')
            if slug in seen:
                first, line = seen[slug]
                emit(
                    slug_path,
                    f'slug "{slug}"{origin} is already used by registries[{first}] at line {line}; '
                    "each registry needs its own slug",
                )
            else:
                seen[slug] = (i, doc.value_pos(base)[0])
        endpoint = entry.get("endpoint")
        port = _PORT.match(endpoint) if isinstance(endpoint, str) else None
        if port and not 0 < int(port.group(1)) < 65536:
            emit(base + ("endpoint",), f'endpoint "{endpoint}" has port {port.group(1)}; a port is 1 to 65535')
        for name in SECRET_FIELDS:
            value = entry.get(name)
            if isinstance(value, str) and value.startswith("ENC[") and not sops:
                emit(
                    base + (name,),
                    f"{name} holds a sops ENC[...] value but the file has no sops metadata; "
                    "encrypt the whole file with sops encrypt instead of pasting values",
                )
        tests = entry.get("tests")
        if isinstance(tests, list):
            for j, ref in enumerate(tests):
                if isinstance(ref, str) and (problem := imageref.problem(ref)):
                    emit(base + ("tests", j), f"tests[{j}]: {problem}")
        if provider is not None:
            if provider.warning:
                emit(base + ("provider",), provider.warning, "warning")
            auth_type = entry.get("auth_type")
            mode = provider.auth_modes.get(auth_type) if isinstance(auth_type, str) else None
            if provider.has_auth_type_field and mode is not None and mode.warning:
                emit(base + ("auth_type",), mode.warning, "warning")
    return out


def env_problem(value: str | None) -> str | None:
    """What is wrong with an environment variable's value for a secret, or None."""
    if value is None:
        return "is not set"
    if not value.strip():
        return "is empty"
    if not value.isascii():
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:  # os.environ holds a byte that is not UTF-8 as a lone surrogate
            return "holds bytes that are not UTF-8 text (it would reach the API garbled)"
    return None


def _env_diagnostics(doc: yamlpos.Document, labels: Labels, env: Mapping[str, str]) -> list[Diagnostic]:
    out = []
    registries = doc.data.get("registries") if isinstance(doc.data, dict) else None
    for i, entry in enumerate(registries if isinstance(registries, list) else ()):
        provider = _provider(entry)
        if provider is None:
            continue
        for name in sorted({m.secret_field for m in provider.auth_modes.values()}):
            value = entry.get(name)
            match = ENV_REF.match(value) if isinstance(value, str) else None
            if not match:
                continue
            var = match.group(1)
            problem = env_problem(env.get(var))
            if problem is None:
                continue
            line, col = doc.value_pos(("registries", i, name))
            out.append(
                Diagnostic(doc.file, line, col, labels(("registries", i)),
                           f"{name}: environment variable {var} {problem}")
            )
    return out


def _build(doc: yamlpos.Document, sops: bool, warnings: tuple) -> Config:
    # Imported here: validate builds no Config, and defining the model's classes costs ~8 ms.
    from reconciler.model import Config, DesiredRegistry, Position, SecretRef, Settings

    data = doc.data
    raw_settings = data.get("settings") or {}
    settings = Settings(
        prune=bool(raw_settings.get("prune", False)),
        max_deletes=int(raw_settings.get("max_deletes", 1)),
        ignore=tuple(raw_settings.get("ignore") or ()),
        state=raw_settings.get("state") or None,
    )
    registries = []
    for i, entry in enumerate(data.get("registries") or ()):
        provider = PROVIDERS[entry["provider"]]
        mode = provider.auth_mode(entry.get("auth_type") if provider.has_auth_type_field else None)
        secret_value = entry[mode.secret_field]
        match = ENV_REF.match(secret_value)
        secret_ref = SecretRef(
            field=mode.secret_field,
            env_var=match.group(1) if match else None,
            encrypted=match is None,
            position=Position(doc.file, *doc.value_pos(("registries", i, mode.secret_field))),
        )
        line, col = doc.value_pos(("registries", i))
        app_ids = entry.get("app_ids")
        apps = entry.get("apps")
        endpoint = entry.get("endpoint") or provider.default_endpoint
        slug = effective_slug(entry)
        # the schema requires endpoint: for a provider without a default; the slug is then set too
        assert endpoint is not None and slug is not None
        registries.append(
            DesiredRegistry(
                index=i,
                provider=provider.name,
                slug=slug,
                endpoint=endpoint,
                auth_type=mode.api_auth_type,
                username=mode.fixed_username or entry[mode.username_field],
                secret_ref=secret_ref,
                app_ids=tuple(app_ids) if app_ids is not None else None,
                app_slugs=tuple(apps) if apps is not None else None,
                app_slug_positions=tuple(
                    Position(doc.file, *doc.value_pos(("registries", i, "apps", j)))
                    for j in range(len(apps or ()))
                ),
                tests=tuple(entry.get("tests") or ()),
                skip_validation=bool(entry.get("skip_validation", False)),
                position=Position(doc.file, line, col),
            )
        )
    return Config(path=doc.file, settings=settings, registries=tuple(registries), sops=sops, warnings=warnings)
