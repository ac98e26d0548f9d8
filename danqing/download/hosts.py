"""What a crawl knows about each image host: its budget, its pause after a 429, its breaker.

The budget: at most C requests in flight and R started per second to one host (per_host_concurrency,
per_host_requests_per_s, host_budgets for hosts with their own). A request takes a lease on one of the
host's C slots, then starts at the host's next free time (starts are paced (1 + JITTER_S) / R apart),
and gives the lease back once its response is read. A 429 or 503 with Retry-After pauses the host;
host_max_failures consecutive host failures (5xx, 429, timeouts, refused connections) trip it for
host_cooldown_s.

LocalHosts keeps all this in one event loop: without coordination_url each loop has 1/n of the shard's
budget, as before. SharedHosts keeps it in Redis for every worker, task and loop at once. A lease is a
sorted-set member scored by its deadline, which the holder renews every lease_s / 3: the leases of a
worker killed with SIGKILL lapse within coordination_lease_s, and no slot leaks for longer. Deadlines
come from the Redis server's clock, so workers whose clocks disagree still agree.
"""

from __future__ import annotations

import asyncio
import itertools
import random
import time
from dataclasses import dataclass

from danqing.config import DownloadConfig, HostBudget
from danqing.download.coord import Store

# A host that counts requests by the second sees at most R even when one request reaches it up to this
# much later than the one before (a busy event loop, a connection to open): starts are spaced to allow it,
# and a request that could not start within it of its time gives that time up and takes the next.
JITTER_S = 0.05
# Refusals of acquire(): the fetcher turns them into its reasons.
TRIPPED = "tripped"  # the breaker is open: skip the host until its cool-down ends
PAUSED = "paused"  # paused (Retry-After) for longer than max_retry_after_s: a rerun tries again
MAX_PAUSE_S = 3600.0  # a Retry-After of days is not waited for by anyone


@dataclass(frozen=True)
class Budget:
    connections: int
    interval_s: float  # between two starts; 0 = no cap on requests per second


@dataclass
class Lease:
    host: str
    token: str
    budget: Budget
    start: float = 0.0  # time.monotonic() when it may start


class Hosts:
    """One event loop's view; subclasses keep the state in the loop or in Redis."""

    def __init__(self, cfg: DownloadConfig):
        self.cfg = cfg
        self._budgets: dict[str, Budget] = {}
        self._own = {h.lower(): b for h, b in cfg.host_budgets.items()}

    def budget(self, host: str) -> Budget:
        got = self._budgets.get(host)
        if got is None:
            own = self._own.get(host) or HostBudget()
            conns = own.concurrency if own.concurrency is not None else self.cfg.per_host_concurrency
            rate = own.requests_per_s if own.requests_per_s is not None else self.cfg.per_host_requests_per_s
            got = self._budgets[host] = Budget(conns, (1 + JITTER_S) / rate if rate > 0 else 0.0)
        return got

    async def acquire(self, host: str) -> Lease | str:
        """A lease on one of the host's slots, held until its time to start; or TRIPPED / PAUSED."""
        raise NotImplementedError

    async def on_time(self, lease: Lease) -> None:
        """Call right before sending: a request held up past its time (by the loop's own limit) takes the next."""
        if lease.budget.interval_s and time.monotonic() - lease.start > JITTER_S:
            await self._sleep_until(lease, await self._next_start(lease))

    async def release(self, lease: Lease, host_failure: bool | None) -> bool:
        """Give the slot back. host_failure: True counts toward the breaker, False resets it, None neither.

        True when this release tripped the host.
        """
        raise NotImplementedError

    async def pause(self, host: str, seconds: float) -> None:
        """No request to this host starts for `seconds` (a Retry-After)."""
        raise NotImplementedError

    async def close(self) -> None:
        pass

    async def _next_start(self, lease: Lease) -> float:
        raise NotImplementedError

    async def _sleep_until(self, lease: Lease, start: float) -> None:
        lease.start = start
        delay = start - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)

    async def _granted(self, lease: Lease, start: float) -> Lease:
        """The new lease once its start time comes; given back if the wait is cancelled (no caller has it)."""
        try:
            await self._sleep_until(lease, start)
        except BaseException:
            await asyncio.shield(self.release(lease, None))
            raise
        return lease

    def _wait(self, remaining_s: float) -> float | str:
        """Seconds to wait out a pause, or PAUSED when it is longer than a fetch waits."""
        return PAUSED if remaining_s > self.cfg.max_retry_after_s else remaining_s


class LocalHosts(Hosts):
    """The budget, pauses and breaker of one event loop (no coordination_url)."""

    def __init__(self, cfg: DownloadConfig):
        super().__init__(cfg)
        self._slots: dict[str, asyncio.Semaphore] = {}
        self._next: dict[str, float] = {}  # monotonic time the host's next request may start
        self._paused: dict[str, float] = {}  # until
        self._tripped: dict[str, float] = {}  # until
        self._failures: dict[str, int] = {}

    async def acquire(self, host: str) -> Lease | str:
        budget = self.budget(host)
        slots = self._slots.get(host)
        if slots is None:
            slots = self._slots[host] = asyncio.Semaphore(budget.connections)
        while True:
            verdict = self._verdict(host)
            if verdict == 0:
                await slots.acquire()
                verdict = self._verdict(host)  # it may have tripped or paused while we waited
                if verdict == 0:
                    break
                slots.release()
            if isinstance(verdict, str):
                return verdict
            await asyncio.sleep(verdict)
        lease = Lease(host, "", budget)
        return await self._granted(lease, await self._next_start(lease))

    def _verdict(self, host: str) -> float | str:
        now = time.monotonic()
        if self._tripped.get(host, 0) > now:
            return TRIPPED
        return self._wait(max(0.0, self._paused.get(host, 0) - now))

    async def _next_start(self, lease: Lease) -> float:
        now = time.monotonic()
        if not lease.budget.interval_s:
            return now
        start = max(now, self._next.get(lease.host, 0.0))
        self._next[lease.host] = start + lease.budget.interval_s
        return start

    async def release(self, lease: Lease, host_failure: bool | None) -> bool:
        self._slots[lease.host].release()
        return self._note(lease.host, host_failure)

    def _note(self, host: str, host_failure: bool | None) -> bool:
        if host_failure is None:
            return False
        if not host_failure:
            self._failures[host] = 0
            return False
        self._failures[host] = self._failures.get(host, 0) + 1
        if self._failures[host] < self.cfg.host_max_failures or self._tripped.get(host, 0) > time.monotonic():
            return False
        self._failures[host] = 0
        self._tripped[host] = time.monotonic() + self.cfg.host_cooldown_s
        return True

    async def pause(self, host: str, seconds: float) -> None:
        until = time.monotonic() + min(seconds, MAX_PAUSE_S)
        self._paused[host] = max(self._paused.get(host, 0.0), until)


# Takes the host's next start time (`now` and `interval` in us): starts are `interval` apart.
_RESERVE = """
local start = tonumber(redis.call('GET', KEYS[{next}]) or '0')
if start < now then start = now end
local ttl = math.ceil((start - now + interval) / 1000) + 1000
redis.call('SET', KEYS[{next}], string.format('%.0f', start + interval), 'PX', ttl)
"""
# KEYS: slots (leases by deadline), next start, pause, trip. ARGV: connections, token, lease us, interval us.
# -> {1, us until the start} | {0, 0} all slots taken | {2, ms} tripped | {3, ms} paused
_ACQUIRE = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local trip = redis.call('PTTL', KEYS[4])
if trip > 0 then return {2, trip} end
local pause = redis.call('PTTL', KEYS[3])
if pause > 0 then return {3, pause} end
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', string.format('%.0f', now))
if redis.call('ZCARD', KEYS[1]) >= tonumber(ARGV[1]) then return {0, 0} end
local lease = tonumber(ARGV[3])
redis.call('ZADD', KEYS[1], string.format('%.0f', now + lease), ARGV[2])
redis.call('PEXPIRE', KEYS[1], math.ceil(lease / 1000) * 2)
local interval = tonumber(ARGV[4])
if interval <= 0 then return {1, 0} end
""" + _RESERVE.replace("{next}", "2") + """
return {1, start - now}
"""
# KEYS: next start. ARGV: interval us. -> us until the start
_PACE = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local interval = tonumber(ARGV[1])
""" + _RESERVE.replace("{next}", "1") + """
return start - now
"""
# KEYS: slots, failures, trip. ARGV: token, outcome (1 host failure, 0 success, -1 neither), max failures,
# cool-down ms. -> 1 when this release tripped the host
_RELEASE = """
redis.call('ZREM', KEYS[1], ARGV[1])
local outcome = tonumber(ARGV[2])
if outcome == 0 then redis.call('DEL', KEYS[2]) return 0 end
if outcome < 0 then return 0 end
local n = redis.call('INCR', KEYS[2])
redis.call('PEXPIRE', KEYS[2], ARGV[4])
if n < tonumber(ARGV[3]) then return 0 end
redis.call('DEL', KEYS[2])
if redis.call('SET', KEYS[3], '1', 'PX', ARGV[4], 'NX') then return 1 end
return 0
"""
# KEYS: slots. ARGV: lease us, then tokens. Pushes the deadlines of leases still held (not ones that lapsed).
_RENEW = """
local t = redis.call('TIME')
local deadline = string.format('%.0f', tonumber(t[1]) * 1000000 + tonumber(t[2]) + tonumber(ARGV[1]))
for i = 2, #ARGV do redis.call('ZADD', KEYS[1], 'XX', deadline, ARGV[i]) end
redis.call('PEXPIRE', KEYS[1], math.ceil(tonumber(ARGV[1]) / 1000) * 2)
return 0
"""
# KEYS: pause. ARGV: ms. Never shortens a longer pause.
_PAUSE = """
if redis.call('PTTL', KEYS[1]) < tonumber(ARGV[1]) then redis.call('SET', KEYS[1], '1', 'PX', ARGV[1]) end
return 0
"""
_POLL_S = (0.002, 0.05)  # a full host is asked again after this long, doubling up to the second


class SharedHosts(Hosts):
    """The budget, pauses and breaker of every worker of the crawl, in Redis (coordination_url)."""

    def __init__(self, cfg: DownloadConfig, store: Store):
        super().__init__(cfg)
        self.store = store
        client = store.client
        self._acquire, self._pace, self._release, self._renew, self._pause = (
            client.register_script(s) for s in (_ACQUIRE, _PACE, _RELEASE, _RENEW, _PAUSE))
        self._ids = itertools.count()
        self._gates: dict[str, asyncio.Lock] = {}  # one waiter per host and loop asks Redis at a time
        self._held: dict[str, str] = {}  # token -> host, renewed by the heartbeat
        self._lease_us = int(cfg.coordination_lease_s * 1e6)
        self._heartbeat: asyncio.Task | None = None

    def _keys(self, host: str) -> list[str]:
        # {host} is a Redis Cluster hash tag: one script's keys always share a slot.
        base = self.store.key("host", "{" + host + "}")
        return [f"{base}:{name}" for name in ("slots", "next", "pause", "trip", "failures")]

    async def acquire(self, host: str) -> Lease | str:
        budget = self.budget(host)
        slots, nxt, pause, trip, _ = self._keys(host)
        token = f"{self.store.token}:{next(self._ids)}"
        interval_us = int(budget.interval_s * 1e6)
        gate = self._gates.get(host)
        if gate is None:
            gate = self._gates[host] = asyncio.Lock()
        poll = _POLL_S[0]
        async with gate:
            while True:
                verdict, n = await self._acquire(keys=[slots, nxt, pause, trip],
                                                 args=[budget.connections, token, self._lease_us, interval_us])
                if verdict == 1:
                    self._held[token] = host
                    break
                if verdict == 2:
                    return TRIPPED
                if verdict == 3:
                    wait = self._wait(n / 1000)
                    if wait == PAUSED:
                        return PAUSED
                    await asyncio.sleep(wait)
                    continue
                await asyncio.sleep(poll * (0.5 + random.random()))
                poll = min(poll * 2, _POLL_S[1])
        self._start_heartbeat()
        return await self._granted(Lease(host, token, budget), time.monotonic() + n / 1e6)

    async def _next_start(self, lease: Lease) -> float:
        _, nxt, *_ = self._keys(lease.host)
        delay_us = await self._pace(keys=[nxt], args=[int(lease.budget.interval_s * 1e6)])
        return time.monotonic() + delay_us / 1e6

    async def release(self, lease: Lease, host_failure: bool | None) -> bool:
        self._held.pop(lease.token, None)
        slots, _, _, trip, failures = self._keys(lease.host)
        outcome = -1 if host_failure is None else int(host_failure)
        tripped = await self._release(keys=[slots, failures, trip],
                                      args=[lease.token, outcome, self.cfg.host_max_failures,
                                            max(1, int(self.cfg.host_cooldown_s * 1000))])
        return bool(tripped)

    async def pause(self, host: str, seconds: float) -> None:
        _, _, pause, _, _ = self._keys(host)
        await self._pause(keys=[pause], args=[max(1, int(min(seconds, MAX_PAUSE_S) * 1000))])

    def _start_heartbeat(self) -> None:
        if self._heartbeat is None or self._heartbeat.done():
            self._heartbeat = asyncio.create_task(self._renew_leases())

    async def _renew_leases(self) -> None:
        """Every lease_s / 3, push back the deadlines of the leases this loop holds; a dead loop renews none."""
        while True:
            await asyncio.sleep(self.cfg.coordination_lease_s / 3)
            by_host: dict[str, list[str]] = {}
            for token, host in list(self._held.items()):
                by_host.setdefault(host, []).append(token)
            for host, tokens in by_host.items():
                await self._renew(keys=[self._keys(host)[0]], args=[self._lease_us, *tokens])

    async def close(self) -> None:
        if self._heartbeat is not None:
            self._heartbeat.cancel()
            await asyncio.gather(self._heartbeat, return_exceptions=True)
