"""The JSON Schemas of the registries file, and their errors as messages a person can act on.

The schemas in ``schema/`` are the source of truth for editors (YAML language server)
and for ``regsync validate``. They refer to each other by relative ``$id``s; here they
are loaded into one ``referencing.Registry`` (no network retrieval) and the validator
is built once. Every jsonschema error becomes a ``Diagnostic`` at the position of the
offending key or value. A secret field's value is never quoted in a message.
"""

from __future__ import annotations

import difflib
import functools
import json
import pathlib
import re
from collections.abc import Callable
from typing import Any
from urllib.parse import urljoin

from reconciler import quickcheck
from reconciler.errors import Diagnostic
from reconciler.providers import PROVIDERS, SECRET_FIELDS
from reconciler.yamlpos import Document, KeyPath

ROOT_SCHEMA = "registries.schema.json"


def schema_dir() -> pathlib.Path:
    """The schema directory: inside the installed package (the wheel force-includes it as
    ``reconciler/schema``), else the repository's top-level ``schema/``."""
    from importlib.resources import files

    packaged = pathlib.Path(str(files("reconciler") / "schema"))
    if (packaged / ROOT_SCHEMA).is_file():
        return packaged
    return pathlib.Path(__file__).resolve().parent.parent / "schema"


@functools.cache
def validator():
    """The whole-document validator, as editors see the schema: ``$ref``s resolved from
    the files only (no retrieval). ``iter_errors`` gives the same errors, faster."""
    from jsonschema import Draft202012Validator
    from referencing import Registry
    from referencing.jsonschema import DRAFT202012

    resources = {uri: DRAFT202012.create_resource(doc) for uri, doc in _load_resources().items()}
    registry = Registry().with_resources(resources.items()).crawl()
    return Draft202012Validator(resources[ROOT_SCHEMA].contents, registry=registry)


@functools.cache
def _load_resources() -> dict[str, Any]:
    """Every schema file by its URI relative to the schema directory (read once; callers
    do not modify it)."""
    base = schema_dir()
    paths = [base / ROOT_SCHEMA, *sorted(base.glob("*.schema.json")), *sorted(base.glob("providers/*.schema.json"))]
    return {
        p.relative_to(base).as_posix(): _python_patterns(json.loads(p.read_text(encoding="utf-8"))) for p in paths
    }


def _python_patterns(node: Any) -> Any:
    """The schema with each ``pattern``'s final ``$`` made ``\\Z``: in the schemas' dialect
    (ECMA 262, what editors use) ``$`` ends the string, but Python's also matches before a
    final newline, so ``slug: |`` (a block scalar, "abc\\n") would pass ``validate``."""
    if isinstance(node, list):
        return [_python_patterns(item) for item in node]
    if not isinstance(node, dict):
        return node
    out = {k: _python_patterns(v) for k, v in node.items()}
    pattern = out.get("pattern")
    if isinstance(pattern, str) and pattern.endswith("$") and not pattern.endswith("\\$"):
        out["pattern"] = pattern[:-1] + "\\Z"
    return out


def _inline(node: Any, uri: str, resources: dict[str, Any]) -> Any:
    """``node`` with every ``$ref`` to another file replaced by the schema it names (our
    files have no recursion), so validating needs no resolver work per instance."""
    if isinstance(node, list):
        return [_inline(item, uri, resources) for item in node]
    if not isinstance(node, dict):
        return node
    node = {k: _inline(v, uri, resources) for k, v in node.items() if k != "$id"}
    ref = node.pop("$ref", None)
    if ref is None:
        return node
    target_uri, _, pointer = urljoin(uri, ref).partition("#")
    target = resources[target_uri]
    for part in filter(None, pointer.split("/")):
        target = target[part]
    merged = dict(_inline(target, target_uri, resources))
    merged.update(node)  # annotations beside the $ref (description) win
    return merged


@functools.cache
def _fast_validators():
    """(document shell, registry shell): the same rules as ``validator()`` without the
    entries' provider schemas, which ``_provider_validator`` gives one by one."""
    from jsonschema import Draft202012Validator

    root = json.loads(json.dumps(_load_resources()[ROOT_SCHEMA]))
    shell = dict(root["$defs"]["registry"])
    shell.pop("allOf")
    root.pop("$defs")
    root["properties"]["registries"] = {k: v for k, v in root["properties"]["registries"].items() if k != "items"}
    return Draft202012Validator(root), Draft202012Validator(shell)


# Per provider, on first use: a file rarely holds them all; valid entries need no validator.
@functools.cache
def _provider_schema(name: str) -> dict[str, Any]:
    """The provider's schema with its ``$ref``s inlined."""
    uri = f"providers/{name}.schema.json"
    return _inline(_load_resources()[uri], uri, _load_resources())


@functools.cache
def _provider_validator(name: str):
    from jsonschema import Draft202012Validator

    return Draft202012Validator(_provider_schema(name))


@functools.cache
def _provider_quick_check(name: str) -> Callable[[Any], bool]:
    """True when an entry of this provider surely has no schema error."""
    try:
        check = quickcheck.compile_check(_provider_schema(name))
    except KeyError:  # a keyword compile_check does not know: jsonschema only
        return lambda entry: False

    def passes(entry: Any) -> bool:
        try:
            return check(entry)
        except quickcheck.Unsure:
            return False

    return passes


def iter_errors(data: Any):
    """(path, error) for every schema error of ``data``; equivalent to
    ``validator().iter_errors(data)``, and several times faster on big files."""
    document, shell = _fast_validators()
    for error in document.iter_errors(data):
        yield tuple(error.absolute_path), error
    registries = data.get("registries") if isinstance(data, dict) else None
    if not isinstance(registries, list):
        return
    for i, entry in enumerate(registries):
        provider = entry.get("provider") if isinstance(entry, dict) else None
        if not (isinstance(provider, str) and provider in PROVIDERS):
            chosen = shell
        elif _provider_quick_check(provider)(entry):
            continue
        else:
            chosen = _provider_validator(provider)
        for error in chosen.iter_errors(entry):
            yield ("registries", i, *error.absolute_path), error


def default_context(ctx: KeyPath) -> str:
    if not ctx:
        return ""
    if ctx[0] == "registries":
        return f"registries[{ctx[1]}]"
    return ".".join(str(p) for p in ctx)


def split_path(path: KeyPath) -> tuple[KeyPath, KeyPath]:
    """(the breadcrumb's path, the field path inside it)."""
    if len(path) >= 2 and path[0] == "registries" and isinstance(path[1], int):
        return path[:2], path[2:]
    if len(path) >= 2 and path[0] == "settings":
        return path[:1], path[1:]
    return (), path


def field_name(rel: KeyPath) -> str:
    out = ""
    for part in rel:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def check(
    doc: Document, *, context: Callable[[KeyPath], str] = default_context, sops: bool = False
) -> list[Diagnostic]:
    """Every schema problem of ``doc``, sorted by position, without duplicates."""
    mapper = _Mapper(doc, context, sops)
    for path, error in iter_errors(doc.data):
        mapper.add(path, error)
    return mapper.result()


_TYPE_NAMES = {
    "string": "a string",
    "array": "a list",
    "object": "a mapping",
    "boolean": "true or false",
    "integer": "a whole number",
    "number": "a number",
}


def _kind(value: Any) -> str:
    if value is None:
        return "empty"
    if isinstance(value, bool):
        return "true/false"
    if isinstance(value, (int, float)):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, dict):
        return "a mapping"
    return type(value).__name__


def _quote(value: Any) -> str:
    return json.dumps(value) if isinstance(value, (str, int, float, bool)) or value is None else _kind(value)


_SECRET_FORM = re.compile(r"\$\{[A-Za-z_][A-Za-z0-9_]*\}|ENC\[.+\]")


#: Names a newcomer writes for `provider:`, and the provider regsync calls it.
PROVIDER_ALIASES = {
    "github": "ghcr", "ghcr.io": "ghcr", "docker": "dockerhub", "docker-hub": "dockerhub",
    "docker.io": "dockerhub", "aws": "ecr", "amazon": "ecr", "google": "gar",
    "artifact-registry": "gar", "quay.io": "quay", "sonatype": "nexus",
    "artifactory": "other", "jfrog": "other", "harbor": "other", "gitlab": "other",
    "acr": "other", "azure": "other", "generic": "other",
}


def _article(word: str) -> str:
    """ "a" or "an" before ``word`` (by its first letter: "an Amazon", "a GitHub")."""
    return "an" if word[:1].lower() in "aeiou" else "a"


def _suggest(word: str, choices) -> str:
    same = [c for c in choices if c.lower() == word.lower()]  # GHCR: difflib compares case too
    close = same or difflib.get_close_matches(word, list(choices), n=1, cutoff=0.6)
    return f'; did you mean "{close[0]}"?' if close else ""


class _Mapper:
    def __init__(self, doc: Document, context: Callable[[KeyPath], str], sops: bool):
        self.doc = doc
        self.context = context
        self.sops = sops
        self.out: dict[tuple, Diagnostic] = {}

    def result(self) -> list[Diagnostic]:
        return sorted(self.out.values(), key=lambda d: (d.line, d.col, d.message))

    def emit(self, path: KeyPath, message: str, *, at_key: bool = False) -> None:
        line, col = self.doc.key_pos(path) if at_key else self.doc.value_pos(path)
        ctx, _ = split_path(path)
        d = Diagnostic(self.doc.file, line, col, self.context(ctx), message)
        self.out.setdefault((d.line, d.col, d.context, d.message), d)

    def _provider(self, path: KeyPath):
        """The provider of the registry entry containing ``path``, if it has a known one."""
        ctx, _ = split_path(path)
        if ctx and ctx[0] == "registries":
            entry = self.doc.data["registries"][ctx[1]]
            name = entry.get("provider") if isinstance(entry, dict) else None
            if isinstance(name, str):
                return PROVIDERS.get(name)
        return None

    def add(self, path: KeyPath, error) -> None:
        kind = error.validator
        handler = getattr(self, f"_on_{kind}", None)
        if handler is not None:
            handler(error, path)
            return
        _, rel = split_path(path)
        self.emit(path, f"{field_name(rel) or 'this entry'} is not valid here")

    # One handler per JSON Schema keyword the schemas use.

    def _on_additionalProperties(self, error, path: KeyPath) -> None:
        allowed = list(error.schema.get("properties", {}))
        provider = self._provider(path + ("x",))
        for key in error.instance:
            if key in allowed:
                continue
            msg = f'unknown field "{key}"'
            if provider is not None and key in SECRET_FIELDS:
                fields = sorted({m.secret_field for m in provider.auth_modes.values()})
                msg += f"; {_article(provider.name)} {provider.name} registry takes its secret in "
                msg += " or ".join(f'"{f}"' for f in fields)
            else:
                hint = _suggest(key, allowed)
                msg += hint or "; allowed here: " + ", ".join(allowed)
            self.emit(path + (key,), msg, at_key=True)

    def _on_required(self, error, path: KeyPath) -> None:
        provider = self._provider(path + ("x",))
        for name in error.validator_value:
            if isinstance(error.instance, dict) and name not in error.instance:
                hint = self._hint(name, provider)
                self.emit(path, f'missing required field "{name}"' + (f": {hint}" if hint else ""))

    def _hint(self, name: str, provider) -> str:
        if name == "version":
            return "write version: 1"
        if name == "provider":
            return "one of " + ", ".join(PROVIDERS)
        if name in SECRET_FIELDS:
            return f"write {name}: ${{VARIABLE}} (read from the environment) or encrypt the file with sops"
        if provider is None:
            return ""
        if name == "endpoint":
            return f'the {provider.title} host, e.g. "{provider.endpoint_example}"'
        if name == "auth_type":
            return "one of " + ", ".join(provider.auth_modes)
        if name == "access_key_id":
            return "the AWS Access Key ID"
        if name == "username":
            return f"the {provider.title} user name"
        return ""

    def _on_enum(self, error, path: KeyPath) -> None:
        _, rel = split_path(path)
        allowed = [str(v) for v in error.validator_value]
        value = error.instance
        msg = f"{field_name(rel)} {_quote(value)} is not one of: {', '.join(allowed)}"
        alias = PROVIDER_ALIASES.get(value.lower()) if isinstance(value, str) else None
        if rel == ("provider",) and alias in allowed:
            msg += f'; did you mean "{alias}"?'
            if alias == "other":
                msg += " (any registry that speaks the Docker Registry API, with username and password)"
        elif isinstance(value, str):
            msg += _suggest(value, allowed)
        self.emit(path, msg)

    def _on_const(self, error, path: KeyPath) -> None:
        _, rel = split_path(path)
        if rel == ("version",):
            self.emit(path, f"version must be 1, not {_quote(error.instance)} (the only format this regsync reads)")
        else:
            self.emit(path, f"{field_name(rel)} must be {_quote(error.validator_value)}")

    def _on_type(self, error, path: KeyPath) -> None:
        _, rel = split_path(path)
        expected = error.validator_value
        expected = [expected] if isinstance(expected, str) else expected
        want = " or ".join(_TYPE_NAMES.get(t, t) for t in expected)
        got = _kind(error.instance)
        if not path:
            self.emit(path, f"the file must be a mapping (version: 1, registries: ...), not {got}")
        elif not rel and path[0] == "registries":
            self.emit(path, f"each entry of registries must be a mapping (provider: ...), not {got}")
        else:
            self.emit(path, f"{field_name(rel)} must be {want}, not {got}")

    def _on_not(self, error, path: KeyPath) -> None:
        """A field the chosen auth_type does not use (the schema forbids it with not: {})."""
        _, rel = split_path(path)
        name = str(rel[-1]) if rel else ""
        provider = self._provider(path)
        entry = self.doc.data["registries"][path[1]] if provider else {}
        auth_type = entry.get("auth_type") if isinstance(entry, dict) else None
        msg = f'"{name}" does not go with auth_type: {auth_type}'
        if provider is not None:
            wanted = [k for k, m in provider.auth_modes.items() if m.secret_field == name]
            current = provider.auth_modes.get(auth_type) if isinstance(auth_type, str) else None
            if current is not None:
                msg += f" (it takes {current.secret_field})"
            if wanted:
                msg += f"; remove it, or set auth_type: {wanted[0]}"
        self.emit(path, msg, at_key=True)

    def _on_pattern(self, error, path: KeyPath) -> None:
        _, rel = split_path(path)
        name = str(rel[-1]) if rel else ""
        value = error.instance
        if name in SECRET_FIELDS:  # never quote the value: it may be the secret itself
            self.emit(path, self._secret_message(name, value))
        elif name == "endpoint":
            self.emit(path, self._endpoint_message(value, self._provider(path)))
        elif name in ("username", "access_key_id"):
            what = "Access Key ID" if name == "access_key_id" else "user name"
            self.emit(path, f"{name} {_quote(value)} is not read from the environment (only "
                            f"{', '.join(SECRET_FIELDS[:-1])} and {SECRET_FIELDS[-1]} are): "
                            f"write the {what} itself")
        elif name == "slug":
            self.emit(
                path,
                f'slug {_quote(value)} may hold only letters, digits, ".", "_", ":" and "-", '
                "starting with a letter or digit",
            )
        else:
            self.emit(path, f"{field_name(rel)} {_quote(value)} does not have the expected form")

    def _secret_message(self, name: str, value: str) -> str:
        if not value.strip():
            return (
                f"{name} is empty; write {name}: ${{VARIABLE}} (read from the environment)"
                " or encrypt the file with sops"
            )
        if value != value.strip() and _SECRET_FORM.fullmatch(value.strip()):
            return (
                f"{name} has a line break or spaces around its value (from | or quotes?); "
                f"write {name}: ${{VARIABLE}} on one line"
            )
        bare = re.fullmatch(r"\$([A-Za-z_][A-Za-z0-9_]*)", value)
        if bare:  # a variable name, not a secret: safe to show
            return f"{name} must be ${{VARIABLE}} with braces: write {name}: ${{{bare.group(1)}}}"
        if value.startswith("$"):
            return (
                f"{name} must be ${{VARIABLE}}, the name made of letters, digits and _ "
                "and not starting with a digit"
            )
        if self.sops:
            return (
                f"{name} is not encrypted: this sops file holds it in clear; make sops encrypt it "
                "(--encrypted-regex '^(password|token|secret_access_key|service_account_key)$') "
                f"or write {name}: ${{VARIABLE}}"
            )
        return (
            f"{name} holds a literal secret; write {name}: ${{VARIABLE}} and set that environment "
            "variable, or encrypt the file with sops"
        )

    @staticmethod
    def _endpoint_message(value: str, provider) -> str:
        example = provider.endpoint_example if provider else "registry.example.com"
        if "://" in value:
            host = value.split("://", 1)[1].split("/", 1)[0]
            return f'endpoint {_quote(value)} must be a host without a scheme; write "{host or example}"'
        if "/" in value:
            host = value.split("/", 1)[0]
            return (
                f'endpoint {_quote(value)} must be host or host:port, without a path; write "{host or example}" '
                "(image paths go in tests:)"
            )
        if provider is not None and provider.endpoint_pattern:
            account = re.match(r"([0-9]+)\.dkr\.ecr", value) if provider.name == "ecr" else None
            digits = (f": its account ID {account[1]} has {len(account[1])} digits, "
                      "an AWS account ID has 12") if account and len(account[1]) != 12 else ""
            return (f'endpoint {_quote(value)} is not {_article(provider.title)} {provider.title} host; '
                    f'expected a host like "{example}"{digits}')
        return f'endpoint {_quote(value)} is not a valid host; write host or host:port, e.g. "{example}"'

    def _on_minLength(self, error, path: KeyPath) -> None:
        _, rel = split_path(path)
        self.emit(path, f"{field_name(rel)} must not be empty")

    def _on_minimum(self, error, path: KeyPath) -> None:
        _, rel = split_path(path)
        self.emit(path, f"{field_name(rel)} must be {error.validator_value} or more, not {_quote(error.instance)}")

    def _on_uniqueItems(self, error, path: KeyPath) -> None:
        _, rel = split_path(path)
        seen: dict[str, int] = {}
        for i, item in enumerate(error.instance):
            key = json.dumps(item, sort_keys=True)
            if key in seen:
                first_line = self.doc.value_pos(path + (seen[key],))[0]
                self.emit(
                    path + (i,),
                    f"{field_name(rel)} lists {_quote(item)} twice (also at line {first_line}); list it once",
                )
            else:
                seen[key] = i
