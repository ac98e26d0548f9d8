"""A token bucket per worker and host: bounds the request rate a worker puts on one server."""

from __future__ import annotations

import threading
import time


class TokenBucket:
    """`rate` tokens per second, at most `burst` saved; throttle replies halve the rate for a while."""

    def __init__(self, rate: float, burst: int, clock=time.monotonic, sleep=time.sleep):
        self.rate = self.max_rate = float(rate)
        self.burst = max(1, int(burst))
        self._tokens = float(self.burst)
        self._clock, self._sleep = clock, sleep
        self._stamp = clock()
        self._lock = threading.Lock()

    def _refill(self, now: float) -> None:
        self._tokens = min(self.burst, self._tokens + (now - self._stamp) * self.rate)
        self._stamp = now

    def acquire(self) -> float:
        """Take one token, sleeping until there is one; returns the seconds waited."""
        waited = 0.0
        while True:
            with self._lock:
                self._refill(self._clock())
                if self._tokens >= 1 - 1e-9:  # float crumbs must not cost another sleep
                    self._tokens -= 1
                    return waited
                need = (1 - self._tokens) / self.rate
            self._sleep(need)
            waited += need

    def slow_down(self) -> None:
        """A server said SlowDown / 429: halve the rate (down to 1/64 of the configured one)."""
        with self._lock:
            self.rate = max(self.max_rate / 64, self.rate / 2)
            self._tokens = min(self._tokens, 0.0)

    def recover(self) -> None:
        """A success: win back rate additively, so the worker converges just under the server's limit."""
        with self._lock:
            self.rate = min(self.max_rate, self.rate + self.max_rate / 32)


_buckets: dict[tuple, TokenBucket] = {}
_registry_lock = threading.Lock()


def bucket(host: str, rate: float, burst: int) -> TokenBucket:
    """The process-wide bucket of one host (a worker process shares it across its threads)."""
    key = (host, rate, burst)
    with _registry_lock:
        if key not in _buckets:
            _buckets[key] = TokenBucket(rate, burst)
        return _buckets[key]
