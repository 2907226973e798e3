"""The docker-compose stack, up for real (issue 14): `python -m tests.compose.stack`.

tests/compose/run.sh builds the images, sets COMPOSE_FILE and COMPOSE_PROJECT_NAME, runs this
and takes the stack down afterwards, whatever happened. Not a pytest module: `make test` needs no
Docker. Every step prints what it does; the first check that fails ends the run with a message
and exit status 1.

Against the API published on 127.0.0.1:8000 by the balancer, with AUTH=required:
- every health check passes, after the migration has exited 0;
- no key is a 401, /metrics takes METRICS_TOKEN, Flower wants FLOWER_BASIC_AUTH;
- a key from `backprop keys create` in a container; the digits uploaded, trained, followed over
  the event stream, and predicted with accuracy >= 0.95 on rows the network never saw;
- two workers: four jobs, both workers train;
- a worker container killed mid-job: the job finishes on the other, resumed from its checkpoint;
- the redis container restarted mid-job: the job finishes;
- three API replicas behind the balancer (`lb`, HAProxy): predictions at a steady rate from
  keep-alive sessions while one replica is killed (`docker kill`) and another stopped (`docker
  stop`, it drains) and started again: not one fails, each is the model's answer.
"""

import gzip
import json
import os
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from importlib.resources import files

import numpy as np
import requests
from backprop_client import ApiError, Client

from tests.factories import DIGITS_NETWORK, DIGITS_TRAINING, wait_until

API_URL = "http://127.0.0.1:8000"
FLOWER_URL = "http://127.0.0.1:5555"
TENANT = "compose-ci"
# Long jobs for the faults, checkpointed often: batches of 8 take ~25 ms an epoch on 2 cores.
LONG_TRAINING = {
    "batch_size": 8,
    "seed": 7,
    "optimizer": {"name": "adam", "learning_rate": 0.001},
    "checkpoint_every_epochs": 20,
}
# The balancer's check (issue 27): predictions at a steady rate from keep-alive sessions.
BALANCED_PREDICTIONS, BALANCED_RATE, BALANCED_CLIENTS = 600, 30.0, 4
# Health checks run every 5 to 30 s (docker-compose.yml); a first start also migrates.
HEALTHY_TIMEOUT = 240
JOB_TIMEOUT = 300


class StackError(Exception):
    """A check failed; the message says which and what was seen."""


def step(message: str) -> None:
    print(f"== {message} ({time.strftime('%H:%M:%S')})", flush=True)


def check(condition: bool, message: str) -> None:
    if not condition:
        raise StackError(message)


def run(*command: str) -> str:
    """The command's stdout; its stderr passes through, and a failure ends the run."""
    result = subprocess.run(command, stdout=subprocess.PIPE, text=True)
    if result.returncode:
        raise StackError(f"{' '.join(command)} exited {result.returncode}")
    return result.stdout


def compose(*args: str) -> str:
    return run("docker-compose", *args)


# Containers


def containers(service: str) -> list[str]:
    """The ids of the service's containers, running or not (by docker's labels: `docker ps`
    answers in milliseconds, `docker-compose ps` in a second or more on a busy machine)."""
    labels = {
        "com.docker.compose.project": os.environ["COMPOSE_PROJECT_NAME"],
        "com.docker.compose.service": service,
    }
    filters = [f"--filter=label={key}={value}" for key, value in labels.items()]
    return run("docker", "ps", "--all", "--quiet", "--no-trunc", *filters).split()


def state(container: str) -> dict:
    return json.loads(run("docker", "inspect", "--format", "{{json .State}}", container))


def logs(container: str) -> str:
    result = subprocess.run(["docker", "logs", container], capture_output=True, text=True)
    return result.stdout + result.stderr


def is_ready(container: str) -> bool:
    """Healthy where the service has a health check, else running."""
    current = state(container)
    if "Health" in current:
        return current["Health"]["Status"] == "healthy"
    return current["Status"] == "running"


def migration_done() -> bool:
    """True once `backprop db upgrade` exited 0; a failure ends the run with its log."""
    (container,) = containers("migrate")
    current = state(container)
    if current["Status"] != "exited":
        return False
    if current["ExitCode"] != 0:
        raise StackError(f"migrate exited {current['ExitCode']}:\n{logs(container)[-3000:]}")
    return True


def wait_for_health(services: list[str]) -> None:
    step(f"waiting for the health checks of {', '.join(services)}")
    wait_until(migration_done, HEALTHY_TIMEOUT, "the migration to exit 0")
    for service in services:
        for container in containers(service):
            wait_until(lambda c=container: is_ready(c), HEALTHY_TIMEOUT, f"{service} healthy")
        print(f"   {service}: {len(containers(service))} ready", flush=True)


def psql(sql: str) -> list[list[str]]:
    """Rows of a query run by psql in the postgres container, as lists of strings."""
    (container,) = containers("postgres")
    out = run(
        "docker",
        "exec",
        container,
        "psql",
        "-U",
        "backprop",
        "-d",
        "backprop",
        "-tA",
        "-F",
        ",",
        "-c",
        sql,
    )
    return [line.split(",") for line in out.splitlines() if line]


def worker_of(job_id: int) -> str:
    """The worker container holding the job's lease (its hostname is the container id)."""
    ((owner,),) = psql(f"SELECT lease_owner FROM training_jobs WHERE id = {job_id}")
    hostname = owner.split(":")[0]
    (container,) = [c for c in containers("worker") if c.startswith(hostname)]
    return container


def trained_by(container: str, job_ids: list[int]) -> list[int]:
    text = logs(container)
    return [job_id for job_id in job_ids if f"job {job_id} succeeded" in text]


# The checks


def digits_split() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """The service's own digits sample, 3/4 to train on and 1/4 held out."""
    with gzip.open(files("service.datasets.samples") / "digits.csv.gz", "rt") as text:
        table = np.loadtxt(text, delimiter=",", skiprows=1)
    x, y = table[:, :-1], table[:, -1].astype(int)
    order = np.random.default_rng(0).permutation(len(y))
    held_out, kept = order[: len(y) // 4], order[len(y) // 4 :]
    return x[kept], y[kept], x[held_out], y[held_out]


def status_of(url: str, **kwargs) -> int:
    return requests.get(url, timeout=30, **kwargs).status_code


def settings_reach_the_containers() -> None:
    """AUTH=required, METRICS_TOKEN and FLOWER_BASIC_AUTH, from the compose file and the
    environment, are what the containers run with."""
    step("no key: 401; /metrics with METRICS_TOKEN; Flower behind FLOWER_BASIC_AUTH")
    try:
        Client(API_URL).datasets()
        raise StackError("GET /v1/datasets without a key answered 200")
    except ApiError as error:
        check(error.status == 401, f"GET /v1/datasets without a key: {error}")
    token = {"Authorization": f"Bearer {os.environ['METRICS_TOKEN']}"}
    check(status_of(f"{API_URL}/metrics", headers=token) == 200, "/metrics refused its token")
    login = tuple(os.environ["FLOWER_BASIC_AUTH"].split(":", 1))
    check(status_of(f"{FLOWER_URL}/workers") == 401, "Flower answered without a login")
    check(status_of(f"{FLOWER_URL}/workers", auth=login) == 200, "Flower refused its login")


def make_key() -> str:
    step("a key: docker-compose run --rm api backprop keys create")
    out = compose(
        "run",
        "--rm",
        "--no-deps",
        "-T",
        "api",
        "backprop",
        "keys",
        "create",
        "--tenant",
        TENANT,
        "--scope",
        "admin",
        "--description",
        "compose test",
    )
    return out.strip().splitlines()[-1]


def train_and_predict(client: Client) -> tuple[int, int]:
    """Upload, train, follow, predict; the ids of the uploaded data set and of the model."""
    x_train, y_train, x_test, y_test = digits_split()
    step(f"uploading {len(y_train)} rows of digits")
    dataset = client.upload_dataset(
        features=x_train.tolist(),
        targets=y_train.tolist(),
        task="classification",
        name="digits-train",
    )
    job = client.submit_job(dataset["id"], DIGITS_NETWORK, DIGITS_TRAINING)
    step(f"job {job['id']}: following its event stream")
    epochs, status = [], None
    for event in client.follow(job["id"]):
        if event.type == "epoch":
            epochs.append(event.data["epoch"])
        else:
            status = event.data["status"]
    check(status == "succeeded", f"job {job['id']} ended {status}: {client.job(job['id'])}")
    check(epochs == list(range(1, 31)), f"the stream gave epochs {epochs}")
    model_id = client.job(job["id"])["model_id"]
    predicted = np.array(client.predict(model_id, x_test.tolist())["predictions"])
    accuracy = float(np.mean(predicted == y_test))
    print(f"   30 epochs streamed; accuracy {accuracy:.4f} on {len(y_test)} held-out rows")
    check(accuracy >= 0.95, f"accuracy {accuracy:.4f} < 0.95")
    return dataset["id"], model_id


def submit_long(client: Client, dataset_id: int, epochs: int) -> int:
    return client.submit_job(dataset_id, DIGITS_NETWORK, {**LONG_TRAINING, "epochs": epochs})["id"]


def assert_succeeded(client: Client, job_id: int, epochs: int) -> dict:
    job = client.wait(job_id, timeout=JOB_TIMEOUT)
    check(job["status"] == "succeeded", f"job {job_id}: {job}")
    seen = [record["epoch"] for record in client.epochs(job_id)]
    check(seen == list(range(1, epochs + 1)), f"job {job_id}: epochs {seen[:5]}... not 1..N once")
    return job


def two_workers_share_four_jobs(client: Client, dataset_id: int) -> None:
    step("docker-compose up --scale worker=2")
    compose("up", "-d", "--no-build", "--no-recreate", "--scale", "worker=2")
    wait_for_health(["worker"])
    job_ids = [submit_long(client, dataset_id, epochs=150) for _ in range(4)]
    step(f"four jobs {job_ids} on two workers")
    for job_id in job_ids:
        assert_succeeded(client, job_id, 150)
    shares = {c[:12]: trained_by(c, job_ids) for c in containers("worker")}
    print(f"   jobs trained by each worker: {shares}", flush=True)
    check(all(shares.values()), f"a worker trained none of the jobs: {shares}")
    check(sorted(sum(shares.values(), [])) == job_ids, f"not each job once: {shares}")


def killed_worker_resumes_elsewhere(client: Client, dataset_id: int) -> None:
    job_id = submit_long(client, dataset_id, epochs=1200)
    step(f"job {job_id}: waiting for epoch 60 (checkpoints every 20)")
    wait_until(lambda: client.job(job_id)["epoch"] >= 60, JOB_TIMEOUT, f"job {job_id} training")
    victim = worker_of(job_id)
    kept = psql(
        f"SELECT epoch, id FROM epoch_metrics WHERE job_id = {job_id} AND epoch <= "
        f"(SELECT checkpoint_epoch FROM training_jobs WHERE id = {job_id}) ORDER BY epoch"
    )
    step(f"docker kill {victim[:12]} (job {job_id} checkpointed at epoch {len(kept)})")
    run("docker", "kill", victim)
    job = assert_succeeded(client, job_id, 1200)
    check(job["attempt"] == 2, f"job {job_id} took {job['attempt']} attempts, not 2")
    (survivor,) = [c for c in containers("worker") if c != victim]
    check(trained_by(survivor, [job_id]) == [job_id], f"job {job_id} did not end on the other")
    after = psql(
        f"SELECT epoch, id FROM epoch_metrics WHERE job_id = {job_id} "
        f"AND epoch <= {len(kept)} ORDER BY epoch"
    )
    check(after == kept, f"epochs 1..{len(kept)} were written again: not resumed")
    print(
        f"   finished on {survivor[:12]} (attempt 2), epochs 1-{len(kept)} kept from the "
        "first attempt",
        flush=True,
    )


def redis_restart_under_a_job(client: Client, dataset_id: int) -> None:
    job_id = submit_long(client, dataset_id, epochs=300)
    wait_until(lambda: client.job(job_id)["epoch"] >= 20, JOB_TIMEOUT, f"job {job_id} training")
    step(f"docker-compose restart redis (job {job_id} at epoch {client.job(job_id)['epoch']})")
    compose("restart", "redis")
    assert_succeeded(client, job_id, 300)
    print(f"   job {job_id} succeeded", flush=True)


def predictions_at_a_steady_rate(
    url: str, key: str, rows: list, started: float, numbers: range, results: dict
) -> None:
    """Predictions ``numbers`` over one keep-alive session, each at its time of the rate:
    ``results[number]`` is what was predicted, or what went wrong."""
    with requests.Session() as http:
        http.headers["Authorization"] = f"Bearer {key}"
        for number in numbers:
            time.sleep(max(0.0, started + number / BALANCED_RATE - time.monotonic()))
            try:
                response = http.post(url, json={"instances": rows}, timeout=30)
            except requests.RequestException as error:
                results[number] = repr(error)
                continue
            ok = response.status_code == 200
            results[number] = (
                response.json()["predictions"] if ok else f"{response.status_code} {response.text}"
            )


def served_a_listing(container: str) -> bool:
    return "GET /v1/datasets 200" in logs(container)


def replicas_behind_the_balancer_lose_no_request(client: Client, key: str, model_id: int) -> None:
    step("docker-compose up --scale api=3: three API replicas behind lb")
    compose("up", "-d", "--no-build", "--no-recreate", "--scale", "api=3", "--scale", "worker=2")
    wait_for_health(["api"])
    apis = containers("api")
    check(len(apis) == 3, f"{len(apis)} api containers, not 3")
    wait_until(
        lambda: client.datasets() is not None and all(map(served_a_listing, apis)),
        HEALTHY_TIMEOUT,
        "every replica in the balancer's rotation",
    )
    rows = digits_split()[2][:8].tolist()
    expected = client.predict(model_id, rows)["predictions"]
    url = f"{API_URL}/v1/models/{model_id}/predict"
    results: dict[int, object] = {}
    step(f"{BALANCED_PREDICTIONS} predictions at {BALANCED_RATE:.0f}/s through lb")
    started = time.monotonic()
    with ThreadPoolExecutor(BALANCED_CLIENTS) as pool:
        sent = [
            pool.submit(
                predictions_at_a_steady_rate,
                url,
                key,
                rows,
                started,
                range(n, BALANCED_PREDICTIONS, BALANCED_CLIENTS),
                results,
            )
            for n in range(BALANCED_CLIENTS)
        ]
        wait_until(lambda: len(results) >= BALANCED_PREDICTIONS // 4, JOB_TIMEOUT, "a quarter")
        step(f"docker kill {apis[0][:12]} under load")
        run("docker", "kill", apis[0])
        wait_until(lambda: len(results) >= BALANCED_PREDICTIONS // 2, JOB_TIMEOUT, "a half")
        step(f"docker stop {apis[1][:12]} under load (it drains), then docker start")
        run("docker", "stop", apis[1])
        run("docker", "start", apis[1])
        for future in sent:
            future.result()
    failed = {number: result for number, result in results.items() if result != expected}
    check(len(results) == BALANCED_PREDICTIONS, f"{len(results)} predictions answered")
    check(not failed, f"{len(failed)} predictions failed or differed: {list(failed.items())[:5]}")
    print(f"   {BALANCED_PREDICTIONS} predictions, none lost, each the model's", flush=True)


def main() -> int:
    try:
        step("docker-compose up -d --no-build")
        compose("down", "-v", "--remove-orphans")
        compose("up", "-d", "--no-build")
        wait_for_health(
            ["postgres", "redis", "api", "lb", "worker", "webhook-worker", "dispatcher", "flower"]
        )
        settings_reach_the_containers()
        key = make_key()
        client = Client(API_URL, api_key=key, timeout=30)
        dataset_id, model_id = train_and_predict(client)
        two_workers_share_four_jobs(client, dataset_id)
        killed_worker_resumes_elsewhere(client, dataset_id)
        redis_restart_under_a_job(client, dataset_id)
        replicas_behind_the_balancer_lose_no_request(client, key, model_id)
    except (StackError, AssertionError) as error:  # AssertionError: wait_until timed out
        subprocess.run(["docker-compose", "logs", "--no-color", "--tail", "40"])
        print(f"FAILED: {error}", file=sys.stderr, flush=True)
        return 1
    step("every check passed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
