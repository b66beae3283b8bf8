"""How the Vendor API client waits and gives up: a retry policy, and the budget of
one logical call (attempts and wall time), both free of any HTTP library.

Backoff is exponential with full jitter (a uniform pick in ``[0, min(max_delay,
base_delay * 2**n))``), except when the server says how long to wait
(``Retry-After``, in seconds or as an HTTP-date), which is honoured up to
``max_retry_after``. Every call is bounded twice: by ``max_attempts`` requests and by
``total_time`` seconds; a wait that would pass the deadline is not taken.
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
    sleep: Callable[[float], None] = field(default=time.sleep, repr=False, compare=False)
    clock: Callable[[], float] = field(default=time.monotonic, repr=False, compare=False)
    random: Callable[[], float] = field(default=random.random, repr=False, compare=False)

    def __post_init__(self):
        if self.max_attempts < 1:
            raise ValueError("RetryPolicy.max_attempts must be at least 1")
        if min(self.base_delay, self.max_delay, self.total_time, self.max_retry_after) < 0:
            raise ValueError("RetryPolicy delays and times cannot be negative")

    def backoff(self, retry: int) -> float:
        """The wait before retry number ``retry`` (1 for the first retry)."""
        ceiling = min(self.max_delay, self.base_delay * (2 ** max(retry - 1, 0)))
        return self.random() * ceiling

    def budget(self) -> Budget:
        return Budget(self)


DEFAULT_RETRY = RetryPolicy()
NO_RETRY = RetryPolicy(max_attempts=1)


class Budget:
    """The attempts and the time left to one logical call (not shared across threads)."""

    def __init__(self, policy: RetryPolicy):
        self.policy = policy
        self.attempts = 0
        self.deadline = policy.clock() + policy.total_time

    def remaining(self) -> float:
        return self.deadline - self.policy.clock()

    def spent(self) -> bool:
        """No attempt or no time left."""
        return self.attempts >= self.policy.max_attempts or self.remaining() <= 0

    def begin_attempt(self) -> None:
        self.attempts += 1

    def wait(self, retry_after: float | None = None) -> bool:
        """Sleep before the next attempt and return True, or return False at once when
        the attempts or the time are spent (or the server asks for a longer wait than
        the time left)."""
        policy = self.policy
        if self.attempts >= policy.max_attempts:
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
