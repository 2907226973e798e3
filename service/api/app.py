"""The Flask app factory of the HTTP API: validate, store, enqueue and predict. It never trains."""

from collections.abc import Callable
from inspect import iscoroutinefunction

import numpy as np
from flask import Flask, Response
from werkzeug.middleware.proxy_fix import ProxyFix
from werkzeug.routing import IntegerConverter

from model_core import MAX_INT32, Model
from service.api.auth import identify_caller
from service.api.bodies import BodyLimitedRequest, install_json_depth_check, json_body_errors_doc
from service.api.context import Services, close_db
from service.api.dashboard import install_dashboard
from service.api.errors import EnvelopeApi, register_domain_errors
from service.api.events import StreamSlots
from service.api.limits import install_rate_limits, rate_limited_doc
from service.api.metrics import install_metrics
from service.api.prediction_logging import install_prediction_log
from service.api.readiness import AlwaysReady, Readiness
from service.api.request_hooks import track_requests
from service.api.resources import BLUEPRINTS, DIRECT_VIEWS
from service.api.swagger_ui import SWAGGER_UI_URL, install_swagger_ui_files
from service.api.web_pages import install_web_page_guard
from service.broker import JobQueue
from service.caching import GenerationalCache, LruCache
from service.db.session import make_session_factory
from service.db.tenancy import scope_sessions_to_tenants
from service.generation import generation_for
from service.secret_key import signing_secret
from service.serving.predictions import model_bytes, prediction_arrays
from service.serving.rollout import (
    CountPublisher,
    CountStore,
    FileCounts,
    RedisCounts,
    ShadowRunner,
)
from service.settings import Settings

API_CONFIG = {
    "API_TITLE": "Backprop Service",
    "API_VERSION": "v1",
    "OPENAPI_VERSION": "3.0.3",
    "OPENAPI_URL_PREFIX": "/",
    "OPENAPI_JSON_PATH": "openapi.json",
    "OPENAPI_SWAGGER_UI_PATH": "/docs",
    "OPENAPI_SWAGGER_UI_URL": SWAGGER_UI_URL,
    # No badge from validator.swagger.io: the page asks nothing of another host.
    "OPENAPI_SWAGGER_UI_CONFIG": {"validatorUrl": None},
}


class RowId(IntegerConverter):
    """``<int:...>`` in a path: an id no row can have is a 404 from the router, not an overflow
    inside the database driver."""

    def __init__(self, url_map, *args, **kwargs):
        super().__init__(url_map, *args, **{"max": MAX_INT32, **kwargs})


class ApiFlask(Flask):
    """Flask, asking ``inspect.iscoroutinefunction`` once per function rather than per call:
    ``ensure_sync`` is called for every hook and view of every request (18 times for a
    prediction), and the answer never changes for a function. A method is remembered by its
    function; at most ``SYNC_MEMO_SIZE`` are remembered (any others are asked each time)."""

    SYNC_MEMO_SIZE = 4096

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.coroutine_functions: dict[Callable, bool] = {}

    def ensure_sync(self, func: Callable) -> Callable:
        function = getattr(func, "__func__", func)
        is_coroutine = self.coroutine_functions.get(function)
        if is_coroutine is None:
            is_coroutine = iscoroutinefunction(function)
            if len(self.coroutine_functions) < self.SYNC_MEMO_SIZE:
                self.coroutine_functions[function] = is_coroutine
        return self.async_to_sync(func) if is_coroutine else func


def dispatch_directly(app: Flask, views: dict[type, Callable[..., Response]]) -> None:
    """Route the endpoints of each view class in ``views`` straight to its function.

    flask-smorest wraps a documented method once per decorator (``doc``, ``response``, each
    ``alt_response``), every wrapper looking ``current_app`` up and asking its ``ensure_sync``
    again, and Flask's MethodView makes an instance per request to find the method: seven calls
    deep before a prediction starts. The functions answer a ``Response``, which those wrappers
    hand back untouched, and raise the errors they would. The OpenAPI document is built from
    the classes when the blueprints are registered, before this runs, so it is unchanged
    (tests/service/api/test_direct_views.py)."""
    for endpoint, view in list(app.view_functions.items()):
        function = views.get(getattr(view, "view_class", None))
        if function is not None:
            app.view_functions[endpoint] = function


def behind_proxies(wsgi_app, hops: int) -> ProxyFix:
    """Trust the ``X-Forwarded-For``, ``-Proto``, ``-Host`` and ``-Prefix`` headers of ``hops``
    reverse proxies: links, ``Location`` headers and the dashboard then carry the proxy's sub-path
    and address, and log lines the client's address."""
    return ProxyFix(wsgi_app, x_for=hops, x_proto=hops, x_host=hops, x_prefix=hops)


def model_cache(settings: Settings) -> LruCache[int, Model]:
    """Models bounded by bytes (``MODEL_CACHE_BYTES``) and by count (``MODEL_CACHE_SIZE``):
    each counts at least a ``MODEL_CACHE_SIZE``-th of the bytes, so no more fit than that."""
    least = settings.model_cache_bytes // settings.model_cache_size
    return LruCache(settings.model_cache_bytes, lambda model: max(model_bytes(model), least))


def rollout_count_store(settings: Settings) -> CountStore:
    """Redis when the broker is Redis (every host sees every count), else this host's folder."""
    if settings.broker_url.startswith(("redis://", "rediss://")):
        return RedisCounts(settings.broker_url)
    return FileCounts(settings.rollout_counts_folder())


def shadow_predictions(model: Model, x: np.ndarray, max_bytes: int) -> np.ndarray:
    """What a shadow run compares: the shadow's labels, or its values."""
    return prediction_arrays(model, x, max_bytes, "shadow")["predictions"]


def create_app(settings: Settings | None = None, readiness: Readiness | None = None) -> Flask:
    """The Flask app: settings (from the environment when not given), extensions, blueprints;
    ``readiness``: what ``/health/ready`` waits for besides the database and the broker (the
    warm-up and drain of `backprop api`'s processes; none by default)."""
    settings = settings or Settings.from_env()
    app = ApiFlask(__name__)
    app.request_class = BodyLimitedRequest
    app.url_map.converters["int"] = RowId
    app.config.update(API_CONFIG, MAX_CONTENT_LENGTH=settings.max_request_bytes)
    counts = CountPublisher(rollout_count_store(settings))
    app.extensions["backprop"] = Services(
        settings=settings,
        sessions=make_session_factory(settings.database_url),
        queue=JobQueue.from_settings(settings),
        models=model_cache(settings),
        generation=generation_for(settings),
        refs=GenerationalCache(),
        keys=GenerationalCache(),
        signing_secret=signing_secret(settings) if settings.auth == "required" else b"",
        rollout_counts=counts,
        shadows=ShadowRunner(counts, settings.shadow_queue_size, shadow_predictions),
    )
    app.extensions["readiness"] = readiness or AlwaysReady()
    app.extensions["event_streams"] = StreamSlots(per_tenant=settings.streams_per_tenant)
    scope_sessions_to_tenants(app.extensions["backprop"].sessions)
    track_requests(app)  # first: a request refused by a later hook still gets its id and line
    install_metrics(app, settings, app.extensions["backprop"].sessions)
    if "http_metrics" in app.extensions:
        app.extensions["backprop"].shadows.metrics = app.extensions["http_metrics"].shadows
    install_prediction_log(app, settings)  # after the metrics: it counts its drops there
    install_web_page_guard(app, settings)
    app.before_request(identify_caller)
    install_rate_limits(app, settings)  # after identify_caller: it counts per caller's key
    install_json_depth_check(app)  # after the rate limits: a body scanned is a request counted
    app.teardown_appcontext(close_db)
    api = EnvelopeApi(
        app, spec_kwargs={"extra_plugins": [json_body_errors_doc(), rate_limited_doc()]}
    )
    register_domain_errors(app)
    for blueprint in BLUEPRINTS:
        api.register_blueprint(blueprint)
    dispatch_directly(app, DIRECT_VIEWS)
    install_swagger_ui_files(app)
    install_dashboard(app)
    if settings.trusted_proxies:
        app.wsgi_app = behind_proxies(app.wsgi_app, settings.trusted_proxies)
    return app
