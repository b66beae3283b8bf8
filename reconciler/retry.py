"""How the Vendor API client waits and gives up: a retry policy, and the budget of
one logical call (attempts and wall time), both free of any HTTP library.

Backoff is exponential with full jitter (a uniform pick in ``[0, min(max_delay,
base_delay * 2**n))``), except when the server says how long to wait
(``Retry-After``, in seconds or as an HTTP-date), which is honoured up to
``max_retry_after``. Every call is bounded by ``total_time`` seconds (no request of
the call runs past it) and by ``max_attempts`` requests, of which at most
``max_timeouts`` may end without an answer in time.

A connection that cannot be made (refused, reset before anything was sent: an API
restarting) is retried apart from those attempts, with short waits, for up to
``connect_time`` seconds from the first such failure (within ``total_time``), so a restart of a few seconds
does not fail a run.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from email.utils import parsedate_to_datetime


@dataclass(frozen=True, kw_only=True)
class RetryPolicy:
    """Bounds and pacing of retries. ``sleep``, ``clock`` and ``random`` are injectable
    so a caller can pace or observe the waits; the defaults are the real ones."""

    max_attempts: int = 5  # requests per logical call, the first included
    base_delay: float = 0.5  # seconds; the first backoff is drawn from [0, base)
    max_delay: float = 8.0  # cap of one backoff
    total_time: float = 60.0  # seconds from the first request to the last wait
    max_retry_after: float = 30.0  # cap of a server's Retry-After
    max_timeouts: int = 2  # requests per call that may end with no answer in time
    connect_time: float = 20.0  # seconds connection failures are retried, from the call's start
    max_connect_delay: float = 1.0  # cap of one wait after a connection failure
    sleep: Callable[[float], None] = field(default=time.sleep, repr=False, compare=False)
    clock: Callable[[], float] = field(default=time.monotonic, repr=False, compare=False)
    random: Callable[[], float] = field(default=random.random, repr=False, compare=False)

    def __post_init__(self):
        if self.max_attempts < 1:
            raise ValueError("RetryPolicy.max_attempts must be at least 1")
        if min(self.base_delay, self.max_delay, self.total_time, self.max_retry_after,
               self.connect_time, self.max_connect_delay) < 0:
            raise ValueError("RetryPolicy delays and times cannot be negative")

    def backoff(self, retry: int) -> float:
        """The wait before retry number ``retry`` (1 for the first retry)."""
        ceiling = min(self.max_delay, self.base_delay * (2 ** max(retry - 1, 0)))
        return self.random() * ceiling

    def budget(self) -> Budget:
        return Budget(self)


DEFAULT_RETRY = RetryPolicy()
NO_RETRY = RetryPolicy(max_attempts=1)


#: What ended an attempt, for ``Budget.wait``.
ANSWERED, CONNECT, LOST, TIMEOUT = "answered", "connect", "lost", "timeout"


class Budget:
    """The attempts and the time left to one logical call (not shared across threads)."""

    def __init__(self, policy: RetryPolicy):
        self.policy = policy
        self.attempts = 0  # requests begun, connection failures included
        self.connects = 0  # of them, connection failures (not counted in max_attempts)
        self.timeouts = 0
        self.first_connect_failure: float | None = None
        self.started = policy.clock()
        self.deadline = self.started + policy.total_time

    def remaining(self) -> float:
        return self.deadline - self.policy.clock()

    def request_time(self, per_request: float) -> float:
        """Seconds the request begun now may take: its own bound, within the call's."""
        return max(min(per_request, self.remaining()), 0.0)

    def counted(self) -> int:
        return self.attempts - self.connects

    def spent(self) -> bool:
        """No attempt or no time left."""
        return (self.counted() >= self.policy.max_attempts or self.remaining() <= 0
                or self.timeouts >= self.policy.max_timeouts)

    def begin_attempt(self) -> None:
        self.attempts += 1

    def wait(self, retry_after: float | None = None, *, ended: str = ANSWERED) -> bool:
        """Sleep before the next attempt and return True, or return False at once when
        the attempts or the time are spent (or the server asks for a longer wait than
        the time left). ``ended`` says how the last attempt ended (``CONNECT``,
        ``LOST``, ``TIMEOUT`` or ``ANSWERED``)."""
        policy = self.policy
        if ended == CONNECT:
            self.connects += 1
            now = policy.clock()
            if self.first_connect_failure is None:
                self.first_connect_failure = now
            if now - self.first_connect_failure >= policy.connect_time:
                return False
            delay = min(policy.backoff(self.connects), policy.max_connect_delay)
            if delay > self.remaining():
                return False
            if delay > 0:
                policy.sleep(delay)
            return True
        if ended == TIMEOUT:
            self.timeouts += 1
            if self.timeouts >= policy.max_timeouts:
                return False
        if self.counted() >= policy.max_attempts:
            return False
        if retry_after is not None:
            delay = min(max(retry_after, 0.0), policy.max_retry_after)
        else:
            delay = policy.backoff(self.attempts)
        if delay > self.remaining():
            return False
        if delay > 0:
            policy.sleep(delay)
        return True


def parse_retry_after(value: str | None, *, now: float | None = None) -> float | None:
    """Seconds to wait from a ``Retry-After`` header: delta-seconds or an HTTP-date.
    None when absent or unreadable (the caller then backs off on its own)."""
    if not value:
        return None
    value = value.strip()
    try:
        seconds = float(value)
    except ValueError:
        pass
    else:
        return max(seconds, 0.0) if seconds == seconds else None  # NaN -> None
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when is None or when.tzinfo is None:
        return None
    current = time.time() if now is None else now
    return max(when.timestamp() - current, 0.0)
