"""deploy/kubernetes/, checked offline: every manifest against the schemas of a pinned Kubernetes
(kubernetes-validate) and KEDA's CRDs (kept in tests/deploy/keda/), and against what
docker-compose.yml and the code use, so that the two cannot drift: images, commands, ports,
probe paths and commands, environment variables (Settings fields), secrets, security contexts,
resources against measured figures, grace periods against the shutdowns they wait for, and the
ScaledObject's query against the job figures of /metrics.

`tests/integration/test_kubernetes_scaler.py` runs the query on a live stack.
"""

import copy
from pathlib import Path

import jsonschema
import kubernetes_validate
import pytest
import yaml
from sqlalchemy import text, update

from service.api.app import create_app
from service.api.server import GRACEFUL_STOP_SECONDS
from service.commands.cli import build_parser
from service.db.figures import jobs_by_status
from service.db.models import TrainingJob
from service.settings import Settings
from service.vocabulary import ACTIVE_STATUSES, JobStatus
from tests.factories import queued_xor_job, sqlite_sessions

ROOT = Path(__file__).resolve().parents[2]
FOLDER = ROOT / "deploy" / "kubernetes"
KEDA_CRDS = Path(__file__).resolve().parent / "keda"
# The oldest Kubernetes the manifests are written for (docs/deploy.md); the API's preStop `sleep`
# action is on by default from 1.30.
KUBERNETES_VERSION = "1.32.0"
COMPOSE = yaml.safe_load((ROOT / "docker-compose.yml").read_text())["services"]
KUSTOMIZATION = yaml.safe_load((FOLDER / "kustomization.yaml").read_text())
MIB = 1024 * 1024
# `python -m bench.process_memory` (docs/benchmarks.md, issue 27), MiB, the highest of three
# runs: the peak PSS of each part's process tree (the migration's peak RSS), and the peak RSS of
# the workers' exec probe (Celery's ping), which runs in their containers.
MEASURED_PEAK_MIB = {
    "migrate": 93,
    "api": 340,
    "worker": 170,
    "webhook-worker": 325,
    "dispatcher": 112,
    "flower": 76,
}
EXEC_PROBE_MIB = 54
# Variables that are no Settings field, and who reads them.
OTHER_VARIABLES = {
    "FLOWER_BASIC_AUTH": "service/commands/flower.py, and Flower",
    "FLOWER_PORT": "Flower",
    "MPLCONFIGDIR": "matplotlib (service/jobs/plots.py): its cache, on the writable /tmp",
}
SECRET_VARIABLES = {
    "DATABASE_URL", "BROKER_URL", "SECRET_KEY", "METRICS_TOKEN", "FLOWER_BASIC_AUTH"
}  # fmt: skip
# On SIGTERM `backprop api` drains for DRAIN_SECONDS before Granian's graceful stop: 5 by
# default (issue 27's load balancer part, which adds the setting).
API_DRAIN_SECONDS = 5


def manifests() -> list[dict]:
    """Every document of every file the kustomization lists, in order."""
    documents = []
    for name in KUSTOMIZATION["resources"]:
        documents.extend(doc for doc in yaml.safe_load_all((FOLDER / name).read_text()) if doc)
    return documents


MANIFESTS = manifests()
KEDA_KINDS = {"ScaledObject", "TriggerAuthentication"}


def named(kind: str, name: str) -> dict:
    (found,) = [doc for doc in MANIFESTS if doc["kind"] == kind and doc["metadata"]["name"] == name]
    return found


# The pod template of every workload, by its component label (a compose service's name).
TEMPLATES = {
    doc["spec"]["template"]["metadata"]["labels"]["app.kubernetes.io/component"]: doc["spec"][
        "template"
    ]
    for doc in MANIFESTS
    if doc["kind"] in {"Deployment", "Job"}
}
PODS = {component: template["spec"] for component, template in TEMPLATES.items()}
PODS_LABELS = {
    component: template["metadata"]["labels"] for component, template in TEMPLATES.items()
}


def container(component: str) -> dict:
    (only,) = PODS[component]["containers"]
    return only


def shared_settings() -> dict[str, str]:
    """The variables of the generated ConfigMap every app container reads (envFrom)."""
    (generator,) = KUSTOMIZATION["configMapGenerator"]
    values = {}
    for name in generator["envs"]:
        for line in (FOLDER / name).read_text().splitlines():
            if line.strip() and not line.startswith("#"):
                key, value = line.split("=", 1)
                values[key] = value
    return values


def environment(component: str) -> dict[str, str]:
    """What the container's process sees, less the secrets: the shared settings, then its own
    values."""
    own = {item["name"]: item["value"] for item in container(component)["env"] if "value" in item}
    return {**shared_settings(), **own}


def settings_of(component: str) -> Settings:
    return Settings.from_env(environment(component))


def mebibytes(quantity: str) -> float:
    units = {"Mi": 1, "Gi": 1024}
    return float(quantity[:-2]) * units[quantity[-2:]]


def strict(schema: dict) -> dict:
    """``schema`` (an OpenAPI v3 schema of a CRD) refusing unknown fields, as the API server's
    strict field validation does (``kubectl apply``'s default), where the CRD does not keep them
    on purpose."""
    schema = copy.deepcopy(schema)

    def close(node: dict) -> None:
        keeps_unknown = node.get("x-kubernetes-preserve-unknown-fields")
        if "properties" in node and "additionalProperties" not in node and not keeps_unknown:
            node["additionalProperties"] = False
        for child in node.get("properties", {}).values():
            close(child)
        for key in ("items", "additionalProperties"):
            if isinstance(node.get(key), dict):
                close(node[key])
        for key in ("anyOf", "allOf", "oneOf"):
            for child in node.get(key, []):
                close(child)

    close(schema)
    return schema


def keda_schema(kind: str) -> dict:
    crd = yaml.safe_load((KEDA_CRDS / f"keda.sh_{kind.lower()}s.yaml").read_text())
    (version,) = [v for v in crd["spec"]["versions"] if v["name"] == "v1alpha1"]
    return strict(version["schema"]["openAPIV3Schema"])


def validate(document: dict) -> None:
    """Raise ``jsonschema.ValidationError`` unless ``document`` is valid for the pinned
    Kubernetes (KEDA's kinds: for KEDA's CRDs)."""
    if document["kind"] in KEDA_KINDS:
        assert document["apiVersion"] == "keda.sh/v1alpha1"
        jsonschema.Draft7Validator(keda_schema(document["kind"])).validate(document)
    else:
        kubernetes_validate.validate(document, KUBERNETES_VERSION, strict=True)


# --- The files and their schemas ---------------------------------------------------------------


def test_the_kustomization_lists_every_manifest_of_the_folder():
    listed = set(KUSTOMIZATION["resources"])
    assert listed == {path.name for path in FOLDER.glob("*.yaml")} - {"kustomization.yaml"}
    assert KUSTOMIZATION["namespace"] == named("Namespace", "backprop")["metadata"]["name"]


@pytest.mark.parametrize(
    "document", MANIFESTS, ids=[f"{d['kind']}/{d['metadata']['name']}" for d in MANIFESTS]
)
def test_every_manifest_is_valid(document):
    validate(document)


@pytest.mark.parametrize(
    ("kind", "name", "mistake"),
    [
        ("Deployment", "backprop-api", ("spec", "template", "spec", "terminationGracePeriod", 5)),
        ("ScaledObject", "backprop-worker", ("spec", "minReplicas", 0)),
        ("TriggerAuthentication", "backprop-postgres", ("spec", "secretRef", [])),
    ],
)
def test_the_validation_refuses_an_unknown_field(kind, name, mistake):
    """The schemas are really applied: a misspelt field fails (Kubernetes would drop it)."""
    document = copy.deepcopy(named(kind, name))
    *path, field, value = mistake
    node = document
    for key in path:
        node = node[key]
    node[field] = value
    with pytest.raises(jsonschema.ValidationError):
        validate(document)


# --- The same parts as docker-compose.yml ------------------------------------------------------


def test_every_part_of_the_compose_stack_but_its_servers_is_here():
    """PostgreSQL and Redis run outside (a managed service, an operator); the cluster's Service
    and ingress are the load balancer."""
    assert set(PODS) == set(COMPOSE) - {"postgres", "redis", "lb"}


@pytest.mark.parametrize("component", sorted(PODS))
def test_each_part_runs_the_compose_image_and_command(component):
    image, tag = COMPOSE[component]["image"].split(":")
    assert container(component)["image"] == image
    assert {"name": image, "newTag": tag} in KUSTOMIZATION["images"]
    command = container(component)["command"]
    assert command == COMPOSE[component]["command"]
    args, extra = build_parser().parse_known_args(command[1:])
    assert args.handler and not extra


def test_the_ports_are_the_compose_ports_and_the_services_reach_them():
    for component, variable in (("api", "PORT"), ("flower", "FLOWER_PORT")):
        port = int(COMPOSE[component]["environment"][variable])
        assert f"127.0.0.1:{port}/" in COMPOSE[component]["healthcheck"]["test"][-1]
        assert environment(component)[variable] == str(port)
        (declared,) = container(component)["ports"]
        assert declared == {"name": "http", "containerPort": port}
        service = named("Service", f"backprop-{component}")
        assert service["spec"]["selector"] == PODS_LABELS[component]
        assert service["spec"]["ports"] == [{"name": "http", "port": port, "targetPort": "http"}]


@pytest.mark.parametrize("component", ["worker", "webhook-worker"])
def test_the_workers_liveness_is_the_compose_health_check(component):
    probe = container(component)["livenessProbe"]["exec"]["command"]
    assert probe == COMPOSE[component]["healthcheck"]["test"][1:]


def test_flowers_probes_are_the_compose_health_check():
    check = COMPOSE["flower"]["healthcheck"]["test"][-1]
    for probe in ("readinessProbe", "livenessProbe"):
        path = container("flower")[probe]["httpGet"]["path"]
        assert f"127.0.0.1:5555{path}'" in check


@pytest.fixture(scope="module")
def secured_app(tmp_path_factory):
    """The API as the manifests run it (AUTH=required), on SQLite and the embedded broker."""
    folder = tmp_path_factory.mktemp("kubernetes")
    sqlite_sessions(folder / "db.sqlite")
    settings = Settings(
        database_url=f"sqlite:///{folder / 'db.sqlite'}",
        broker_url=f"sqla+sqlite:///{folder / 'broker.sqlite'}",
        auth="required",
        metrics_token="token",
    )
    return create_app(settings)


def test_the_api_probes_answer_200_without_a_key(secured_app):
    """The paths are the app's own, and open: a probe carries no key."""
    api = container("api")
    client = secured_app.test_client()
    assert environment("api")["AUTH"] == "required"
    for probe, path in (
        ("startupProbe", "/health/live"),
        ("livenessProbe", "/health/live"),
        ("readinessProbe", "/health/ready"),
    ):
        assert api[probe]["httpGet"] == {"path": path, "port": "http"}
        assert client.get(path).status_code == 200, path
    assert COMPOSE["api"]["healthcheck"]["test"][-1].count("/health/ready") == 1


# --- Environment and secrets -------------------------------------------------------------------


SETTINGS_VARIABLES = {name.upper() for name in Settings.__dataclass_fields__}


@pytest.mark.parametrize("component", sorted(PODS))
def test_every_variable_is_a_setting_or_read_by_a_named_program(component):
    (generator,) = KUSTOMIZATION["configMapGenerator"]
    assert container(component)["envFrom"] == [{"configMapRef": {"name": generator["name"]}}]
    names = [item["name"] for item in container(component)["env"]] + list(shared_settings())
    for name in names:
        assert name in SETTINGS_VARIABLES or name in OTHER_VARIABLES, f"{component}: {name}"
        if name in OTHER_VARIABLES and name != "MPLCONFIGDIR":
            assert name in COMPOSE[component]["environment"], f"{component}: {name}"
    settings_of(component)  # every value parses


@pytest.mark.parametrize("component", sorted(PODS))
def test_secrets_are_referenced_never_inlined(component):
    for item in container(component)["env"]:
        if item["name"] in SECRET_VARIABLES:
            assert set(item) == {"name", "valueFrom"}
            assert item["valueFrom"]["secretKeyRef"]["name"] == "backprop"
            assert item["valueFrom"]["secretKeyRef"]["key"] == item["name"]
    assert not SECRET_VARIABLES & set(shared_settings())
    assert not [doc for doc in MANIFESTS if doc["kind"] == "Secret"]


@pytest.mark.parametrize("component", sorted(PODS))
def test_each_part_gets_the_compose_files_secrets(component):
    """The variables compose requires (``${VAR:?...}``) or passes on, as secrets here."""
    wanted = {
        name
        for name, value in COMPOSE[component].get("environment", {}).items()
        if name in SECRET_VARIABLES and str(value).startswith("${")
    }
    given = {item["name"] for item in container(component)["env"] if "valueFrom" in item}
    # SECRET_KEY: the API signs with it and the webhook worker opens with it (docs/deploy.md);
    # compose gives it to every container alike.
    assert wanted - {"SECRET_KEY"} <= given
    if component in {"api", "webhook-worker"}:
        assert "SECRET_KEY" in given
    if component != "flower":
        assert "DATABASE_URL" in given


def test_one_database_url_serves_the_service_and_keda():
    """KEDA's PostgreSQL scaler (pgx) reads the Secret's DATABASE_URL as the service does, when
    it is a postgresql:// URL."""
    url = "postgresql://backprop:secret@postgres:5432/backprop?sslmode=require"
    parsed = Settings.from_env({"DATABASE_URL": url}).database_url
    assert parsed == url.replace("postgresql://", "postgresql+psycopg://")
    (reference,) = named("TriggerAuthentication", "backprop-postgres")["spec"]["secretTargetRef"]
    assert reference == {"parameter": "connection", "name": "backprop", "key": "DATABASE_URL"}


# --- Security and resources --------------------------------------------------------------------


@pytest.mark.parametrize("component", sorted(PODS))
def test_every_pod_runs_as_the_images_user_on_a_read_only_root(component):
    pod = PODS[component]
    user = int(
        next(
            line.split("--uid")[1].split()[0]
            for line in (ROOT / "Dockerfile").read_text().splitlines()
            if "useradd" in line
        )
    )
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["runAsUser"] == user
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    assert pod["automountServiceAccountToken"] is False
    context = container(component)["securityContext"]
    assert context == {
        "allowPrivilegeEscalation": False,
        "readOnlyRootFilesystem": True,
        "capabilities": {"drop": ["ALL"]},
    }
    empty_dirs = {volume["name"] for volume in pod["volumes"] if "emptyDir" in volume}
    mounts = {mount["mountPath"]: mount["name"] for mount in container(component)["volumeMounts"]}
    assert mounts["/tmp"] in empty_dirs
    assert set(mounts.values()) <= empty_dirs


def test_the_api_writes_its_metrics_files_on_a_writable_volume():
    settings = settings_of("api")
    folder = Path("/app") / settings.metrics_directory()
    mounts = [mount["mountPath"] for mount in container("api")["volumeMounts"]]
    assert any(folder.is_relative_to(mount) for mount in mounts)
    assert "WORKDIR /app" in (ROOT / "Dockerfile").read_text()


@pytest.mark.parametrize("component", sorted(PODS))
def test_requests_hold_the_measured_memory_and_limits_are_above_requests(component):
    resources = container(component)["resources"]
    assert set(resources["requests"]) == set(resources["limits"]) == {"cpu", "memory"}
    measured = MEASURED_PEAK_MIB[component]
    if "exec" in container(component).get("livenessProbe", {}):
        measured += EXEC_PROBE_MIB
    assert mebibytes(resources["requests"]["memory"]) >= measured
    assert mebibytes(resources["limits"]["memory"]) >= mebibytes(resources["requests"]["memory"])


def test_the_api_limit_holds_each_process_caches_and_request():
    settings = settings_of("api")
    per_process = settings.model_cache_bytes + settings.max_request_memory
    needed = MEASURED_PEAK_MIB["api"] + settings.web_concurrency * per_process / MIB
    assert mebibytes(container("api")["resources"]["limits"]["memory"]) >= needed


def test_the_worker_limit_holds_the_largest_job_the_api_accepts():
    worker, api = settings_of("worker"), settings_of("api")
    assert worker.max_job_memory == api.max_job_memory  # the API refuses bigger jobs
    assert worker.worker_concurrency == 1
    needed = (
        MEASURED_PEAK_MIB["worker"]
        + EXEC_PROBE_MIB
        + (worker.dataset_cache_bytes + worker.max_job_memory) / MIB
    )
    assert mebibytes(container("worker")["resources"]["limits"]["memory"]) >= needed


# --- Stopping ------------------------------------------------------------------------------------


def test_a_stopped_api_pod_drains_then_ends_its_requests_within_the_grace_period():
    graceful = GRACEFUL_STOP_SECONDS
    pre_stop = container("api")["lifecycle"]["preStop"]["sleep"]["seconds"]
    assert pre_stop == API_DRAIN_SECONDS
    grace = PODS["api"]["terminationGracePeriodSeconds"]
    assert grace >= pre_stop + API_DRAIN_SECONDS + graceful


def test_a_worker_scaled_down_mid_job_finishes_it_before_it_is_killed():
    """SIGTERM is Celery's warm shutdown, which waits for the job; a job ends within
    MAX_JOB_SECONDS."""
    settings = settings_of("worker")
    assert PODS["worker"]["terminationGracePeriodSeconds"] >= settings.max_job_seconds + 60
    assert settings.max_job_seconds == settings_of("api").max_job_seconds


def test_a_stopped_webhook_worker_finishes_its_deliveries():
    grace = PODS["webhook-worker"]["terminationGracePeriodSeconds"]
    assert grace >= settings_of("webhook-worker").webhook_lease_seconds()


def test_the_dispatcher_is_one_pod_and_the_api_keeps_one_through_disruptions():
    assert named("Deployment", "backprop-dispatcher")["spec"]["replicas"] == 1
    budget = named("PodDisruptionBudget", "backprop-api")["spec"]
    assert budget["minAvailable"] >= 1
    assert budget["selector"]["matchLabels"] == PODS_LABELS["api"]
    autoscaler = named("HorizontalPodAutoscaler", "backprop-api")["spec"]
    assert autoscaler["scaleTargetRef"]["name"] == "backprop-api"
    assert autoscaler["minReplicas"] > budget["minAvailable"]
    (metric,) = autoscaler["metrics"]
    assert metric["resource"]["name"] == "cpu"
    assert "replicas" not in named("Deployment", "backprop-api")["spec"]


# --- The workers' autoscaling --------------------------------------------------------------------


SCALED = named("ScaledObject", "backprop-worker")["spec"]
(TRIGGER,) = SCALED["triggers"]


def test_the_scaled_object_scales_the_workers_one_pod_per_job():
    assert SCALED["scaleTargetRef"] == {"name": "backprop-worker"}
    assert "replicas" not in named("Deployment", "backprop-worker")["spec"]
    assert TRIGGER["type"] == "postgresql"
    jobs_per_pod = settings_of("worker").worker_concurrency
    assert float(TRIGGER["metadata"]["targetQueryValue"]) == jobs_per_pod
    assert TRIGGER["authenticationRef"]["name"] == "backprop-postgres"


@pytest.mark.parametrize("sessions", ["postgresql"], indirect=True)
def test_the_query_counts_the_jobs_queued_and_running_as_metrics_does(sessions):
    """Jobs in every status: the query's count is /metrics' backprop_jobs for queued plus
    running."""
    with sessions() as session:
        for status in JobStatus:
            for _ in range(2 if status in ACTIVE_STATUSES else 1):
                job_id = queued_xor_job(sessions, epochs=1)
                session.execute(
                    update(TrainingJob).where(TrainingJob.id == job_id).values(status=status)
                )
        session.commit()
        counted = session.scalar(text(TRIGGER["metadata"]["query"]))
        figures = jobs_by_status(session)
    assert counted == sum(figures[status] for status in ACTIVE_STATUSES) == 4
