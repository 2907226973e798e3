"""Request rates per API key (per client address with ``AUTH=off``), counted by ``limits``.

Two budgets: predictions (``POST .../predict`` and ``POST /v2/.../infer``) count against
``PREDICT_RATE_LIMIT``, every other /v1 and /v2 request against ``RATE_LIMIT``, so that a
client busy listing or uploading does not starve the apps that depend on its models. Health
probes, /metrics and the API's documents are not counted.

The counting is the ``limits`` library's (the engine of flask-limiter, with its notation:
``20/second``, ``20/second;1000/minute``), called from one ``before_request`` hook: a fixed
window per budget and caller costs a few microseconds in memory. flask-limiter itself, which
resolves decorated, blueprint, default and meta limits on every request, took a quarter of a
small prediction's throughput (docs/benchmarks.md, "What the request hooks cost").

The counts live in Redis when Redis is the broker (every API process then shares them), else in
each API process's memory. While Redis cannot be reached the counting goes on in memory, and
Redis is tried again after ``REDIS_RETRY_SECONDS``: an outage of Redis does not fail requests.

In Redis a process does not count each request there: it takes a share of a window's budget
(a lease: ``LEASE_DIVISOR``-th of the limit, 50 requests of ``5000/second``, at least 1) and
spends it in memory, asking again (one script call for all of a budget's windows) when the
share is spent or the window has ended. So most requests cost no Redis round trip, none is ever
answered over a limit (the shares granted in a window add up to at most its limit), and a
window's refusal, once Redis gives it, is known in memory until the window ends. The price: a
share taken by one process and not spent by the window's end is refused to the others, at most
(API processes - 1) x (share - 1) requests early per window, about 1% of the limit per other
process (a limit under ``LEASE_DIVISOR`` per window is counted one request at a time, exactly).
The registry generation costs no round trip either (service/generation.py).

A request over its budget is a 429 with ``Retry-After`` (seconds) and the error envelope naming
the limit and its setting.
"""

import logging
import math
import threading
import time
from dataclasses import dataclass, field

from flask import Flask, Request, g, request
from limits import RateLimitItem, parse_many
from limits.storage import MemoryStorage, RedisStorage, Storage, storage_from_string
from limits.strategies import FixedWindowRateLimiter

from service.api.auth import guarded
from service.api.errors import DeclaredResponse, fail
from service.settings import Settings

logger = logging.getLogger(__name__)

OFF = ("", "off")
PREDICTION_RULE_ENDINGS = ("/predict", "/infer")
REDIS_SCHEMES = ("redis://", "rediss://")
REDIS_RETRY_SECONDS = 5.0
LEASE_DIVISOR = 100
# Lease shares of a budget's windows, in order, stopping at the first with nothing left to
# grant. KEYS: the windows' keys (as ``FixedWindowRateLimiter`` names them: the key expires with
# its window, made on the first grant); ARGV: per window its expiry (seconds), its amount and
# the share asked. Returns per window leased: the share granted (0: the limit is reached) and
# the milliseconds until the window ends.
LEASE_SCRIPT = """
local answer = {}
for i, key in ipairs(KEYS) do
    local amount = tonumber(ARGV[3 * i - 1])
    local left = amount - tonumber(redis.call('GET', key) or '0')
    local granted = math.max(0, math.min(tonumber(ARGV[3 * i]), left))
    if granted > 0 and redis.call('INCRBY', key, granted) == granted then
        redis.call('EXPIRE', key, ARGV[3 * i - 2])
    end
    local ttl = redis.call('PTTL', key)
    if ttl < 0 then  -- a window without an end (a key made otherwise): it ends from now
        redis.call('EXPIRE', key, ARGV[3 * i - 2])
        ttl = 1000 * tonumber(ARGV[3 * i - 2])
    end
    answer[2 * i - 1] = granted
    answer[2 * i] = ttl
    if granted == 0 then
        return answer
    end
end
return answer
"""


@dataclass(frozen=True)
class Budget:
    """The limits of one setting, kept under their own scope."""

    setting: str
    scope: str
    limits: tuple[RateLimitItem, ...]


def is_prediction(req: Request) -> bool:
    rule = req.url_rule
    return req.method == "POST" and rule is not None and rule.rule.endswith(PREDICTION_RULE_ENDINGS)


def caller_key() -> str:
    """The id of the key whose budget the caller's key spends (its own, or for a key minted over
    /v1/keys its minter's: minting cannot multiply a budget) when the caller presented one
    (``g.principal``, set by ``identify_caller``, which runs first), else the client's
    address."""
    principal = g.get("principal")
    if principal is not None and principal.budget_key_id is not None:
        return f"key:{principal.budget_key_id}"
    return f"addr:{request.remote_addr}"


def budget(settings: Settings, setting: str, scope: str) -> Budget | None:
    """The budget of ``setting`` (None when off); raises ``ValueError`` naming the setting when
    the notation does not parse."""
    text = getattr(settings, setting.lower()).strip()
    if text.lower() in OFF:
        return None
    try:
        return Budget(setting, scope, tuple(parse_many(text)))
    except ValueError as error:
        raise ValueError(f"{setting}={text!r}: {error}") from None


class ThreadlessMemoryStorage(MemoryStorage):
    """limits' memory storage without its expiry thread: ``MemoryStorage.incr`` starts a
    ``threading.Timer`` whenever the last one has run (10 ms after it started), so that a
    prediction at one connection started a thread every few requests (27% of the app's time
    under cProfile on a loaded machine: docs/benchmarks.md, issue 29). A count is dropped when
    its window has ended all the same (``get`` checks on every hit); only the sweep of keys no
    one hits again (callers gone) runs here, inline, at most once per ``SWEEP_SECONDS``."""

    SWEEP_SECONDS = 1.0

    def __init__(self) -> None:
        super().__init__()
        self.swept_at = time.monotonic()

    def _MemoryStorage__schedule_expiry(self) -> None:  # replaces the parent's private hook
        now = time.monotonic()
        if now - self.swept_at >= self.SWEEP_SECONDS:
            self.swept_at = now
            self._MemoryStorage__expire_events()


@dataclass
class Lease:
    """A process's share of one window's budget in Redis: the requests it may still answer, until
    the window ends (``time.monotonic()``); ``refused``: Redis had none left to grant."""

    left: int
    ends_at: float
    refused: bool = False

    def current(self, now: float) -> bool:
        return now < self.ends_at

    def answers(self, now: float) -> bool:
        """Whether the lease decides a request without Redis: requests left, or refused, in a
        window not yet ended."""
        return self.current(now) and (self.left > 0 or self.refused)


@dataclass(frozen=True)
class Exceeded:
    """The limit a request exceeded, and the seconds until its window ends."""

    limit: RateLimitItem
    retry_after: int


def share_of(limit: RateLimitItem) -> int:
    return max(1, limit.amount // LEASE_DIVISOR)


@dataclass
class RateLimits:
    """The two budgets, counted in Redis through leases or in memory, with memory standing in
    while Redis is down."""

    general: Budget | None
    predictions: Budget | None
    storage: Storage
    fallback: FixedWindowRateLimiter = field(
        default_factory=lambda: FixedWindowRateLimiter(ThreadlessMemoryStorage())
    )
    redis_retry_at: float = 0.0
    leases: dict[str, Lease] = field(default_factory=dict)
    leases_swept_at: float = 0.0
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def __post_init__(self) -> None:
        self.counter = FixedWindowRateLimiter(self.storage)
        self.lease_in_redis = (
            self.storage.get_connection().register_script(LEASE_SCRIPT)
            if isinstance(self.storage, RedisStorage)
            else None
        )

    def check(self) -> None:
        """``before_request``: count the request against its budget, or answer 429."""
        req = request._get_current_object()  # one lookup of the proxy, not one per use
        if not guarded(req.path):
            return
        spent = self.predictions if is_prediction(req) else self.general
        if spent is None:
            return
        exceeded = self.first_exceeded(spent, caller_key())
        if exceeded is not None:
            fail(
                429,
                f"Rate limit {exceeded.limit} ({spent.setting}) exceeded.",
                headers={"Retry-After": str(exceeded.retry_after)},
            )

    def first_exceeded(self, spent: Budget, key: str) -> Exceeded | None:
        """The first of ``spent``'s limits the request exceeds (None: within them all). Each
        limit is counted in turn up to that one: in Redis through the process's leases, in
        memory while Redis is unreachable or not the broker."""
        if self.lease_in_redis is not None and time.monotonic() >= self.redis_retry_at:
            try:
                return self.first_exceeded_in_redis(spent, key)
            except self.storage.base_exceptions as error:
                self.redis_unreachable(error)
        counter = self.counter if self.lease_in_redis is None else self.fallback
        for limit in spent.limits:
            if not counter.hit(limit, key, spent.scope):
                reset = counter.get_window_stats(limit, key, spent.scope).reset_time
                return Exceeded(limit, max(1, math.ceil(reset - time.time())))
        return None

    def first_exceeded_in_redis(self, spent: Budget, key: str) -> Exceeded | None:
        """As ``FixedWindowRateLimiter.hit`` on each limit, on the keys it uses, spending the
        process's leases: Redis is asked (once, for every window whose lease cannot answer)
        only when a window's lease is spent or its window has ended."""
        windows = [
            self.storage.prefixed_key(item.key_for(key, spent.scope)) for item in spent.limits
        ]
        while True:
            now = time.monotonic()
            with self._lock:
                answered, exceeded = self.spend_leases(spent, windows, now)
            if answered:
                return exceeded
            self.renew_leases(spent, windows, now)

    def spend_leases(
        self, spent: Budget, windows: list[str], now: float
    ) -> tuple[bool, Exceeded | None]:
        """Under the lock: one request from each window's lease in order, up to the first
        refused (that limit exceeded). (False, None), nothing spent, when a lease before any
        refusal cannot answer."""
        for index, (limit, window) in enumerate(zip(spent.limits, windows, strict=True)):
            lease = self.leases.get(window)
            if lease is None or not lease.answers(now):
                return False, None
            if lease.refused:
                self.spend(windows[:index])
                return True, Exceeded(limit, max(1, math.ceil(lease.ends_at - now)))
        self.spend(windows)
        return True, None

    def spend(self, windows: list[str]) -> None:
        for window in windows:
            self.leases[window].left -= 1

    def renew_leases(self, spent: Budget, windows: list[str], now: float) -> None:
        """One script call: a new share of every window whose lease cannot answer, added to the
        process's leases (a window Redis has nothing left of is refused until it ends)."""
        with self._lock:
            stale = [
                index
                for index, window in enumerate(windows)
                if (lease := self.leases.get(window)) is None or not lease.answers(now)
            ]
        if not stale:
            return  # another thread renewed them meanwhile
        limits = [spent.limits[index] for index in stale]
        arguments = [
            figure
            for limit in limits
            for figure in (limit.get_expiry(), limit.amount, share_of(limit))
        ]
        answer = self.lease_in_redis(keys=[windows[index] for index in stale], args=arguments)
        with self._lock:
            self.sweep_ended_leases(now)
            for position, index in enumerate(stale[: len(answer) // 2]):
                granted, milliseconds = int(answer[2 * position]), int(answer[2 * position + 1])
                self.add_to_lease(windows[index], granted, now + milliseconds / 1000, now)

    def sweep_ended_leases(self, now: float) -> None:
        """Under the lock, at most once per ``SWEEP_SECONDS``: forget the leases of windows that
        have ended (callers gone would otherwise stay for good)."""
        if now - self.leases_swept_at >= ThreadlessMemoryStorage.SWEEP_SECONDS:
            self.leases_swept_at = now
            self.leases = {
                window: lease for window, lease in self.leases.items() if lease.current(now)
            }

    def add_to_lease(self, window: str, granted: int, ends_at: float, now: float) -> None:
        """Under the lock: ``granted`` more requests in ``window``'s lease (a new lease when the
        old one's window has ended); refused when none are left."""
        lease = self.leases.get(window)
        if lease is None or not lease.current(now):
            lease = self.leases[window] = Lease(0, ends_at)
        lease.left += granted
        lease.refused = lease.left == 0

    def reset(self) -> None:
        """Forget every count, in Redis too (every API process's), and try Redis again at once:
        for tests that share one app."""
        self.storage.reset()
        self.fallback.storage.reset()
        with self._lock:
            self.leases.clear()
        self.redis_retry_at = 0.0

    def redis_unreachable(self, error: Exception) -> None:
        with self._lock:
            if time.monotonic() >= self.redis_retry_at:
                logger.warning(
                    "rate limits counted in memory for %s s: Redis unreachable: %s",
                    REDIS_RETRY_SECONDS,
                    error,
                )
            self.redis_retry_at = time.monotonic() + REDIS_RETRY_SECONDS


def counting_storage(settings: Settings) -> Storage:
    if settings.broker_url.startswith(REDIS_SCHEMES):
        timeout = settings.broker_timeout_seconds
        return storage_from_string(
            settings.broker_url, socket_timeout=timeout, socket_connect_timeout=timeout
        )
    return ThreadlessMemoryStorage()


def install_rate_limits(app: Flask, settings: Settings) -> None:
    """Count /v1 and /v2 requests against their budget. Call after registering
    ``identify_caller``: the count is per caller's key."""
    general = budget(settings, "RATE_LIMIT", "requests")
    predictions = budget(settings, "PREDICT_RATE_LIMIT", "predictions")
    if general is None and predictions is None:
        return
    limits = RateLimits(general, predictions, counting_storage(settings))
    app.extensions["rate_limits"] = limits
    app.before_request(limits.check)


def counted(path: str | None, _operation: dict) -> bool:
    return path is not None and guarded(path)


def rate_limited_doc() -> DeclaredResponse:
    """Every operation a budget counts documents its 429 and ``Retry-After``, so that a client
    and schemathesis know a 429 is an answer, not a failure."""
    return DeclaredResponse(
        429,
        {
            "description": "A rate limit (RATE_LIMIT, or PREDICT_RATE_LIMIT for predictions) was"
            " exceeded",
            "headers": {
                "Retry-After": {
                    "description": "Seconds to wait before the next request",
                    "schema": {"type": "integer", "minimum": 1},
                }
            },
        },
        counted,
    )
