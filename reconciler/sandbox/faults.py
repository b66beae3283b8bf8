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
import re
import threading
import time
from collections import deque
from dataclasses import asdict, dataclass, fields

ACTIONS = ("error", "drop_before", "drop_after", "error_after")
OPERATIONS = ("list", "create", "update", "delete", "test", "logs", "iam", "apps")
WRITE_OPERATIONS = frozenset({"create", "update", "delete"})


@dataclass
class FaultRule:
    method: str | None = None  # "POST" ... or None for any
    path: str | None = None  # regex searched in the (decoded) path under /vendor/v3
    action: str = "error"  # "error" | "drop_before" | "drop_after" | "error_after"
    status: int = 503
    retry_after: float | None = None  # Retry-After header (seconds)
    times: int = 1  # how many matching requests it hits; -1 forever

    def __post_init__(self):
        if self.action not in ACTIONS:
            raise ValueError(f"unknown fault action {self.action!r} (one of {', '.join(ACTIONS)})")
        if self.path is not None:
            re.compile(self.path)
        if not 100 <= int(self.status) <= 599:
            raise ValueError(f"fault status must be an HTTP status, not {self.status!r}")

    def matches(self, method: str, path: str) -> bool:
        if self.method is not None and self.method.upper() != method.upper():
            return False
        return self.path is None or re.search(self.path, path) is not None

    @classmethod
    def from_dict(cls, data: dict) -> FaultRule:
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
        """Apply the JSON body of ``POST /_sandbox/faults``. Raises ValueError."""
        if not isinstance(data, dict):
            raise ValueError("the faults body must be a JSON object")
        known = {"latency_ms", "rate_limit", "fail_before_rate", "lose_after_rate",
                 "rules", "clear", "seed"}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"unknown faults field(s): {', '.join(unknown)}")
        rules = [FaultRule.from_dict(r) for r in data.get("rules") or []]
        rate_limit = self.rate_limit
        if "rate_limit" in data:
            rl = data["rate_limit"]
            rate_limit = None if rl is None else (int(rl["requests"]), float(rl["per_seconds"]))
            if rate_limit is not None and (rate_limit[0] < 1 or rate_limit[1] <= 0):
                raise ValueError("rate_limit needs requests >= 1 and per_seconds > 0")
        for key in ("fail_before_rate", "lose_after_rate"):
            if key in data and not 0.0 <= float(data[key]) <= 1.0:
                raise ValueError(f"{key} must be between 0 and 1")
        if data.get("clear"):
            self.clear()
        if "seed" in data:
            self.seed = data["seed"]
            self._rng = random.Random(self.seed)
        if "latency_ms" in data:
            self.latency_ms = int(data["latency_ms"])
        if "rate_limit" in data:
            self.rate_limit = rate_limit
            self._window.clear()
        for key in ("fail_before_rate", "lose_after_rate"):
            if key in data:
                setattr(self, key, float(data[key]))
        for rule in rules:
            self.add(rule)

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
