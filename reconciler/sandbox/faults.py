"""Injected misbehaviour for the sandbox: latency, errors, lost answers, 429s.

Tests and benchmarks of the API client use these to prove its retry rules. Every
knob is thread-safe and applies to API requests under ``/vendor/v3`` only (the
``/_sandbox/...`` control endpoints are never faulted).

Order of decisions for one request: latency (sleep), then the rate limit (429 with
``Retry-After``), then the first matching :class:`FaultRule` with hits left, then the
random ``fail_before_rate`` / ``lose_after_rate`` (write calls: create, update,
delete).
"""

from __future__ import annotations

import random
import threading
import time
from collections import deque
from dataclasses import asdict, dataclass, fields

ACTIONS = ("error", "drop_before", "drop_after", "error_after")
OPERATIONS = ("list", "create", "update", "delete", "test", "logs", "iam", "apps")
WRITE_OPERATIONS = frozenset({"create", "update", "delete"})


MAX_LATENCY_MS = 60_000
MAX_RETRY_AFTER = 3600.0
_PATTERN_SPECIALS = frozenset("()[]{}?+|\\")


def _number(value, name: str, low: float, high: float) -> float:
    """``value`` as a float in [low, high]; ValueError naming ``name`` otherwise."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not low <= value <= high:
        raise ValueError(f"{name} must be a number from {low:g} to {high:g}, not {value!r}")
    return float(value)


def _integer(value, name: str, low: int, high: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise ValueError(f"{name} must be an integer from {low} to {high}, not {value!r}")
    return value


class PathPattern:
    """Which paths a rule hits: literal text found anywhere in the path, ``^`` at the
    start anchors it to the beginning, ``$`` at the end to the end, and ``*`` matches
    any run of characters (``^/external_registry/*$``). No regular expressions, so
    matching costs at most one scan per ``*`` however the pattern is written."""

    def __init__(self, text: str):
        if not isinstance(text, str) or not text or len(text) > 500:
            raise ValueError("a fault rule's path must be a non-empty string of at most 500 characters")
        bad = sorted(_PATTERN_SPECIALS.intersection(text))
        if bad:
            raise ValueError(
                f"fault path {text!r} has {' '.join(bad)}: a path is literal text with an optional "
                "^ at the start, $ at the end and * wildcards (not a regular expression)"
            )
        self.text = text
        body = text
        self.start = body.startswith("^")
        body = body[1:] if self.start else body
        self.end = body.endswith("$")
        body = body[:-1] if self.end else body
        self.pieces = body.split("*")

    def matches(self, path: str) -> bool:
        first, *rest = self.pieces
        if not rest:
            if self.start and self.end:
                return path == first
            if self.start:
                return path.startswith(first)
            return path.endswith(first) if self.end else first in path
        if self.start:
            if not path.startswith(first):
                return False
            pos = len(first)
        else:
            at = path.find(first)
            if at < 0:
                return False
            pos = at + len(first)
        *middle, last = rest
        for piece in middle:  # leftmost match of each piece is never worse for '*' globs
            at = path.find(piece, pos)
            if at < 0:
                return False
            pos = at + len(piece)
        if self.end:
            return len(path) - pos >= len(last) and path.endswith(last)
        return path.find(last, pos) >= 0


@dataclass
class FaultRule:
    method: str | None = None  # "POST" ... or None for any
    path: str | None = None  # a PathPattern matched against the decoded path under /vendor/v3
    action: str = "error"  # "error" | "drop_before" | "drop_after" | "error_after"
    status: int = 503
    retry_after: float | None = None  # Retry-After header (seconds)
    times: int = 1  # how many matching requests it hits; -1 forever

    def __post_init__(self):
        if self.action not in ACTIONS:
            raise ValueError(f"unknown fault action {self.action!r} (one of {', '.join(ACTIONS)})")
        if self.method is not None and not (isinstance(self.method, str) and self.method.isalpha()):
            raise ValueError(f"a fault rule's method must be an HTTP method name, not {self.method!r}")
        self._pattern = None if self.path is None else PathPattern(self.path)
        _integer(self.status, "a fault rule's status", 100, 599)
        if self.retry_after is not None:
            _number(self.retry_after, "a fault rule's retry_after", 0, MAX_RETRY_AFTER)
        _integer(self.times, "a fault rule's times", -1, 1_000_000)

    def matches(self, method: str, path: str) -> bool:
        if self.method is not None and self.method.upper() != method.upper():
            return False
        return self._pattern is None or self._pattern.matches(path)

    @classmethod
    def from_dict(cls, data: dict) -> FaultRule:
        if not isinstance(data, dict):
            raise ValueError("each fault rule must be a JSON object")
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"unknown fault rule field(s): {', '.join(unknown)}")
        return cls(**data)


@dataclass(frozen=True)
class Decision:
    """What to do to one request: ``before`` is None or ("error"/"drop_before"),
    ``after`` is None or ("error_after"/"drop_after"), with the status to answer."""

    before: str | None = None
    after: str | None = None
    status: int = 503
    retry_after: float | None = None


NO_FAULT = Decision()


def format_retry_after(seconds: float) -> str:
    """Seconds as the header value: an integer when whole, else up to 3 decimals."""
    seconds = max(0.0, seconds)
    if float(seconds).is_integer():
        return str(int(seconds))
    return f"{seconds:.3f}".rstrip("0").rstrip(".")


def parse_rate_limit(text: str) -> tuple[int, float]:
    """``"N/SECONDS"`` (e.g. ``"10/1.5"``) as ``(10, 1.5)``; ValueError with a hint."""
    requests, sep, seconds = text.partition("/")
    try:
        parsed = (int(requests), float(seconds))
    except ValueError:
        parsed = None
    if not sep or parsed is None or parsed[0] < 1 or not parsed[1] > 0:
        raise ValueError(f"rate limit {text!r} must be N/SECONDS, e.g. 10/1 (N >= 1, SECONDS > 0)")
    return parsed


def _rate_limit(value) -> tuple[int, float] | None:
    if value is None:
        return None
    if not isinstance(value, dict) or set(value) != {"requests", "per_seconds"}:
        raise ValueError('rate_limit must be null or {"requests": N, "per_seconds": SECONDS}')
    return (_integer(value["requests"], "rate_limit.requests", 1, 1_000_000),
            _number(value["per_seconds"], "rate_limit.per_seconds", 0.001, 3600))


class Faults:
    """The sandbox's fault knobs. Assign the attributes directly or use ``add``."""

    def __init__(
        self,
        *,
        latency_ms: int = 0,
        rate_limit: tuple[int, float] | None = None,
        fail_before_rate: float = 0.0,
        lose_after_rate: float = 0.0,
        seed: int | None = None,
    ):
        self._lock = threading.Lock()
        self._rules: list[FaultRule] = []
        self._window: deque[float] = deque()
        self.latency_ms = latency_ms
        self.rate_limit = rate_limit
        self.fail_before_rate = fail_before_rate
        self.lose_after_rate = lose_after_rate
        self.seed = seed
        self._rng = random.Random(seed)

    def add(self, rule: FaultRule) -> None:
        with self._lock:
            self._rules.append(rule)

    @property
    def rules(self) -> list[FaultRule]:
        with self._lock:
            return list(self._rules)

    def clear(self) -> None:
        """Back to no faults at all: rules, latency, rate limit and random rates."""
        with self._lock:
            self._rules.clear()
            self._window.clear()
            self.latency_ms = 0
            self.rate_limit = None
            self.fail_before_rate = 0.0
            self.lose_after_rate = 0.0
            self._rng = random.Random(self.seed)

    def configure(self, data: dict) -> None:
        """Apply the JSON body of ``POST /_sandbox/faults``: every field is checked
        first, and nothing changes when one is wrong (ValueError saying which)."""
        if not isinstance(data, dict):
            raise ValueError("the faults body must be a JSON object")
        known = {"latency_ms", "rate_limit", "fail_before_rate", "lose_after_rate",
                 "rules", "clear", "seed"}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"unknown faults field(s): {', '.join(unknown)}")
        rules = data.get("rules") or []
        if not isinstance(rules, list):
            raise ValueError("rules must be a list of fault rules")
        rules = [FaultRule.from_dict(r) for r in rules]
        changes: dict = {}
        if "latency_ms" in data:
            latency = _number(data["latency_ms"], "latency_ms", 0, MAX_LATENCY_MS)
            changes["latency_ms"] = int(latency) if latency.is_integer() else latency
        if "rate_limit" in data:
            changes["rate_limit"] = _rate_limit(data["rate_limit"])
        for key in ("fail_before_rate", "lose_after_rate"):
            if key in data:
                changes[key] = _number(data[key], key, 0, 1)
        if "seed" in data and data["seed"] is not None:
            _integer(data["seed"], "seed", -(2**63), 2**63 - 1)
        if "clear" in data and not isinstance(data["clear"], bool):
            raise ValueError("clear must be true or false")
        # everything is valid: now change the state
        if data.get("clear"):
            self.clear()
        with self._lock:
            if "seed" in data:
                self.seed = data["seed"]
                self._rng = random.Random(self.seed)
            if "rate_limit" in changes:
                self._window.clear()
            for key, value in changes.items():
                setattr(self, key, value)
            self._rules.extend(rules)

    def describe(self) -> dict:
        return {
            "latency_ms": self.latency_ms,
            "rate_limit": None
            if self.rate_limit is None
            else {"requests": self.rate_limit[0], "per_seconds": self.rate_limit[1]},
            "fail_before_rate": self.fail_before_rate,
            "lose_after_rate": self.lose_after_rate,
            "seed": self.seed,
            "rules": [asdict(r) for r in self.rules],
        }

    def decide(self, method: str, path: str, *, operation: str | None) -> Decision:
        """Consume the faults that hit this request (after the latency sleep)."""
        now = time.monotonic()
        with self._lock:
            if self.rate_limit is not None:
                limit, window = self.rate_limit
                while self._window and self._window[0] <= now - window:
                    self._window.popleft()
                if len(self._window) >= limit:
                    wait = self._window[0] + window - now
                    return Decision(before="error", status=429, retry_after=max(wait, 0.001))
                self._window.append(now)
            for rule in self._rules:
                if rule.times != 0 and rule.matches(method, path):
                    if rule.times > 0:
                        rule.times -= 1
                    if rule.times == 0:
                        self._rules.remove(rule)
                    if rule.action in ("error", "drop_before"):
                        return Decision(before=rule.action, status=rule.status,
                                        retry_after=rule.retry_after)
                    return Decision(after=rule.action, status=rule.status,
                                    retry_after=rule.retry_after)
            if operation in WRITE_OPERATIONS:
                if self.fail_before_rate and self._rng.random() < self.fail_before_rate:
                    return Decision(before="error", status=503)
                if self.lose_after_rate and self._rng.random() < self.lose_after_rate:
                    return Decision(after="drop_after")
        return NO_FAULT


class Stats:
    """Counts of API requests received (faulted and refused ones included)."""

    def __init__(self):
        self._lock = threading.Lock()
        self.reset()

    def reset(self) -> None:
        with self._lock:
            self._requests = 0
            self._by_operation = dict.fromkeys(OPERATIONS, 0)

    def count(self, operation: str | None) -> None:
        with self._lock:
            self._requests += 1
            if operation is not None:
                self._by_operation[operation] += 1

    @property
    def requests(self) -> int:
        with self._lock:
            return self._requests

    @property
    def by_operation(self) -> dict[str, int]:
        with self._lock:
            return dict(self._by_operation)

    def __getitem__(self, key: str):
        return self.snapshot()[key]

    def snapshot(self) -> dict:
        with self._lock:
            return {"requests": self._requests, "by_operation": dict(self._by_operation)}
