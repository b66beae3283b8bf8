"""Load YAML as plain Python data, remembering where every key and value is.

PyYAML composes the node graph (with libyaml when it is there); we build the values
ourselves so that each one keeps its 1-based (line, col), addressed by its path:
``("registries", 2, "username")``. Duplicate keys, unsupported tags and syntax errors
become ``Diagnostic``s, never exceptions from yaml.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import yaml
from yaml.nodes import MappingNode, ScalarNode, SequenceNode

from reconciler.errors import Diagnostic

_Loader: type[yaml.CSafeLoader] | type[yaml.SafeLoader]
try:
    _Loader = yaml.CSafeLoader
except AttributeError:  # PyYAML built without libyaml
    _Loader = yaml.SafeLoader

KeyPath = tuple  # of str keys and int indexes

_STR = "tag:yaml.org,2002:str"
_TIMESTAMP = "tag:yaml.org,2002:timestamp"
_PLAIN_TAGS = {
    _STR,
    "tag:yaml.org,2002:int",
    "tag:yaml.org,2002:float",
    "tag:yaml.org,2002:bool",
    "tag:yaml.org,2002:null",
    _TIMESTAMP,
}
_MAX_DEPTH = 64
_MAX_VALUES = 1_000_000  # aliases can expand a small file exponentially ("billion laughs")
_RECURSIVE = "the document nests too deeply: an alias is used inside the node it names (recursive alias)"


@dataclass
class Document:
    """Plain data (dict/list/str/int/float/bool/None) plus where each part is."""

    file: str
    data: Any
    values: dict[KeyPath, tuple[int, int]] = field(default_factory=dict)
    keys: dict[KeyPath, tuple[int, int]] = field(default_factory=dict)

    def value_pos(self, path: KeyPath) -> tuple[int, int]:
        """Where the value at ``path`` starts; the nearest known parent otherwise."""
        path = tuple(path)
        while path not in self.values and path:
            path = path[:-1]
        return self.values.get(path, (1, 1))

    def key_pos(self, path: KeyPath) -> tuple[int, int]:
        """Where the key of the mapping entry at ``path`` is (its value for list items)."""
        path = tuple(path)
        if path in self.keys:
            return self.keys[path]
        return self.value_pos(path)


class YamlError(Exception):
    """Raised by ``load``; carries the diagnostics (internal, caught by config)."""

    def __init__(self, diagnostics: list[Diagnostic]):
        self.diagnostics = diagnostics
        super().__init__("\n".join(str(d) for d in diagnostics))


def _pos(node) -> tuple[int, int]:
    return node.start_mark.line + 1, node.start_mark.column + 1


def load(text: str, file: str) -> Document:
    """Parse one YAML document. Raises ``YamlError`` with every problem found."""
    loader = _Loader(text)
    try:
        try:
            node = loader.get_single_node()
        except yaml.MarkedYAMLError as exc:
            raise YamlError([_syntax_diagnostic(exc, file, text)]) from None
        except yaml.YAMLError as exc:  # ReaderError: bad characters
            line, col = _reader_pos(exc, text)
            raise YamlError([Diagnostic(file, line, col, "", f"cannot read YAML: {_first_line(exc)}")]) from None
        doc = Document(file=file, data=None)
        if node is None:
            return doc
        problems: list[Diagnostic] = []
        builder = _Builder(loader, doc, problems)
        try:
            doc.data = builder.build(node, (), 0)
        except _TooBig as exc:
            line, col = _pos(exc.node)
            message = (
                f"the document expands to more than {_MAX_VALUES:,} values through its aliases; write it out plainly"
            )
            raise YamlError([Diagnostic(file, line, col, "", message)]) from None
        if problems:
            raise YamlError(sorted(problems, key=lambda d: (d.line, d.col)))
        return doc
    finally:
        loader.dispose()


def _first_line(exc: Exception) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__


def _reader_pos(exc, text: str) -> tuple[int, int]:
    position = getattr(exc, "position", None)
    if not isinstance(position, int):
        return 1, 1
    before = text[:position]
    return before.count("\n") + 1, position - (before.rfind("\n") + 1) + 1


# What PyYAML says when a line is indented more or less than its neighbours.
_INDENTATION_SIGNS = ("mapping values are not allowed", "did not find expected '-' indicator",
                      "did not find expected key", "expected <block end>")


def _syntax_diagnostic(exc: yaml.MarkedYAMLError, file: str, text: str) -> Diagnostic:
    mark = exc.problem_mark or exc.context_mark
    line, col = (mark.line + 1, mark.column + 1) if mark else (1, 1)
    problem = (exc.problem or "").strip()
    context = (exc.context or "").strip()
    lines = text.splitlines()
    at = lines[line - 1] if 0 < line <= len(lines) else ""
    if "expected a single document" in context or "but found another document" in problem:
        message = "the file holds more than one YAML document (---); regsync reads exactly one"
    elif "\t" in at[: len(at) - len(at.lstrip())] or at[col - 1 : col] == "\t":
        message = "a tab character: YAML indents with spaces only; replace the tab with spaces"
    else:
        message = f"YAML syntax error: {problem}" + (f" ({context})" if context else "")
        if any(sign in problem for sign in _INDENTATION_SIGNS):
            message += ("; check this line's indentation: "
                        "the fields of one entry line up under each other")
    return Diagnostic(file, line, col, "", message)


class _TooBig(Exception):
    def __init__(self, node):
        self.node = node


class _Builder:
    def __init__(self, loader, doc: Document, problems: list[Diagnostic]):
        self.loader = loader
        self.doc = doc
        self.problems = problems
        self.active: set[int] = set()  # ids of the collection nodes being built (a path)
        self.count = 0

    def _problem(self, node, message: str) -> None:
        line, col = _pos(node)
        self.problems.append(Diagnostic(self.doc.file, line, col, "", message))

    def build(self, node, path: KeyPath, depth: int) -> Any:
        self.doc.values[path] = _pos(node)
        self.count += 1
        if self.count > _MAX_VALUES:
            raise _TooBig(node)
        if depth > _MAX_DEPTH:
            self._problem(node, "the document nests too deeply (recursive alias?)")
            return None
        if isinstance(node, ScalarNode):
            return self._scalar(node)
        if id(node) in self.active:
            self._problem(node, _RECURSIVE)
            return None
        self.active.add(id(node))
        try:
            if isinstance(node, SequenceNode):
                if node.tag != "tag:yaml.org,2002:seq":
                    self._problem(node, f"unsupported YAML tag {node.tag}; write plain YAML")
                return [self.build(item, path + (i,), depth + 1) for i, item in enumerate(node.value)]
            if isinstance(node, MappingNode):
                return self._mapping(node, path, depth)
        finally:
            self.active.discard(id(node))
        self._problem(node, "unsupported YAML node")  # pragma: no cover - yaml has no others
        return None

    def _scalar(self, node: ScalarNode) -> Any:
        if node.tag not in _PLAIN_TAGS:
            self._problem(node, f"unsupported YAML tag {node.tag}; write plain YAML")
            return node.value
        if node.tag in (_STR, _TIMESTAMP):  # a date stays the text written
            return node.value
        try:
            return self.loader.construct_object(node, deep=True)
        except yaml.YAMLError:
            return node.value
        except (ValueError, KeyError, TypeError, OverflowError):
            # An explicit tag on text that is not one (`!!bool maybe`, `!!int x`), or an
            # integer past Python's 4300-digit limit for int(str). Never quote the value:
            # it may be a secret.
            kind = node.tag.rsplit(":", 1)[-1]
            if kind == "int" and len(node.value) > 4000:
                self._problem(node, f"the number is too long ({len(node.value)} characters); write a smaller one")
            else:
                self._problem(node, f"this value is not a valid {kind}, as its tag !!{kind} says; remove the tag")
            return node.value

    def _mapping(self, node: MappingNode, path: KeyPath, depth: int) -> dict:
        if node.tag not in ("tag:yaml.org,2002:map",):
            self._problem(node, f"unsupported YAML tag {node.tag}; write plain YAML")
        seen: dict[str, tuple[int, int]] = {}
        explicit = []
        merges = []
        for key_node, value_node in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":
                merges.append(value_node)
                continue
            if not isinstance(key_node, ScalarNode):
                self._problem(key_node, "a mapping key must be a plain string")
                continue
            key = key_node.value
            if key in seen:
                line, _ = seen[key]
                self._problem(key_node, f'duplicate key "{key}" (first at line {line}); keep only one')
                continue
            seen[key] = _pos(key_node)
            explicit.append((key, key_node, value_node))
        result: dict = {}
        for merge in merges:  # `<<: *anchor`: explicit keys win
            sources = merge.value if isinstance(merge, SequenceNode) else [merge]
            for source in sources:
                if not isinstance(source, MappingNode):
                    self._problem(merge, "a YAML merge (<<) takes a mapping or a list of mappings")
                    continue
                if id(source) in self.active:
                    self._problem(merge, _RECURSIVE)
                    continue
                self.active.add(id(source))
                try:
                    merged = self._mapping(source, path, depth + 1)
                finally:
                    self.active.discard(id(source))
                for key, value in merged.items():
                    if key not in seen and key not in result:
                        result[key] = value
        self.doc.values[path] = _pos(node)
        for key, _, value_node in explicit:
            key_path = path + (key,)
            self.doc.keys[key_path] = seen[key]  # the key's position, noted above
            result[key] = self.build(value_node, key_path, depth + 1)
        return result
