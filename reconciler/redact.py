"""Masking secrets in text that came from elsewhere (an API answer, sops' stderr), and
making that text safe to print.

The rule, used by every boundary that may repeat a secret back:

1. mask first, on the text as it came, before anything reshapes it (clipping,
   collapsing whitespace, escaping), so a reshaped secret cannot slip past the mask;
2. mask every form the secret can take in a reply: as sent, JSON- or repr-escaped,
   with its whitespace collapsed, changed or removed (a pretty-printed JSON key
   re-serialized compactly), each line of a multi-line secret and each string value of
   a JSON-object secret on its own, and base64 (also of ``username:password``, as a
   Basic header carries it);
3. when a secret is too short to mask without giving itself away (``t********e``
   shows the secret was "h"), withhold the upstream text altogether;
4. then escape control characters and clip (``errors.outside``).
"""

from __future__ import annotations

import base64
import copy
import json
import re
from collections.abc import Iterable

from reconciler.errors import outside

MASK = "********"
#: Secrets shorter than this are not masked but make the upstream text withheld.
MIN_MASKED = 8
WITHHELD = "(message withheld: it might contain a secret too short to mask)"

# In a reply, a whitespace or control character of the secret may appear as itself, as
# an escape (JSON "\n", "\u0009", Python "\x09"), collapsed with its neighbours, or gone.
_GAP = r"(?:\s|\\[ntrfbv]|\\u00[0-9a-fA-F]{2}|\\x[0-9a-fA-F]{2}|[\x00-\x1f\x7f])*"
_ESCAPED = {'"': r'\\"', "\\": r"\\\\", "/": r"\\/", "'": r"\\'"}


def _char(ch: str) -> str:
    forms = [re.escape(ch)]
    if ch in _ESCAPED:
        forms.append(_ESCAPED[ch])
    if ord(ch) > 0x7E or not ch.isalnum():  # Go's JSON writes & < > as \u0026 \u003c \u003e
        code = f"{ord(ch):04x}"
        forms.append(rf"\\u(?i:{code})" if ord(ch) <= 0xFFFF else re.escape(ascii(ch)[1:-1]))
    return forms[0] if len(forms) == 1 else "(?:" + "|".join(forms) + ")"


def _pattern(value: str) -> str:
    """A regex for ``value`` in any of the forms above, whitespace and control
    characters matching any gap."""
    parts: list[str] = []
    for ch in value:
        if ch.isspace() or not ch.isprintable():
            if parts and parts[-1] != _GAP:
                parts.append(_GAP)
        else:
            parts.append(_char(ch))
    while parts and parts[-1] == _GAP:
        parts.pop()
    return "".join(parts)


def _visible(value: str) -> int:
    """How many characters of ``value`` a mask can match on (not whitespace or control)."""
    return sum(1 for ch in value if ch.isprintable() and not ch.isspace())


def _pieces(value: str) -> Iterable[str]:
    """The secret, each of its lines, and each string value if it is a JSON object."""
    yield value
    if "\n" in value:
        yield from (line.strip() for line in value.splitlines())
    if value.lstrip().startswith("{"):
        try:
            data = json.loads(value)
        except (ValueError, RecursionError):
            data = None
        if isinstance(data, dict):
            for item in data.values():
                if isinstance(item, str):
                    yield item
                    yield from (line.strip() for line in item.splitlines())


def _base64_forms(value: str, username: str | None) -> Iterable[str]:
    for plain in (value, f"{username}:{value}" if username else None):
        if plain is None:
            continue
        raw = plain.encode("utf-8", "surrogatepass")
        for encoded in (base64.b64encode(raw), base64.urlsafe_b64encode(raw)):
            text = encoded.decode("ascii")
            yield text
            yield text.rstrip("=")


class Masker:
    """Masks a fixed set of secrets in text; built once per call that may need it."""

    def __init__(self, secrets: Iterable[str | None], *, username: str | None = None):
        self._values = {s.strip() for s in secrets if s and s.strip()}
        self._username = username
        self.withhold = any(_visible(v) < MIN_MASKED for v in self._values)
        self._regex: re.Pattern | None = None  # compiled on first use: most calls never need it

    def with_username(self, username: str) -> Masker:
        """The same secrets, masked also in their base64 forms with ``username``."""
        other = copy.copy(self)
        other._username, other._regex = username, None
        return other

    def _compiled(self) -> re.Pattern:
        if self._regex is None:
            patterns: set[str] = set()
            literals: set[str] = set()
            for value in self._values:
                patterns.update(_pattern(p) for p in _pieces(value) if _visible(p) >= MIN_MASKED)
                literals.update(f for f in _base64_forms(value, self._username)
                                if len(f) >= MIN_MASKED)
            alternatives = sorted(patterns, key=len, reverse=True)
            alternatives += [re.escape(f) for f in sorted(literals, key=len, reverse=True)]
            self._regex = re.compile("|".join(alternatives))
        return self._regex

    def mask(self, text: str) -> str:
        """``text`` with every form of every secret replaced by ``MASK``; the whole
        text replaced by ``WITHHELD`` when a secret is too short to mask."""
        if not text or not self._values:
            return text
        if self.withhold:
            return WITHHELD
        text = self._compiled().sub(MASK, text)
        # an echo the upstream cut short ("password 'CANARY-12..."), at the end or before "..."
        for value in self._values:
            for cut in range(min(len(value) - 1, 200), MIN_MASKED - 1, -1):
                head = value[:cut]
                if text.endswith(head) or head + "..." in text or head + "\u2026" in text:
                    text = text.replace(head + "...", MASK + "...").replace(head + "\u2026", MASK + "...")
                    if text.endswith(head):
                        text = text[: -len(head)] + MASK
                    break
        return text

    def show(self, text: str, limit: int) -> str:
        """Masked, then escaped and clipped: ready to put in a message."""
        return outside(self.mask(text), limit)


NO_SECRETS = Masker(())
