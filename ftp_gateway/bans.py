"""Per-address ban after repeated failed logins, shared by all connections.

pyftpdlib's `max_login_attempts` counts per connection, so a client that reconnects
gets unlimited guesses; this counts per IP across connections. Time is injected so the
unit tests need no sleeping.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable


class BanList:
    def __init__(
        self,
        failures: int,
        window: float,
        duration: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.failures = failures
        self.window = window
        self.duration = duration
        self._clock = clock
        self._lock = threading.Lock()
        self._recent: dict[str, deque[float]] = {}
        self._banned_until: dict[str, float] = {}

    def record_failure(self, ip: str) -> bool:
        """Count a failed login; True if this failure starts a ban."""
        if self.failures <= 0:
            return False
        now = self._clock()
        with self._lock:
            recent = self._recent.setdefault(ip, deque())
            recent.append(now)
            while recent and recent[0] <= now - self.window:
                recent.popleft()
            if len(recent) < self.failures:
                return False
            del self._recent[ip]
            self._banned_until[ip] = now + self.duration
            return True

    def remaining(self, ip: str) -> float:
        """Seconds of ban left for this address (0.0: not banned)."""
        now = self._clock()
        with self._lock:
            until = self._banned_until.get(ip)
            if until is None:
                return 0.0
            if until <= now:
                del self._banned_until[ip]
                return 0.0
            return until - now
