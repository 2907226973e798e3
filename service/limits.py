"""Request rates per API key (per client address with ``AUTH=off``), counted by flask-limiter.

Two budgets: predictions (``POST .../predict`` and ``POST /v2/.../infer``) count against
``PREDICT_RATE_LIMIT``, every other /v1 and /v2 request against ``RATE_LIMIT``, so that a
client busy listing or uploading does not starve the apps that depend on its models. Health
probes, /metrics and the API's documents are not counted.

The counts live in Redis when Redis is the broker (every API process then shares them), else in
each API process's memory. When Redis cannot be reached the counting goes on in memory until it
is back: an outage of Redis does not fail requests.

A request over its budget is a 429 with ``Retry-After`` (seconds) and the error envelope naming
the limit and its setting.
"""

import math
import time
from functools import partial

from flask import Flask, g, request
from flask_limiter import ApplicationLimit, Limiter, RateLimitExceeded
from limits import parse_many

from service.auth import guarded
from service.errors import envelope
from service.settings import Settings

OFF = ("", "off")
PREDICTION_RULE_ENDINGS = ("/predict", "/infer")
REDIS_SCHEMES = ("redis://", "rediss://")
KEY_PREFIX = "backprop"


def is_prediction() -> bool:
    rule = request.url_rule
    return (
        request.method == "POST"
        and rule is not None
        and rule.rule.endswith(PREDICTION_RULE_ENDINGS)
    )


def is_not_prediction() -> bool:
    return not is_prediction()


# Each budget: its setting, the scope its counters are kept under, and the requests it skips
# (those the other budget counts).
BUDGETS = (
    ("RATE_LIMIT", "requests", is_prediction),
    ("PREDICT_RATE_LIMIT", "predictions", is_not_prediction),
)
SETTING_OF_SCOPE = {scope: setting for setting, scope, _ in BUDGETS}


def caller_key() -> str:
    """The key's id when the caller presented one (``g.principal``, set by ``identify_caller``,
    which runs first), else the client's address."""
    principal = g.get("principal")
    if principal is not None and principal.key_id is not None:
        return f"key:{principal.key_id}"
    return f"addr:{request.remote_addr}"


def limit_setting(settings: Settings, name: str) -> str | None:
    """The limits of setting ``name`` (None when off); raises ``ValueError`` naming the setting
    when flask-limiter's notation does not parse."""
    text = getattr(settings, name.lower()).strip()
    if text.lower() in OFF:
        return None
    try:
        parse_many(text)
    except ValueError as error:
        raise ValueError(f"{name}={text!r}: {error}") from None
    return text


def budgets(settings: Settings) -> list[ApplicationLimit]:
    """The budgets that are on, each one counter shared by every route it covers."""
    limits = []
    for setting, scope, skipped in BUDGETS:
        text = limit_setting(settings, setting)
        if text is not None:
            limits.append(ApplicationLimit(text, scope=scope, exempt_when=skipped))
    return limits


def storage_uri(settings: Settings) -> str:
    if settings.broker_url.startswith(REDIS_SCHEMES):
        return settings.broker_url
    return "memory://"


def storage_options(settings: Settings) -> dict[str, float]:
    if not settings.broker_url.startswith(REDIS_SCHEMES):
        return {}
    timeout = settings.broker_timeout_seconds
    return {"socket_timeout": timeout, "socket_connect_timeout": timeout}


def install_rate_limits(app: Flask, settings: Settings) -> None:
    """Count /v1 and /v2 requests against their budget. Call after registering
    ``identify_caller``: flask-limiter's ``before_request`` hook must run after it, when the
    caller's key is known."""
    limits = budgets(settings)
    if not limits:
        return
    limiter = Limiter(
        caller_key,
        application_limits=limits,
        storage_uri=storage_uri(settings),
        storage_options=storage_options(settings),
        in_memory_fallback_enabled=True,
        key_prefix=KEY_PREFIX,
        headers_enabled=False,
    )
    limiter.request_filter(lambda: not guarded(request.path))
    limiter.init_app(app)
    app.register_error_handler(RateLimitExceeded, partial(too_many_requests, limiter))


def too_many_requests(limiter: Limiter, error: RateLimitExceeded):
    setting = SETTING_OF_SCOPE[error.limit.scope]
    message = f"Rate limit {error.limit.limit} ({setting}) exceeded."
    retry_after = seconds_until(limiter.current_limit.window.reset_time)
    return envelope("too_many_requests", message, {}), 429, {"Retry-After": str(retry_after)}


def seconds_until(moment: float) -> int:
    """Whole seconds from now until ``moment`` (Unix time), at least 1."""
    return max(1, math.ceil(moment - time.time()))
