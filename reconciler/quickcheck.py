"""A fast yes/no version of a JSON Schema, for validate's common case.

``compile_check(schema)`` turns a schema without ``$ref``s (the provider schemas, once
inlined) into a plain predicate that is True exactly when jsonschema would find no
error. jsonschema builds a validator object per keyword and value (~45 us a registry
entry); with this, it runs only on the entries the predicate rejects, to report their
errors, so every message still comes from jsonschema. Where exactness would need
jsonschema's finer rules (1.0 as an integer, equality of non-strings) the predicate
raises ``Unsure``; a keyword it does not know raises ``KeyError`` when compiling.
tests/test_schema_quickcheck.py holds it to jsonschema on random entries.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any


class Unsure(Exception):
    """A quick check cannot tell exactly what jsonschema would say; ask jsonschema."""


_ANNOTATIONS = frozenset({"$schema", "$comment", "title", "description", "default", "examples"})
_TYPES = {"string": str, "object": dict, "array": list, "boolean": bool, "null": type(None)}


def compile_check(node: Any) -> Callable[[Any], bool]:
    """A predicate, True exactly when ``node`` (a schema without ``$ref``s) accepts the
    instance. It raises ``Unsure`` where jsonschema's finer rules matter (1.0 as an integer),
    and ``KeyError`` here for a keyword it does not know. Speed: jsonschema (a validator
    object per keyword and value, ~45 us an entry) then runs only on entries this rejects."""
    if node is True or node is False:
        return lambda instance: node
    found = [_keyword_check(k, v, node) for k, v in node.items() if k not in _ANNOTATIONS]
    checks = [check for check in found if check is not None]

    def accepts(instance: Any) -> bool:
        for check in checks:  # a loop, not all(generator): this runs per value
            if not check(instance):
                return False
        return True

    return accepts


def _keyword_check(key: str, value: Any, node: dict) -> Callable[[Any], bool] | None:
    if key == "type":
        names = [value] if isinstance(value, str) else value
        if not set(names) <= {*_TYPES, "integer", "number"}:
            raise KeyError(value)
        if len(names) == 1 and names[0] in _TYPES:
            cls = _TYPES[names[0]]
            return lambda i: isinstance(i, cls)
        return lambda i: any(_is_type(i, name) for name in names)
    if key in ("const", "enum"):
        allowed = [value] if key == "const" else value
        if not all(isinstance(v, str) for v in allowed):  # jsonschema's rules for 1 == 1.0 != true
            raise KeyError(key)
        return lambda i: i in allowed  # exact: jsonschema compares with a string by ==
    if key == "pattern":
        regex = re.compile(value)
        return lambda i: not isinstance(i, str) or regex.search(i) is not None
    if key == "minLength":
        return lambda i: not isinstance(i, str) or len(i) >= value
    if key == "minimum":
        return lambda i: not _is_type(i, "number") or i >= value
    if key == "required":
        return lambda i: not isinstance(i, dict) or all(name in i for name in value)
    if key == "properties":
        subs = {name: compile_check(sub) for name, sub in value.items()}
        return lambda i: not isinstance(i, dict) or all(subs[k](i[k]) for k in i if k in subs)
    if key == "additionalProperties" and value is False and "patternProperties" not in node:
        known = set(node.get("properties", ()))
        return lambda i: not isinstance(i, dict) or i.keys() <= known
    if key == "items" and "prefixItems" not in node:
        sub = compile_check(value)
        return lambda i: not isinstance(i, list) or all(sub(item) for item in i)
    if key == "uniqueItems":
        return _unique_strings if value else None
    if key == "allOf":
        parts = [compile_check(sub) for sub in value]
        return lambda i: all(part(i) for part in parts)
    if key == "not":
        sub = compile_check(value)
        return lambda i: not sub(i)
    if key == "if":
        test = compile_check(value)
        then = compile_check(node.get("then", True))
        else_ = compile_check(node.get("else", True))
        return lambda i: then(i) if test(i) else else_(i)
    if key in ("then", "else"):
        return None  # part of "if"
    raise KeyError(key)


def _unique_strings(instance: Any) -> bool:
    if isinstance(instance, list) and not all(isinstance(item, str) for item in instance):
        raise Unsure  # jsonschema's equality rules for other values
    return not isinstance(instance, list) or len(set(instance)) == len(instance)


def _is_type(instance: Any, name: str) -> bool:
    if name in ("integer", "number"):
        if isinstance(instance, float) and name == "integer":
            raise Unsure  # jsonschema counts 1.0 as an integer
        return isinstance(instance, (int, float)) and not isinstance(instance, bool)
    return isinstance(instance, _TYPES[name])
