"""docker-compose.yml and the Dockerfile, checked without Docker (`make compose-test` runs them).

The file parses, every service is wired to services and volumes that exist, and every command
it runs exists: `backprop` subcommands parse, Python snippets compile, and the Dockerfile the
app services build from is there.
"""

import ast
import importlib
import re
import tomllib
from pathlib import Path

import pytest
import yaml

from service.api.app import create_app
from service.api.server import GRACEFUL_STOP_SECONDS
from service.commands.cli import build_parser
from service.settings import Settings

ROOT = Path(__file__).resolve().parent.parent
COMPOSE = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
CI_OVERRIDE = yaml.safe_load((ROOT / "docker-compose.ci.yml").read_text())
SERVICES = COMPOSE["services"]
# Commands provided by the official images the stack pulls.
IMAGE_COMMANDS = {"postgres": {"pg_isready"}, "redis": {"redis-server", "redis-cli"}}


def commands(service: dict) -> list[list[str]]:
    """The command and the health check command of a service, as argument lists."""
    found = []
    if "command" in service:
        found.append(service["command"])
    test = service.get("healthcheck", {}).get("test")
    if test:
        found.append(test[1:] if test[0] == "CMD" else test)
    return found


def test_the_stack_has_every_part():
    assert {"postgres", "redis", "migrate", "api", "worker", "webhook-worker"} <= set(SERVICES)
    assert all("healthcheck" in SERVICES[name] for name in ("postgres", "redis", "api", "worker"))
    assert "pgdata" in COMPOSE["volumes"]


def test_every_process_that_seals_or_opens_webhook_secrets_shares_secret_key():
    for name in ("api", "webhook-worker"):
        assert SERVICES[name]["environment"]["SECRET_KEY"].startswith("${SECRET_KEY:?")


def test_the_worker_can_be_scaled():
    worker = SERVICES["worker"]
    assert "container_name" not in worker and "ports" not in worker


def test_dependencies_and_volumes_exist():
    for name, service in SERVICES.items():
        assert set(service.get("depends_on", {})) <= set(SERVICES), name
        for volume in service.get("volumes", []):
            source = volume.split(":")[0]
            if source.startswith("./"):  # a file of this repository, mounted
                assert (ROOT / source).is_file(), name
            else:
                assert source in COMPOSE["volumes"], name


@pytest.mark.parametrize("name", sorted(SERVICES))
def test_every_command_exists(name):
    service = SERVICES[name]
    for command in commands(service):
        program = command[0]
        if program == "backprop":
            args, extra = build_parser().parse_known_args(command[1:])
            assert args.handler and (not extra or args.passes_options)
        elif program == "python":
            assert command[1] == "-c"
            compile(command[2], f"{name} healthcheck", "exec")
        else:
            image = service["image"].split(":")[0]
            assert program in IMAGE_COMMANDS[image], f"{name} runs unknown {program}"


def test_the_app_image_builds_from_this_repository():
    assert all(SERVICES[name]["build"] == "." for name in ("migrate", "api", "worker", "flower"))
    dockerfile = (ROOT / "Dockerfile").read_text()
    assert 'CMD ["backprop", "api"]' in dockerfile
    assert '".[flower]"' in dockerfile
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert project["scripts"]["backprop"] == "service.commands.cli:main"
    flower_extra = project["optional-dependencies"]["flower"]
    assert any(requirement.startswith("flower") for requirement in flower_extra)


def test_flower_runs_on_the_broker_behind_a_login_it_cannot_start_without():
    flower = SERVICES["flower"]
    assert flower["command"] == ["backprop", "flower"]
    assert flower["ports"] == ["5555:5555"]
    assert flower["environment"]["BROKER_URL"].startswith("redis://")
    # Compose refuses to start the stack until FLOWER_BASIC_AUTH is set (${VAR:?message}).
    assert flower["environment"]["FLOWER_BASIC_AUTH"].startswith("${FLOWER_BASIC_AUTH:?")
    assert "healthcheck" in flower


def test_the_api_cannot_start_without_the_secret_every_replica_signs_with():
    """Unset, each API container made a secret of its own, and an access token from one
    replica was refused by the next."""
    secret = SERVICES["api"]["environment"]["SECRET_KEY"]
    assert secret.startswith("${SECRET_KEY:?")


def test_the_api_takes_its_metrics_token_from_the_environment():
    assert SERVICES["api"]["environment"]["METRICS_TOKEN"] == "${METRICS_TOKEN:-}"


def healthcheck_imports() -> list[tuple[str, str]]:
    """``(module, name)`` for every ``from module import name`` (and ``(module, "")`` for every
    ``import module``) in the Python snippets of the compose file's health checks."""
    found = []
    for service in SERVICES.values():
        for command in commands(service):
            if command[0] != "python":
                continue
            for node in ast.walk(ast.parse(command[2])):
                if isinstance(node, ast.ImportFrom):
                    found.extend((node.module, alias.name) for alias in node.names)
                elif isinstance(node, ast.Import):
                    found.extend((alias.name, "") for alias in node.names)
    return found


def test_every_name_a_healthcheck_imports_exists():
    """Moving a module must not silently break the compose file's health checks."""
    imports = healthcheck_imports()
    assert ("service.broker", "create_celery_app") in imports
    for module, name in imports:
        imported = importlib.import_module(module)
        assert not name or hasattr(imported, name), f"{module} has no {name}"


def test_the_ci_override_swaps_images_only():
    """`make compose-test` runs docker-compose.yml itself: its override may change no more than
    the images (stand-ins for the official ones, built where no registry is reachable)."""
    assert set(CI_OVERRIDE) == {"services"}
    for name, service in CI_OVERRIDE["services"].items():
        assert name in SERVICES and set(service) == {"image"}, name


# The load balancer (issue 27)

HAPROXY_CONFIG = (ROOT / "deploy" / "haproxy" / "haproxy.cfg").read_text()


def haproxy_lines(keyword: str) -> list[list[str]]:
    """The configuration's lines that start with ``keyword``, split into words."""
    lines = (line.split() for line in HAPROXY_CONFIG.splitlines())
    return [words for words in lines if words[: len(keyword.split())] == keyword.split()]


def test_the_api_replicas_are_reached_through_the_balancer_only():
    lb, api = SERVICES["lb"], SERVICES["api"]
    assert lb["image"].startswith("haproxy:") and lb["ports"] == ["8000:8000"]
    assert lb["volumes"] == ["./deploy/haproxy/haproxy.cfg:/usr/local/etc/haproxy/haproxy.cfg:ro"]
    assert "ports" not in api and "container_name" not in api  # scalable
    assert api["environment"]["TRUSTED_PROXIES"] == "1"
    (template,) = haproxy_lines("server-template")
    assert template[3] == f"api:{api['environment']['PORT']}"


def test_a_draining_replica_leaves_the_rotation_before_it_stops_taking_connections():
    """The checks see /health/ready's 503 within ``inter`` + (``fall`` - 1) x ``fastinter``:
    under DRAIN_SECONDS, and docker waits for the drain and the API's graceful stop."""
    (defaults,) = haproxy_lines("default-server")
    value = {word: defaults[i + 1] for i, word in enumerate(defaults[:-1])}
    inter, fastinter = (float(value[key].removesuffix("s")) for key in ("inter", "fastinter"))
    drain = float(SERVICES["api"]["environment"]["DRAIN_SECONDS"])
    assert inter + (int(value["fall"]) - 1) * fastinter < drain
    assert ["http-check", "send", "meth", "GET", "uri", "/health/ready"] in haproxy_lines(
        "http-check send"
    )
    graceful = GRACEFUL_STOP_SECONDS
    assert float(SERVICES["api"]["stop_grace_period"].removesuffix("s")) >= drain + graceful


def replayed(method: str, path: str) -> bool:
    """Whether the configuration lets HAProxy replay this request at layer 7."""
    safe_methods = {word for line in haproxy_lines("acl replay_safe method") for word in line[3:]}
    patterns = [line[3] for line in haproxy_lines("acl replay_safe path_reg")]
    return method in safe_methods or any(re.search(pattern, path) for pattern in patterns)


def test_only_requests_that_change_nothing_are_replayed(tmp_path):
    """Every route of the app: a job, an upload, a cancel, an alias change or an importance
    (which may create an operation) replayed would be done twice; a prediction, an evaluation,
    an explanation or an infer call would not."""
    assert ["http-request", "disable-l7-retry", "unless", "replay_safe"] in haproxy_lines(
        "http-request"
    )
    settings = Settings(database_url=f"sqlite:///{tmp_path / 'db.sqlite'}")
    computations = ("predict", "evaluate", "explain", "infer")
    for rule in create_app(settings).url_map.iter_rules():
        path = re.sub(r"<(?:\w+:)?(\w+)>", r"x\1", rule.rule)
        for method in rule.methods - {"GET", "HEAD", "OPTIONS"}:
            expected = method == "POST" and path.rsplit("/", 1)[-1] in computations
            assert replayed(method, path) == expected, (method, rule.rule)
        assert replayed("GET", path)
