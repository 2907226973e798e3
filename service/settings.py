"""Configuration: one frozen ``Settings``, read from the environment only where a process starts.

Every value has an embedded default that needs no server: a SQLite database and a Celery broker
on kombu's SQLAlchemy transport, both as files under ``./var/``.
"""

import ipaddress
import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, fields, replace
from pathlib import Path

from service.vocabulary import TENANT_PATTERN

DEFAULT_VAR_DIR = Path("var")
# The settings that take one of a few words, and those words.
CHOICES = {
    "auth": ("off", "required"),
    "metrics": ("on", "off"),
    "log_format": ("json", "text"),
    "prediction_log": ("on", "off"),
    "prediction_log_inputs": ("on", "off"),
}

# A bare postgres:// URL would make SQLAlchemy look for psycopg2; we ship psycopg 3.
_URL_PREFIX_ALIASES = {
    "postgres://": "postgresql+psycopg://",
    "postgresql://": "postgresql+psycopg://",
}


def is_loopback(host: str) -> bool:
    """Whether ``host`` (an address or ``localhost``) is reachable from this machine only."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def normalize_database_url(url: str) -> str:
    """Return ``url`` with a bare PostgreSQL scheme pointed at the psycopg 3 driver."""
    for prefix, replacement in _URL_PREFIX_ALIASES.items():
        if url.startswith(prefix):
            return replacement + url[len(prefix) :]
    return url


@dataclass(frozen=True)
class Settings:
    """Everything a process of the service needs to know, with embedded defaults.

    Sizes are in bytes, rows or cells (rows x features); times in seconds.
    """

    database_url: str = f"sqlite:///{DEFAULT_VAR_DIR / 'backprop.sqlite'}"
    broker_url: str = f"sqla+sqlite:///{DEFAULT_VAR_DIR / 'broker.sqlite'}"
    port: int = 8000
    # Loopback by default: with AUTH=off nothing but this host may reach the API.
    host: str = "127.0.0.1"
    # "off": every request acts for the "default" tenant; "required": every /v1 and /v2 call
    # needs an API key (``backprop keys create``).
    auth: str = "off"
    # Signs the short-lived ?access_token= of event streams (never stored in the database).
    # Empty: a random secret kept in a file beside the SQLite database (else under ./var/),
    # which serves every API process of one host; set it when API processes run on several.
    secret_key: str = ""
    # How many reverse proxies stand in front of the API and set X-Forwarded-For, -Proto, -Host
    # and -Prefix (a sub-path such as /backprop). 0: those headers are ignored, since without a
    # proxy any client could send them.
    trusted_proxies: int = 0
    web_concurrency: int = 2
    # Small predictions running at once in each API process; more wait their turn, first come
    # first served (service/api/turns.py). 0: no turns.
    predict_concurrency: int = 2
    # Event streams one tenant may hold open on one API process (of its 24): the rest stay
    # for the other tenants.
    streams_per_tenant: int = 12
    worker_concurrency: int = 1
    max_request_bytes: int = 256 * 1024 * 1024
    max_predict_rows: int = 10_000
    max_dataset_rows: int = 1_000_000
    max_dataset_cells: int = 64_000_000
    # The longest class label, in characters, on every path (files, JSON uploads, evaluate's
    # targets): labels are stored as wide as the longest, 4 bytes a character, on every row.
    max_label_chars: int = 256
    max_parameters: int = 50_000_000
    # What a job may hold at once (data set, parameters, gradients, optimizer slots,
    # activations: service/jobs/costs.py), and what one request may allocate (predict,
    # evaluate and infer work in chunks of rows that stay within it; JSON weights beyond it are
    # refused; uploads excepted: 3 x MAX_REQUEST_BYTES).
    max_job_memory: int = 4 * 1024**3
    max_request_memory: int = 256 * 1024**2
    max_layers: int = 100
    max_layer_width: int = 65_536
    # Trials of one sweep (a grid's combinations, a random search's draws).
    max_sweep_trials: int = 1000
    # Classes up to which evaluate answers a dense confusion matrix (K x K counts); above, the
    # pairs that occur ([i, j, count]), so that a many-class model costs rows, not K squared.
    max_confusion_classes: int = 100
    # Explanations (/explain, /importance): exact Shapley values enumerate 2^n_features
    # coalitions, so they are for models of at most this many features; and one request may
    # run the network on at most this many rows in all (rows x steps x baselines, or rows x
    # 2^n_features x background rows).
    explain_shapley_max_features: int = 12
    explain_max_evaluations: int = 2_000_000
    # Operations (/v1/operations): what is answered later, by a `backprop webhook-worker`
    # process, never behind training. An importance above EXPLAIN_MAX_EVALUATIONS runs there,
    # up to EXPLAIN_MAX_OPERATION_EVALUATIONS forward rows; a promotion gate there when its data
    # set has more than GATE_SYNC_ROWS rows (or when the request says `Prefer: respond-async`).
    # A worker holds an operation under a lease of OPERATION_LEASE_SECONDS, renewed while it
    # runs; one whose workers died OPERATION_MAX_ATTEMPTS times ends failed. The dispatcher
    # deletes operations OPERATION_RETENTION_DAYS after they ended.
    explain_max_operation_evaluations: int = 100_000_000
    gate_sync_rows: int = 50_000
    operation_lease_seconds: float = 30.0
    operation_max_attempts: int = 3
    operation_retention_days: float = 7.0
    # Models kept deserialized per API process: at most MODEL_CACHE_SIZE of them and at most
    # MODEL_CACHE_BYTES of their arrays.
    model_cache_size: int = 32
    model_cache_bytes: int = 1024 * 1024 * 1024
    # Warm-up (issue 27): /health/ready answers 200 only once every API process has loaded
    # these models and run one forward pass on each. WARM_MODELS: "tenant/reference" items,
    # comma-separated ("acme/digits@production,acme/42"); empty: every version an alias serves
    # (a split's too), the most recently moved aliases first, at most WARM_MODELS_MAX of them
    # (0: no warm-up). At most MODEL_CACHE_SIZE: more would push each other out of the cache.
    warm_models: str = ""
    warm_models_max: int = 20
    # On SIGTERM `backprop api` answers 503 on /health/ready and keeps serving for this long, so
    # that a load balancer sees it leave (its check interval times its fall count: 2 s x 2 in
    # deploy/haproxy/haproxy.cfg) before it stops taking connections; then in-flight requests
    # end and it exits. `backprop run` sets 0 unless DRAIN_SECONDS is given.
    drain_seconds: float = 5.0
    # Shadow runs waiting per API process (issue 23); a request whose shadow finds the queue
    # full is answered as ever, its shadow run dropped and counted.
    shadow_queue_size: int = 1000
    dataset_cache_bytes: int = 1024 * 1024 * 1024
    metrics_flush_seconds: float = 0.5
    broker_timeout_seconds: float = 2.0
    job_visibility_timeout_seconds: int = 24 * 3600
    # Jobs that survive (issue 4). A job may train at most max_job_seconds (training.max_seconds
    # lowers it per job); the visibility timeout must stay above it.
    max_job_seconds: int = 12 * 3600
    lease_seconds: float = 15.0
    heartbeat_seconds: float = 3.0
    max_attempts: int = 3
    checkpoint_every_epochs: int = 10
    checkpoint_every_seconds: float = 30.0
    # Threads a training job's elementwise passes and optimizer update may use between the
    # matrix products (model_core/parallel.py; batches of 256 rows or more); BLAS has its own.
    # Results are the same bits whatever the number. 1 (everything on the calling thread) until
    # 2 measures faster on an idle machine (docs/benchmarks.md, issue 29); at most the cores.
    train_threads: int = 1
    dispatch_interval_seconds: float = 1.0
    idempotency_ttl_seconds: int = 24 * 3600
    # Request rates per API key (per client address with AUTH=off), in the notation of
    # flask-limiter and `limits` ("100/second", "20/second;1000/minute"), or "off".
    # Predictions (/predict, /v2 infer) count against PREDICT_RATE_LIMIT, every other /v1 and
    # /v2 request against RATE_LIMIT.
    rate_limit: str = "100/second"
    predict_rate_limit: str = "5000/second"
    # Keys a tenant may hold that are neither revoked nor expired, when its admin key makes
    # them over /v1/keys (the CLI is not limited).
    max_keys_per_tenant: int = 100
    # Per tenant: queued + running jobs, and bytes of data sets + models stored; 0: no quota.
    quota_jobs: int = 100
    quota_stored_bytes: int = 10 * 1024**3
    log_level: str = "INFO"
    # Log lines: "json" (one object a line) or "text". Every request gets one line of ours
    # (service/api/request_hooks.py), so the access log is off unless asked for: "-"
    # (stderr) or a file path (a tenth of a small prediction's CPU goes to writing its line).
    log_format: str = "json"
    access_log: str = "off"
    # Webhooks (docs/operations.md, "Webhooks"): attempts per delivery, the wait before the
    # second (doubled after each failure, at most an hour), the timeout of connecting and of
    # each read, and whether URLs may reach loopback, private and link-local addresses (tests,
    # private networks). WEBHOOK_CONCURRENCY: deliveries one `backprop webhook-worker` sends at
    # once. SECRET_KEY_PREVIOUS: the key before SECRET_KEY while a rotation re-encrypts the
    # webhook secrets (`backprop webhooks reencrypt`).
    webhook_max_attempts: int = 8
    webhook_backoff_seconds: float = 5.0
    webhook_timeout_seconds: float = 5.0
    webhook_allow_private: bool = False
    webhook_concurrency: int = 4
    # Webhooks a tenant may hold: every event goes to each of them.
    max_webhooks_per_tenant: int = 20
    secret_key_previous: str = ""
    # GET /metrics on the API port: "on" or "off" (a 404). With AUTH=required it needs
    # METRICS_TOKEN as a bearer token, and is off while that is empty.
    metrics: str = "on"
    metrics_token: str = ""
    # prometheus_client's multiprocess folder for the API's worker processes, emptied when the
    # API starts; empty: var/prometheus-<PORT>.
    prometheus_multiproc_dir: str = ""
    # The prediction log (docs/operations.md, "The prediction log"): "on" or "off"; the share
    # of requests logged (0 to 1); whether the inputs are kept ("off": the outputs, and of the
    # inputs only per-hour counts of their reference bins).
    # Rows wait in each API process's buffer (at most PREDICTION_LOG_BUFFER_ROWS: beyond, they
    # are dropped and counted) and are written at least every PREDICTION_LOG_FLUSH_SECONDS.
    # The dispatcher deletes rows older than PREDICTION_LOG_DAYS, and a version's oldest rows
    # beyond PREDICTION_LOG_MAX_ROWS.
    prediction_log: str = "on"
    prediction_log_sample: float = 1.0
    prediction_log_inputs: str = "on"
    prediction_log_flush_seconds: float = 1.0
    prediction_log_buffer_rows: int = 100_000
    prediction_log_days: float = 30.0
    prediction_log_max_rows: int = 1_000_000
    # Drift against the training data: a feature has drifted when its PSI is above DRIFT_PSI,
    # or when its Kolmogorov-Smirnov D is above DRIFT_KS with a p-value below DRIFT_P divided by
    # the number of features; a window of fewer than DRIFT_MIN_ROWS rows gives no figure. The
    # dispatcher recomputes the last day's figures for /metrics every DRIFT_INTERVAL seconds.
    drift_psi: float = 0.2
    drift_ks: float = 0.1
    drift_p: float = 0.01
    drift_min_rows: int = 100
    drift_interval: float = 300.0

    def __post_init__(self) -> None:
        for name, allowed in CHOICES.items():
            value = getattr(self, name)
            if value not in allowed:
                raise ValueError(f"{name.upper()}={value!r}: must be one of {', '.join(allowed)}")
        if self.trusted_proxies < 0:
            raise ValueError(f"TRUSTED_PROXIES={self.trusted_proxies}: must be 0 or more")
        if self.webhook_max_attempts < 1:
            raise ValueError(f"WEBHOOK_MAX_ATTEMPTS={self.webhook_max_attempts}: must be 1 or more")

        if not 0.0 <= self.prediction_log_sample <= 1.0:
            raise ValueError(
                f"PREDICTION_LOG_SAMPLE={self.prediction_log_sample}: must be between 0 and 1"
            )
        if self.streams_per_tenant < 1:
            raise ValueError(f"STREAMS_PER_TENANT={self.streams_per_tenant}: must be 1 or more")
        if self.operation_max_attempts < 1:
            raise ValueError(
                f"OPERATION_MAX_ATTEMPTS={self.operation_max_attempts}: must be 1 or more"
            )
        if self.shadow_queue_size < 1:  # queue.Queue(0) would have no bound at all
            raise ValueError(f"SHADOW_QUEUE_SIZE={self.shadow_queue_size}: must be 1 or more")
        if self.train_threads < 1:
            raise ValueError(f"TRAIN_THREADS={self.train_threads}: must be 1 or more")
        if self.predict_concurrency < 0:
            raise ValueError(f"PREDICT_CONCURRENCY={self.predict_concurrency}: must be 0 or more")
        if self.drain_seconds < 0:
            raise ValueError(f"DRAIN_SECONDS={self.drain_seconds}: must be 0 or more")
        self._check_warm_models()

    def _check_warm_models(self) -> None:
        if not 0 <= self.warm_models_max <= self.model_cache_size:
            raise ValueError(
                f"WARM_MODELS_MAX={self.warm_models_max}: must be between 0 and "
                f"MODEL_CACHE_SIZE ({self.model_cache_size}), or warmed models evict each other"
            )
        named = self.warm_model_refs()
        if len(named) > self.warm_models_max:
            raise ValueError(
                f"WARM_MODELS names {len(named)} models, more than WARM_MODELS_MAX="
                f"{self.warm_models_max}"
            )

    def warm_model_refs(self) -> list[tuple[str, str]]:
        """WARM_MODELS as ``(tenant, reference)`` pairs (the reference parsed where it is
        used); ``ValueError`` naming an item that is not ``tenant/reference``."""
        pairs = []
        for item in filter(None, (part.strip() for part in self.warm_models.split(","))):
            tenant, _, reference = item.partition("/")
            if not re.fullmatch(TENANT_PATTERN, tenant) or not reference:
                raise ValueError(
                    f"WARM_MODELS: {item!r} is not tenant/reference (acme/digits@production)"
                )
            pairs.append((tenant, reference))
        return pairs

    def exposure_problem(self) -> str | None:
        """Why serving on ``host`` with these settings would be unsafe, if it would."""
        if self.auth == "off" and not is_loopback(self.host):
            return (
                f"AUTH=off would let anyone who reaches {self.host}:{self.port} read and change "
                "every data set and model: set AUTH=required (and make keys with `backprop keys "
                "create`), or HOST=127.0.0.1"
            )
        return None

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> "Settings":
        """Build settings from environment variables named like the fields in upper case.

        ``DATABASE_URL``, ``BROKER_URL``, ``PORT``, ``MAX_REQUEST_BYTES``... Unset variables keep
        the default; a value that does not parse raises ``ValueError`` naming the variable.
        """
        environ = os.environ if environ is None else environ
        values = {}
        for field in fields(cls):
            raw = environ.get(field.name.upper())
            if raw is None or raw == "":
                continue
            try:
                values[field.name] = _PARSERS[field.type](raw)
            except ValueError as error:
                raise ValueError(f"{field.name.upper()}={raw!r}: {error}") from None
        if "database_url" in values:
            values["database_url"] = normalize_database_url(values["database_url"])
        return cls(**values)

    def for_operations(self) -> "Settings":
        """These settings as a worker runs an operation with them: its explanations may run
        the network on EXPLAIN_MAX_OPERATION_EVALUATIONS rows."""
        return replace(self, explain_max_evaluations=self.explain_max_operation_evaluations)

    def webhook_lease_seconds(self) -> float:
        """How long a webhook worker holds a delivery it sends: a lookup, a connection and a
        read may each take WEBHOOK_TIMEOUT_SECONDS; then the dispatcher sends it again."""
        return 3 * self.webhook_timeout_seconds

    def registry_generation_path(self) -> Path:
        """The file whose every change tells API processes that a model reference may now name
        another model (beside the SQLite database, else under ``./var/``): used when the broker
        is not Redis."""
        if self.database_url.startswith("sqlite:///"):
            database = Path(self.database_url.removeprefix("sqlite:///"))
            return database.with_name(database.name + ".generation")
        return DEFAULT_VAR_DIR / "registry.generation"

    def rollout_counts_folder(self) -> Path:
        """Where each API process of this host writes the requests it served per alias
        version and its shadows' figures, when the broker is not Redis."""
        return self.registry_generation_path().with_name("rollout-counts")

    def secret_key_path(self) -> Path:
        """The file of the random secret used while ``SECRET_KEY`` is empty."""
        return self.registry_generation_path().with_name("secret.key")

    def metrics_directory(self) -> Path:
        """Where the API's processes keep their request figures (one file per process)."""
        if self.prometheus_multiproc_dir:
            return Path(self.prometheus_multiproc_dir)
        return DEFAULT_VAR_DIR / f"prometheus-{self.port}"

    def sqlite_paths(self) -> list[Path]:
        """The SQLite files this configuration writes to (their folders must exist)."""
        urls = (self.database_url, self.broker_url.removeprefix("sqla+"))
        return [
            Path(url.removeprefix("sqlite:///")) for url in urls if url.startswith("sqlite:///")
        ]


def create_sqlite_folders(settings: Settings) -> Settings:
    """Create the folders of the embedded SQLite files (database and broker) of ``settings``."""
    for path in settings.sqlite_paths():
        path.parent.mkdir(parents=True, exist_ok=True)
    return settings


def parse_bool(raw: str) -> bool:
    """``true`` or ``false`` (any case; also 1/0, yes/no, on/off)."""
    words = {"true": True, "1": True, "yes": True, "on": True}
    words |= {"false": False, "0": False, "no": False, "off": False}
    try:
        return words[raw.strip().lower()]
    except KeyError:
        raise ValueError("must be true or false") from None


_PARSERS: dict[type, Callable[[str], object]] = {
    str: str,
    int: int,
    float: float,
    bool: parse_bool,
}
