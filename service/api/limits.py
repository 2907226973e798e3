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
In Redis all of a budget's windows are counted by one script: one round trip per request (the
registry generation costs none: service/generation.py).

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
# Count a request against each of a budget's windows in turn, stopping at the first it exceeds
# (as ``FixedWindowRateLimiter.hit`` per limit: the key expires with its window, made on the
# first hit): one round trip for the whole budget. KEYS: the windows' keys; ARGV: each window's
# expiry (seconds) and amount. Returns the 1-based index of the window exceeded, 0 for none.
COUNT_SCRIPT = """
for i, key in ipairs(KEYS) do
    local count = redis.call('INCRBY', key, 1)
    if count == 1 then
        redis.call('EXPIRE', key, ARGV[2 * i - 1])
    end
    if count > tonumber(ARGV[2 * i]) then
        return i
    end
end
return 0
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
class RateLimits:
    """The two budgets, counted in Redis or in memory, with memory standing in while Redis is
    down."""

    general: Budget | None
    predictions: Budget | None
    storage: Storage
    fallback: FixedWindowRateLimiter = field(
        default_factory=lambda: FixedWindowRateLimiter(ThreadlessMemoryStorage())
    )
    redis_retry_at: float = 0.0
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def __post_init__(self) -> None:
        self.counter = FixedWindowRateLimiter(self.storage)
        self.count_in_redis = (
            self.storage.get_connection().register_script(COUNT_SCRIPT)
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
        key = caller_key()
        counter, limit = self.first_exceeded(spent, key)
        if limit is not None:
            reset = counter.get_window_stats(limit, key, spent.scope).reset_time
            fail(
                429,
                f"Rate limit {limit} ({spent.setting}) exceeded.",
                headers={"Retry-After": str(max(1, math.ceil(reset - time.time())))},
            )

    def first_exceeded(
        self, spent: Budget, key: str
    ) -> tuple[FixedWindowRateLimiter, RateLimitItem | None]:
        """The counter that counted the request, and the first of ``spent``'s limits it exceeds
        (None: within them all). Each limit is counted in turn up to that one: in Redis in one
        script call, in memory while Redis is unreachable or not the broker."""
        if self.count_in_redis is not None and time.monotonic() >= self.redis_retry_at:
            try:
                return self.counter, self.first_exceeded_in_redis(spent, key)
            except self.storage.base_exceptions as error:
                self.redis_unreachable(error)
        counter = self.counter if self.count_in_redis is None else self.fallback
        for limit in spent.limits:
            if not counter.hit(limit, key, spent.scope):
                return counter, limit
        return counter, None

    def first_exceeded_in_redis(self, spent: Budget, key: str) -> RateLimitItem | None:
        """As ``FixedWindowRateLimiter.hit`` on each limit, on the keys it uses (so its window
        figures and ``reset`` still apply), in one round trip."""
        limits = spent.limits
        keys = [self.storage.prefixed_key(limit.key_for(key, spent.scope)) for limit in limits]
        windows = [figure for limit in limits for figure in (limit.get_expiry(), limit.amount)]
        index = int(self.count_in_redis(keys=keys, args=windows))
        return limits[index - 1] if index else None

    def reset(self) -> None:
        """Forget every count, in Redis too (every API process's), and try Redis again at once:
        for tests that share one app."""
        self.storage.reset()
        self.fallback.storage.reset()
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
