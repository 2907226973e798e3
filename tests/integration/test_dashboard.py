"""The dashboard and /docs in a real headless Chromium against a live stack: the jobs list, a job's
curves growing as epochs arrive, cancel from the page, data sets, the predict form and the digit
canvas; with a key and behind nginx at a sub-path; and never a request to another host."""

import json
import os
import subprocess
import textwrap
from pathlib import Path

import numpy as np
import pytest
import requests
from selenium.webdriver.common.action_chains import ActionChains
from selenium.webdriver.support import expected_conditions as EC
from selenium.webdriver.support.ui import Select

from service.datasets.samples import load_sample
from tests.factories import free_port, job_body, wait_until
from tests.integration.browser import chromium
from tests.integration.conftest import ON_EMBEDDED, ON_POSTGRES, Stack
from tests.integration.test_auth_stack import make_key
from tests.service.webhooks.receivers import Receiver

# The pages run on one backend each (what a page does is the same on both): most @ON_EMBEDDED,
# the workbench's forms @ON_POSTGRES, so that the two stacks' groups take similar times.

ROOT = Path(__file__).resolve().parents[2]
NGINX = "/usr/sbin/nginx"
SUB_PATH = "/backprop"
EPOCHS = 60
DIGITS_JOB = {
    "network": {
        "layers": [{"units": 32, "activation": "relu"}, {"units": 10, "activation": "softmax"}]
    },
    "training": {
        "epochs": EPOCHS,
        "batch_size": 4,  # a few seconds in all: long enough to watch the curve grow
        "validation_split": 0.2,
        "seed": 7,
        "optimizer": {"name": "adam", "learning_rate": 0.002},
    },
}


@pytest.fixture(scope="module")
def browser():
    with chromium() as browser:
        yield browser


@pytest.fixture
def page(browser, stack):
    """The browser, checked after each test: no request left the server, no script error."""
    yield browser
    assert browser.outside_requests(stack.base_url) == []
    assert browser.errors() == []


@pytest.fixture(scope="module")
def digits_job(stack) -> dict:
    """A digits job of a few seconds, submitted and not waited for."""
    dataset = stack.create("/v1/datasets", 201, json={"builtin": "digits"})
    return stack.create("/v1/jobs", 202, json={"dataset_id": dataset["id"], **DIGITS_JOB})


def points(browser) -> int:
    return int(browser.attribute("#loss-chart", "data-points"))


def badge(browser) -> str:
    return browser.text("h1 .status")


@ON_EMBEDDED
def test_a_job_page_draws_its_curves_as_the_epochs_arrive_and_cancels_the_job(page, stack):
    """A job without end (so that its page never opens on a finished job's replay), watched
    until its curve has grown, then cancelled from the page."""
    dataset = stack.create("/v1/datasets", 201, json={"builtin": "digits"})
    endless = {**DIGITS_JOB, "training": {**DIGITS_JOB["training"], "epochs": 100_000}}
    job = stack.create("/v1/jobs", 202, json={"dataset_id": dataset["id"], **endless})
    page.open(f"{stack.base_url}/#/jobs")
    assert page.attribute(f'#jobs tr[data-job="{job["id"]}"] progress', "max") == "100000"
    page.open(f"{stack.base_url}/#/jobs/{job['id']}")
    first = page.wait_for(lambda _: points(page), what="the first epochs on the chart")
    page.wait_for(lambda _: points(page) > first, what="more epochs on the chart")
    assert page.text("#learning-rate-chart .u-title") == "Learning rate"
    page.screenshot("job-running")
    assert badge(page) == "running"
    page.element("#cancel").click()
    page.wait_for(lambda _: badge(page) == "cancelled", 60, "the job to show cancelled")
    finished = stack.get(f"/v1/jobs/{job['id']}").json()
    assert finished["status"] == "cancelled"
    page.wait_for(lambda _: points(page) == finished["epoch"], what="every epoch it trained")
    page.screenshot("job")


@ON_EMBEDDED
def test_data_sets_and_a_preview_of_their_first_rows(page, stack, digits_job):
    page.open(f"{stack.base_url}/#/datasets")
    row = page.element(f'#datasets tr[data-dataset-id="{digits_job["dataset_id"]}"]')
    assert "1,797" in row.text and "64" in row.text and "classification" in row.text
    assert page.missing_values() == []
    row.find_element("css selector", "a").click()
    page.wait_for(
        lambda _: len(page.driver.find_elements("css selector", "#preview tbody tr")) == 20,
        what="20 preview rows",
    )
    assert page.missing_values() == []
    expected = stack.get(f"/v1/datasets/{digits_job['dataset_id']}/rows?limit=1").json()
    first_row = page.element("#preview tbody tr").text.split()
    assert first_row == [f"{value:g}" for value in expected["features"][0]] + [
        str(expected["targets"][0])
    ]


@ON_EMBEDDED
def test_a_preview_shows_each_column_in_one_format(page, stack):
    """As many decimals as the column needs, in every row: never 5.100 above 3 and 5; in exponent
    form when a value would show as 0.000."""
    body = {
        "task": "regression",
        "features": [[5.1, 3, 0.0001], [3, 0.25, 0.5], [5, 1, 2]],
        "targets": [1.5, 2, 10],
    }
    dataset = stack.create("/v1/datasets", 201, json=body)
    page.open(f"{stack.base_url}/#/datasets/{dataset['id']}")
    page.wait_for(
        lambda _: len(page.driver.find_elements("css selector", "#preview tbody tr")) == 3,
        what="3 preview rows",
    )
    rows = page.driver.find_elements("css selector", "#preview tbody tr")
    assert [row.text.split() for row in rows] == [
        ["5.1", "3.00", "1.00e-4", "1.5"],
        ["3.0", "0.25", "5.00e-1", "2.0"],
        ["5.0", "1.00", "2.00e+0", "10.0"],
    ]


@ON_EMBEDDED
def test_a_list_longer_than_a_page_shows_the_newest_hundred(page, stack):
    paging = stack.get("/v1/datasets?page_size=1").headers["X-Pagination"]
    for _ in range(max(0, 101 - json.loads(paging)["total"])):  # two pages of 100, and one
        stack.create("/v1/datasets", 201, json={"builtin": "xor"})
    newest = stack.create("/v1/datasets", 201, json={"builtin": "xor"})
    page.open(f"{stack.base_url}/#/datasets")
    page.element(f'#datasets tr[data-dataset-id="{newest["id"]}"]')
    rows = page.driver.find_elements("css selector", "#datasets tbody tr")
    ids = [int(row.get_attribute("data-dataset-id")) for row in rows]
    assert len(ids) == 100 and ids[0] == newest["id"] and ids == sorted(ids, reverse=True)


def shown_attributions(heat_map) -> list[float]:
    """The attributions a heat map canvas was drawn from."""
    return [float(value) for value in heat_map.get_attribute("data-attributions").split(",")]


@ON_EMBEDDED
def test_the_model_page_predicts_from_the_form_and_from_a_drawn_digit(page, stack, digits_job):
    job = stack.wait_for_job(digits_job["id"])
    model_id = job["model_id"]
    page.open(f"{stack.base_url}/#/models/{model_id}")
    layers = page.element("#architecture").find_elements("css selector", ".layer")
    assert [layer.text.split("\n")[0] for layer in layers] == ["64", "32", "10"]
    assert "2,080 weights" in layers[1].text
    assert page.missing_values() == []
    rows = stack.get(f"/v1/datasets/{digits_job['dataset_id']}/rows?limit=3").json()["features"]
    page.wait_for(lambda _: page.element("#rows").get_attribute("value").strip(), what="rows")
    page.element("#predict-form button").click()
    cells = page.wait_for(
        lambda driver: driver.find_elements("css selector", "#predictions td.prediction"),
        what="predictions",
    )
    answer = stack.post(f"/v1/models/{model_id}/predict", json={"instances": rows}).json()
    assert [cell.text for cell in cells] == [str(label) for label in answer["predictions"]]
    heat_maps = page.wait_for(
        lambda driver: driver.find_elements("css selector", "#why canvas.heat"), what="heat maps"
    )
    explained = stack.post(f"/v1/models/{model_id}/explain", json={"instances": rows}).json()
    assert [shown_attributions(heat) for heat in heat_maps] == [
        list(row["attributions"].values()) for row in explained["explanations"]
    ]

    canvas = page.element("#digit-canvas")
    draw = ActionChains(page.driver).move_to_element_with_offset(canvas, -40, -60).click_and_hold()
    for dx, dy in [(60, 0), (0, 50), (-60, 0), (0, 60), (60, 0)]:  # a 5, more or less
        draw.move_by_offset(dx, dy)
    draw.release().perform()
    shown = page.text("#digit-prediction")
    features = [int(value) for value in page.attribute("#digit-grid", "data-features").split(",")]
    assert len(features) == 64 and max(features) <= 16 and sum(features) > 0
    drawn = stack.post(f"/v1/models/{model_id}/predict", json={"instances": [features]}).json()
    assert shown == str(drawn["predictions"][0])
    heat = page.wait_for(
        lambda driver: driver.find_element("css selector", "#digit-heat").get_attribute(
            "data-attributions"
        ),
        what="the drawn digit's heat map",
    )
    why = stack.post(f"/v1/models/{model_id}/explain", json={"instances": [features]}).json()
    assert [float(a) for a in heat.split(",")] == list(
        why["explanations"][0]["attributions"].values()
    )
    page.screenshot("model")


@ON_EMBEDDED
def test_the_model_pages_live_panel_draws_its_traffic_and_a_drift_bar_per_feature(
    page, stack, digits_job
):
    model_id = stack.wait_for_job(digits_job["id"])["model_id"]
    x = load_sample("digits").X
    rows = x[np.random.default_rng(0).choice(len(x), 450, replace=False)].tolist()
    stack.post(f"/v1/models/{model_id}/predict", json={"instances": rows})

    def drift() -> dict:
        return stack.get(f"/v1/models/{model_id}/drift").json()["versions"][0]

    # (the module's other tests may have predicted with this model too)
    wait_until(lambda: drift()["rows"] >= 450, timeout=30, what="the log written")
    page.open(f"{stack.base_url}/#/models")  # the same URL again would not load the page anew
    page.open(f"{stack.base_url}/#/models/{model_id}")
    bars = page.wait_for(
        lambda driver: driver.find_elements("css selector", "#drift .drift-row"), what="drift"
    )
    features = drift()["features"]
    assert [bar.get_attribute("data-feature") for bar in bars] == [f["name"] for f in features]
    red = {
        bar.get_attribute("data-feature")
        for bar in bars
        if bar.get_attribute("data-level") == "drifted"
    }
    assert red == {f["name"] for f in features if f["psi"] > 0.2}
    assert f"{drift()['rows']} predictions in the last day" in page.text("#live")
    page.element("#predictions-per-hour .uplot")
    page.driver.execute_script("document.getElementById('live').scrollIntoView()")
    page.screenshot("live")
    assert page.missing_values() == []


@ON_EMBEDDED
def test_a_model_not_of_digits_and_the_lists_show_no_missing_value(page, stack):
    """An XOR model's page has no digit pad, and no page writes "null" or "undefined" in its
    place (nor in a list's, where an empty list's hint would be)."""
    dataset = stack.create("/v1/datasets", 201, json={"builtin": "xor"})
    job = stack.create("/v1/jobs", 202, json=job_body(dataset["id"], epochs=20))
    model_id = stack.wait_for_job(job["id"])["model_id"]
    page.open(f"{stack.base_url}/#/models/{model_id}")
    page.wait_for(lambda _: page.text("h1") == f"Model #{model_id}", what="the model's page")
    layers = page.element("#architecture").find_elements("css selector", ".layer")
    assert [layer.text.split("\n")[0] for layer in layers] == ["2", "4", "2"]
    page.element("#predict-form button").click()
    bars = page.wait_for(
        lambda driver: driver.find_elements("css selector", "#why .attribution"), what="bars"
    )
    assert [bar.get_attribute("data-feature") for bar in bars[:2]] == ["x0", "x1"]
    assert page.driver.find_elements("css selector", "#why .bar.positive, #why .bar.negative")
    assert page.driver.find_elements("css selector", "#digit-canvas") == []
    assert page.missing_values() == []
    assert page.text("#lineage") == "fresh weights"
    tuned = stack.create(
        "/v1/jobs",
        202,
        json={
            "dataset_id": dataset["id"],
            "network": {"init_from": model_id},
            "training": {"epochs": 0},
        },
    )
    tuned_id = stack.wait_for_job(tuned["id"])["model_id"]
    page.open(f"{stack.base_url}/#/models/{tuned_id}")
    page.wait_for(lambda _: page.text("h1") == f"Model #{tuned_id}", what="the tuned model's page")
    assert page.text("#lineage") == f"fine-tuned from #{model_id}"
    assert page.attribute("#lineage a", "href").endswith(f"#/models/{model_id}")
    page.element("#delete-model").click()
    assert f"Delete model #{tuned_id}" in confirmation(page, accept=False)
    assert stack.get(f"/v1/models/{tuned_id}").status_code == 200
    page.element("#delete-model").click()
    confirmation(page)
    page.wait_for(lambda driver: driver.current_url.endswith("#/models"), what="the models list")
    assert stack.get(f"/v1/models/{tuned_id}").status_code == 404
    for listing in ("jobs", "datasets", "models"):
        page.open(f"{stack.base_url}/#/{listing}")
        page.element(f"#{listing} tbody tr")
        assert page.missing_values() == [], listing
    page.open(f"{stack.base_url}/#/jobs/{job['id']}")
    page.wait_for(lambda _: points(page) == 20, what="the job's 20 epochs")
    assert page.missing_values() == []


@ON_EMBEDDED
def test_docs_render_every_operation_offline(page, stack):
    spec = stack.get("/openapi.json").json()
    operations = sum(
        method in ("get", "post", "put", "delete", "patch")
        for item in spec["paths"].values()
        for method in item
    )
    page.open(f"{stack.base_url}/docs")
    page.wait_for(
        lambda driver: len(driver.find_elements("css selector", ".opblock")) == operations,
        what=f"{operations} operations",
    )
    page.screenshot("docs")


# ---------------------------------------------------------------- with a key, behind nginx


def nginx_config(directory, port: int, upstream: str) -> str:
    user = "user root;" if os.geteuid() == 0 else ""
    return textwrap.dedent(
        f"""
        {user}
        daemon off;
        pid {directory}/nginx.pid;
        error_log {directory}/nginx-error.log;
        events {{}}
        http {{
            access_log {directory}/nginx-access.log;
            client_body_temp_path {directory}/body;
            proxy_temp_path {directory}/proxy;
            fastcgi_temp_path {directory}/fastcgi;
            uwsgi_temp_path {directory}/uwsgi;
            scgi_temp_path {directory}/scgi;
            server {{
                listen 127.0.0.1:{port};
                location {SUB_PATH}/ {{
                    proxy_pass {upstream}/;
                    proxy_http_version 1.1;
                    proxy_set_header Connection "";
                    proxy_set_header Host $http_host;
                    proxy_set_header X-Forwarded-For $remote_addr;
                    proxy_set_header X-Forwarded-Proto $scheme;
                    proxy_set_header X-Forwarded-Host $http_host;
                    proxy_set_header X-Forwarded-Prefix {SUB_PATH};
                }}
            }}
        }}
        """
    )


@pytest.fixture(scope="module")
def proxied(secured, tmp_path_factory):
    """The stack with AUTH=required, which trusts one proxy, behind nginx at ``SUB_PATH``;
    yields the proxy's URL of the service and a write key."""
    if not os.path.exists(NGINX):
        message = f"{NGINX} missing: apt-get install nginx-light"
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)
    stack, env = secured
    logs = tmp_path_factory.mktemp("proxied")
    key = make_key(env, "browser")
    port = free_port()
    (logs / "nginx.conf").write_text(nginx_config(logs, port, stack.base_url))
    nginx = subprocess.Popen([NGINX, "-c", str(logs / "nginx.conf"), "-p", str(logs)])
    base = f"http://127.0.0.1:{port}{SUB_PATH}"
    try:
        wait_until(
            lambda: requests.get(f"{base}/health/live", timeout=5).ok,
            30,
            "nginx",
            ignoring=(requests.ConnectionError,),
        )
        yield Stack(base, stack.logs), key
    finally:
        nginx.terminate()
        nginx.wait(timeout=30)


def test_with_a_key_behind_a_proxy_at_a_sub_path(browser, proxied):
    proxy, key = proxied
    proxy.http.headers["Authorization"] = f"Bearer {key}"
    dataset = proxy.create("/v1/datasets", 201, json={"builtin": "xor"})
    job = proxy.create("/v1/jobs", 202, json=job_body(dataset["id"], epochs=300))
    browser.forget()
    browser.open(f"{proxy.base_url}/")
    browser.element("#key-form")
    browser.element("#api-key").send_keys(key)
    browser.element("#key-form button").click()
    browser.element(f'#jobs tr[data-job="{job["id"]}"]')
    browser.open(f"{proxy.base_url}/#/jobs/{job['id']}")  # the key is kept for the tab
    browser.wait_for(lambda _: badge(browser) == "succeeded", 120, "the job to succeed")
    browser.wait_for(lambda _: points(browser) == 300, what="every epoch through the proxy")
    browser.screenshot("behind-a-proxy")
    browser.collect_logs()
    streams = [url for url in browser.requested if "/events?access_token=bpt_" in url]
    assert streams and all(url.startswith(f"{proxy.base_url}/v1/") for url in streams)
    assert browser.outside_requests(f"{proxy.base_url}/") == []
    assert browser.errors() == []


@ON_EMBEDDED
def test_a_sweep_page_draws_every_trial_and_its_leaderboard(page, stack):
    dataset = stack.create("/v1/datasets", 201, json={"builtin": "xor"})
    search = {"method": "grid", "parameters": {"training.optimizer.learning_rate": [0.01, 0.1]}}
    sweep = stack.create(
        "/v1/sweeps",
        202,
        json={**job_body(dataset["id"], epochs=30), "search": search, "metric": "train_loss"},
    )
    page.open(f"{stack.base_url}/#/sweeps/{sweep['id']}")
    page.wait_for(lambda _: badge(page) == "succeeded", 120, "the sweep to succeed")
    page.wait_for(
        lambda _: page.attribute("#sweep-chart", "data-points") == "60",
        what="both trials' 30 epochs on the chart",
    )
    board = stack.get(f"/v1/sweeps/{sweep['id']}").json()["leaderboard"]
    rows = page.driver.find_elements("css selector", "#leaderboard tbody tr")
    assert [row.get_attribute("data-trial") for row in rows] == [str(e["trial"]) for e in board]
    page.screenshot("sweep")
    assert page.accessibility_violations() == []
    page.element("#compare-trials").click()
    chart = page.element('#compare-train_loss[data-points="60"]')
    assert chart.get_attribute("data-series") == "2"
    fields = page.driver.find_elements("css selector", "#differences tbody tr")
    assert [row.get_attribute("data-field") for row in fields] == [
        "training.optimizer.learning_rate"
    ]


@ON_EMBEDDED
def test_the_api_docs_page_works_under_its_content_security_policy(page, stack):
    """Swagger UI draws every operation with the policy on: its own files, its one inline
    script by hash, and no console error (a refused script or style is one)."""
    policy = requests.get(f"{stack.base_url}/docs", timeout=10).headers["Content-Security-Policy"]
    assert "frame-ancestors 'none'" in policy and "'sha256-" in policy
    page.open(f"{stack.base_url}/docs")
    operations = stack.get("/openapi.json").json()["paths"]
    count = sum(len(set(item) & {"get", "post", "put", "delete"}) for item in operations.values())
    page.wait_for(
        lambda _: len(page.driver.find_elements("css selector", ".opblock")) == count,
        what=f"{count} operations",
    )
    assert page.errors() == []


@ON_EMBEDDED
def test_a_named_model_shows_its_contract_and_a_field_per_input(page, stack):
    """A model trained on iris.csv: its inputs by name with their training profile, a link to
    its own OpenAPI document, and a predict form of one field per input, sent as records."""
    with open(ROOT / "examples" / "data" / "iris.csv", "rb") as file:
        dataset = stack.create(
            "/v1/datasets", 201, files={"file": file}, data={"target": "species"}
        )
    network = {
        "layers": [{"units": 8, "activation": "relu"}, {"units": 3, "activation": "softmax"}]
    }
    body = {"dataset_id": dataset["id"], "network": network, "training": {"epochs": 20, "seed": 2}}
    model_id = stack.wait_for_job(stack.create("/v1/jobs", 202, json=body)["id"])["model_id"]
    page.open(f"{stack.base_url}/#/models/{model_id}")
    cells = page.wait_for(
        lambda driver: driver.find_elements("css selector", "#inputs tbody td:first-child"),
        what="the contract's inputs",
    )
    names = ["sepal_length", "sepal_width", "petal_length", "petal_width"]
    assert [cell.text for cell in cells] == names
    link = page.element("#model-openapi").get_attribute("href")
    assert requests.get(link, timeout=30).json()["openapi"] == "3.1.0"
    fields = page.driver.find_elements("css selector", ".named-inputs input")
    assert [field.get_attribute("name") for field in fields] == names
    row = [6.3, 2.9, 5.6, 1.8]
    for field, value in zip(fields, row, strict=True):
        field.clear()
        field.send_keys(str(value))
    page.element("#predict-form button").click()
    shown = page.wait_for(
        lambda driver: driver.find_elements("css selector", "#predictions td.prediction"),
        what="the prediction",
    )
    answer = stack.post(f"/v1/models/{model_id}/predict", json={"instances": [row]}).json()
    assert [cell.text for cell in shown] == answer["predictions"]
    bars = page.wait_for(
        lambda driver: driver.find_elements("css selector", "#why .attribution"), what="bars"
    )
    why = stack.post(f"/v1/models/{model_id}/explain", json={"instances": [row]}).json()
    assert {
        bar.get_attribute("data-feature"): float(bar.get_attribute("data-attribution"))
        for bar in bars
    } == why["explanations"][0]["attributions"]
    assert page.missing_values() == []
    page.screenshot("model-contract")


@ON_EMBEDDED
def test_a_model_page_shows_its_aliases_split_and_shadow(page, stack):
    dataset = stack.create("/v1/datasets", 201, json={"builtin": "iris"})
    network = {"layers": [{"units": 3, "activation": "softmax"}]}
    body = {"dataset_id": dataset["id"], "network": network, "model_name": "rollout-iris"}
    versions = [
        stack.wait_for_job(
            stack.create("/v1/jobs", 202, json={**body, "training": {"epochs": 5, "seed": seed}})[
                "id"
            ]
        )["model_id"]
        for seed in (1, 2, 3)
    ]
    split = {
        "versions": [{"version": 1, "weight": 3}, {"version": 2, "weight": 1}],
        "shadow": {"version": 3, "sample": 1.0},
    }
    moved = stack.http.put(f"{stack.base_url}/v1/models/rollout-iris/aliases/canary", json=split)
    assert moved.status_code == 200, moved.text
    stack.post("/v1/models/rollout-iris@canary/predict", json={"instances": [[5.9, 3.0, 5.1, 1.8]]})
    page.open(f"{stack.base_url}/#/models/{versions[0]}")
    row = page.element("#aliases tbody tr[data-alias='canary']")
    assert row.find_element("css selector", ".split").text.startswith("v1: 75.0%")
    assert "v2: 25.0%" in row.find_element("css selector", ".split").text
    assert row.find_element("css selector", ".shadow").text.startswith("v3 (100.0% of requests)")
    assert page.missing_values() == []

    # A split set from the page is the API's: v1 at 1, v2 at 3, v3 as a shadow of half.
    type_into(page, "alias", "beta")
    type_into(page, "versions[0].weight", "1")
    page.element("#add-version").click()
    type_into(page, "versions[1].version", "2")
    type_into(page, "versions[1].weight", "3")
    type_into(page, "shadow.version", "3")
    type_into(page, "shadow.sample", "0.5")
    page.element("#set-alias").click()
    assert "rollout-iris@beta" in confirmation(page)
    shown = page.element("#alias-set tbody tr[data-alias='beta'] .split").text
    beta = stack.get("/v1/models/rollout-iris/aliases/beta").json()
    assert [(arm["version"], arm["weight"]) for arm in beta["versions"]] == [(2, 3), (1, 1)]
    assert beta["shadow"]["version"] == 3 and beta["shadow"]["sample"] == 0.5
    assert shown == "v2: 75.0%, 0 · v1: 25.0%, 0"

    # The promotion gate on held-out rows, its figures shown.
    held_out = stack.create("/v1/datasets", 201, json={"builtin": "iris"})
    type_into(page, "dataset_id", str(held_out["id"]))
    page.driver.find_elements("css selector", '#gate-form [data-path="alias"] input')[0].send_keys(
        "gated"
    )
    choose(page, "require.metric", "accuracy")
    type_into(page, "require.min", "0")
    page.element("#run-gate").click()
    confirmation(page)
    accuracy = page.element('#gate-figures tr[data-figure="accuracy"] td').text
    evaluated = stack.post(
        f"/v1/models/{versions[0]}/evaluate", json={"dataset_id": held_out["id"]}
    ).json()
    assert float(accuracy) == pytest.approx(evaluated["accuracy"], abs=5e-5)
    assert stack.get("/v1/models/rollout-iris/aliases/gated").json()["version"] == 1
    page.screenshot("model-rollout")
    assert page.accessibility_violations() == []  # with the alias set and the gate's figures


@ON_EMBEDDED
def test_a_model_page_shows_the_last_webhook_deliveries_about_it(page, stack):
    with Receiver() as receiver:
        hook = stack.create(
            "/v1/webhooks",
            201,
            json={"url": receiver.url, "events": ["model.version.created", "job.finished"]},
        )
        dataset = stack.create("/v1/datasets", 201, json={"builtin": "xor"})
        body = {**job_body(dataset["id"], epochs=5), "model_name": "watched"}
        model_id = stack.wait_for_job(stack.create("/v1/jobs", 202, json=body)["id"])["model_id"]

        def both_sent():
            deliveries = stack.get(f"/v1/webhooks/{hook['id']}/deliveries").json()
            mine = [d for d in deliveries if d["data"].get("model_id") == model_id]
            return len(mine) == 2 and all(d["status"] == "succeeded" for d in mine)

        wait_until(both_sent, 60, "the two deliveries about the model")
        page.open(f"{stack.base_url}/#/models/{model_id}")
        rows = page.wait_for(
            lambda driver: driver.find_elements("css selector", "#webhook-deliveries tbody tr"),
            what="the webhook deliveries",
        )
        cells = [[cell.text for cell in row.find_elements("css selector", "td")] for row in rows]
        assert sorted(row[0] for row in cells) == ["job.finished", "model.version.created"]
        assert {(row[1], row[2], row[3], row[4]) for row in cells} == {
            (receiver.url, "succeeded", "1", "200")
        }
        assert page.missing_values() == []
        page.screenshot("model-webhooks")
    assert stack.http.delete(f"{stack.base_url}/v1/webhooks/{hook['id']}").status_code == 204


# ---------------------------------------------------------------- the workbench's forms


def form_field(browser, path: str):
    return browser.element(f'[data-path="{path}"] input, [data-path="{path}"] select')


def field_error(browser, path: str) -> str:
    element = browser.element(f'[data-path="{path}"] .field-error')
    return element.get_attribute("textContent")


def type_into(browser, path: str, text: str) -> None:
    control = form_field(browser, path)
    control.clear()
    control.send_keys(text)


def choose(browser, path: str, value: str) -> None:
    Select(form_field(browser, path)).select_by_value(value)


def confirmation(browser, accept: bool = True) -> str:
    """The text of the confirmation a destructive action asks for, answered."""
    alert = browser.wait_for(lambda driver: EC.alert_is_present()(driver), what="a confirmation")
    text = alert.text
    alert.accept() if accept else alert.dismiss()
    return text


def spec_of(job: dict) -> str:
    return json.dumps({"network": job["network"], "training": job["training"]}, sort_keys=True)


@ON_POSTGRES
def test_the_train_form_shows_the_apis_errors_trains_and_trains_again(page, stack):
    """The API's own messages under the fields they name as the person types (a 422 of the
    schema and a spec error of the report), the resolved defaults in grey, then a job, and "train
    again" submitting that job's spec byte for byte."""
    dataset = stack.create("/v1/datasets", 201, json={"builtin": "iris"})
    page.open(f"{stack.base_url}/#/datasets/{dataset['id']}")
    page.element("#train-link").click()
    page.wait_for(
        lambda _: page.text('[data-path="training.epochs"] .resolved') == "default: 100",
        what="the resolved default epochs in grey",
    )
    network = {
        "layers": [{"units": 16, "activation": "relu"}, {"units": 3, "activation": "softmax"}]
    }
    type_into(page, "training.epochs", "-1")
    report = stack.post(
        "/v1/jobs/validate",
        json={"dataset_id": dataset["id"], "network": network, "training": {"epochs": -1}},
    ).json()
    page.wait_for(
        lambda _: field_error(page, "training.epochs") == report["errors"]["training.epochs"][0],
        what="the report's error under epochs",
    )
    type_into(page, "model_name", "not a name!")
    refused = stack.post(
        "/v1/jobs/validate",
        json={"dataset_id": dataset["id"], "network": network, "model_name": "not a name!"},
    )
    assert refused.status_code == 422
    page.wait_for(
        lambda _: (
            field_error(page, "model_name")
            == " ".join(refused.json()["error"]["details"]["model_name"])
        ),
        what="the 422's message under model_name",
    )
    assert form_field(page, "model_name").get_attribute("aria-invalid") == "true"
    assert page.accessibility_violations() == []  # with errors shown
    type_into(page, "model_name", "form-iris")
    type_into(page, "training.epochs", "8")
    type_into(page, "training.seed", "5")
    type_into(page, "training.validation_split", "0.2")
    type_into(page, "network.layers[0].dropout", "0.1")
    choose(page, "training.optimizer.name", "adam")
    type_into(page, "training.optimizer.learning_rate", "0.02")
    choose(page, "training.schedule.name", "step")
    type_into(page, "training.schedule.step_size", "3")
    page.element("#early-stopping").click()
    type_into(page, "training.early_stopping.patience", "4")
    page.wait_for(
        lambda _: page.text('[data-path="training.optimizer.beta1"] .resolved') == "default: 0.9",
        what="adam's defaults once the form is valid",
    )
    assert page.driver.find_elements("css selector", ".field-error:not(:empty)") == []
    page.driver.execute_script("window.scrollTo(0, 0)")
    page.screenshot("train-form")
    page.element("#train").click()
    page.wait_for(lambda driver: "#/jobs/" in driver.current_url, what="the job's page")
    job_id = int(page.driver.current_url.rsplit("/", 1)[1])
    job = stack.wait_for_job(job_id)
    assert job["model_name"] == "form-iris" and job["training"]["seed"] == 5
    assert job["training"]["optimizer"]["learning_rate"] == 0.02
    assert job["training"]["schedule"] == {"name": "step", "step_size": 3, "gamma": 0.1}
    assert job["training"]["early_stopping"]["patience"] == 4
    assert job["network"]["layers"][0]["dropout"] == 0.1

    page.click("#train-again")  # the job's page redraws as the job ends
    page.wait_for(
        lambda _: form_field(page, "training.seed").get_attribute("value") == "5",
        what="the form filled from the job",
    )
    page.element("#train").click()
    page.wait_for(
        lambda driver: (
            "#/jobs/" in driver.current_url and not driver.current_url.endswith(f"#/jobs/{job_id}")
        ),
        what="the second job's page",
    )
    again = stack.wait_for_job(int(page.driver.current_url.rsplit("/", 1)[1]))
    assert again["id"] != job_id
    assert spec_of(again) == spec_of(job)
    assert again["model_name"] == "form-iris"


@ON_POSTGRES
def test_a_csv_uploaded_through_the_page_lands_as_the_api_would_store_it(page, stack):
    """The file's first rows read in the browser, a role per column, the API's 422 under the
    field it names, then the data set the API stores from the same file and fields."""
    iris = ROOT / "examples" / "data" / "iris.csv"
    page.open(f"{stack.base_url}/#/datasets")
    page.element("#upload-link").click()
    page.element("#upload-file").send_keys(str(iris))
    page.wait_for(
        lambda driver: len(driver.find_elements("css selector", "#upload-preview tbody tr")) == 6,
        what="the roles and the first 5 rows",
    )
    assert page.text("#upload-preview tbody tr:nth-child(2)") == "5.1 3.5 1.4 0.2 setosa"
    assert form_field(page, "target").get_attribute("value") == "species"
    Select(page.element("#role-4")).select_by_value("feature")
    page.element("#upload").click()
    refused = stack.post("/v1/datasets", files={"file": iris.read_bytes()})
    page.wait_for(
        lambda _: field_error(page, "target") == refused.json()["error"]["details"]["target"][0],
        what="the 422's message under target",
    )
    Select(page.element("#role-4")).select_by_value("target")
    Select(page.element("#role-0")).select_by_value("drop")
    type_into(page, "name", "iris-from-the-page")
    page.screenshot("upload")
    assert page.accessibility_violations() == []  # with the preview and its role selects
    page.element("#upload").click()
    page.wait_for(
        lambda driver: driver.current_url.rsplit("/", 1)[1].isdigit(), what="the data set's page"
    )
    shown_id = int(page.driver.current_url.rsplit("/", 1)[1])
    fields = {"target": "species", "drop": "sepal_length", "name": "iris-from-the-page"}
    created = stack.create("/v1/datasets", 201, files={"file": iris.read_bytes()}, data=fields)
    expected = stack.get(f"/v1/datasets/{created['id']}").json()
    shown = stack.get(f"/v1/datasets/{shown_id}").json()
    different = {"id", "created_at"}
    assert {k: v for k, v in shown.items() if k not in different} == {
        k: v for k, v in expected.items() if k not in different
    }
    assert (
        stack.get(f"/v1/datasets/{shown_id}/rows?limit=150").json()
        == stack.get(f"/v1/datasets/{expected['id']}/rows?limit=150").json()
    )


@ON_POSTGRES
def test_three_jobs_ticked_in_the_list_compare_as_three_curves_and_their_differences(page, stack):
    dataset = stack.create("/v1/datasets", 201, json={"builtin": "iris"})
    network = {"layers": [{"units": 3, "activation": "softmax"}]}
    trainings = [
        {"epochs": 10, "seed": 1, "validation_split": 0.2, "optimizer": {"learning_rate": rate}}
        | ({"batch_size": 16} if i == 2 else {})
        for i, rate in enumerate([0.05, 0.1, 0.1])
    ]
    ids = [
        stack.create(
            "/v1/jobs", 202, json={"dataset_id": dataset["id"], "network": network, "training": t}
        )["id"]
        for t in trainings
    ]
    jobs = [stack.wait_for_job(job_id) for job_id in ids]
    page.open(f"{stack.base_url}/#/jobs")
    for job_id in ids:
        page.click(f'input[data-compare="{job_id}"]')
    page.click("#compare-link")
    page.wait_for(
        lambda driver: driver.current_url.endswith(f"#/compare/{','.join(map(str, ids))}"),
        what="the selection in the URL",
    )
    for figure in ("train_loss", "val_loss", "train_accuracy", "val_accuracy", "learning_rate"):
        chart = page.element(f"#compare-{figure}[data-series]")
        assert chart.get_attribute("data-series") == "3", figure
        assert chart.get_attribute("data-points") == "30", figure
    rows = page.driver.find_elements("css selector", "#differences tbody tr")
    assert [row.get_attribute("data-field") for row in rows] == [
        "training.batch_size",
        "training.optimizer.learning_rate",
    ]
    assert rows[1].text.split() == [
        "training.optimizer.learning_rate",
        "0.05",
        "0.1",
        "0.1",
    ]
    final = page.element('#final-figures tr[data-figure="val_loss"]').text.split()[2:]
    assert final == [f"{job['val_loss']:.4f}" for job in jobs]
    assert page.missing_values() == []
    page.screenshot("compare")
    assert page.accessibility_violations() == []


def test_an_admin_key_makes_a_key_shown_once_and_revokes_it(browser, secured):
    """The Keys page with an admin key (AUTH=required): a key made, shown once and copied, that
    works; then revoked after a confirmation, and refused."""
    stack, env = secured
    admin = make_key(env, "keys-page", "admin")
    browser.forget()
    browser.open(f"{stack.base_url}/#/keys")
    browser.element("#api-key").send_keys(admin)
    browser.element("#key-form button").click()
    browser.wait_for(
        lambda driver: driver.find_element("id", "nav-keys").is_displayed(), what="Keys"
    )
    type_into(browser, "description", "made on the page")
    Select(form_field(browser, "scope")).select_by_value("read")
    browser.element("#create-key").click()
    key = browser.element("#new-key").get_attribute("value")
    browser.element("#copy-key").click()
    browser.wait_for(
        lambda _: browser.text("#new-key-box [role=status]"), what="copied or selected"
    )
    headers = {"Authorization": f"Bearer {key}"}
    assert requests.get(f"{stack.base_url}/v1/jobs", headers=headers, timeout=30).ok
    made = next(k for k in stack_keys(stack, admin) if k["description"] == "made on the page")
    assert made["scope"] == "read" and made["revoked_at"] is None
    browser.screenshot("keys")
    assert browser.accessibility_violations() == []
    browser.element(f'button[data-revoke="{made["id"]}"]').click()
    assert f"Revoke key #{made['id']}" in confirmation(browser)
    browser.wait_for(
        lambda _: browser.text(f'#keys tr[data-key="{made["id"]}"] .revoked').startswith("revoked"),
        what="the key shown revoked",
    )
    assert requests.get(f"{stack.base_url}/v1/jobs", headers=headers, timeout=30).status_code == 401
    assert browser.outside_requests(f"{stack.base_url}/") == []
    assert browser.errors() == []


def stack_keys(stack: Stack, key: str) -> list[dict]:
    answer = requests.get(
        f"{stack.base_url}/v1/keys", headers={"Authorization": f"Bearer {key}"}, timeout=30
    )
    return answer.json()


@ON_POSTGRES
def test_the_train_form_starts_a_sweep_over_the_fields_searched(page, stack):
    dataset = stack.create("/v1/datasets", 201, json={"builtin": "iris"})
    page.open(f"{stack.base_url}/#/datasets/{dataset['id']}/train")
    page.element("#search-toggle").click()
    type_into(page, "training.epochs", "4")
    type_into(page, "training.seed", "1")
    type_into(page, "training.validation_split", "0.2")
    page.element('[data-path="training.optimizer.learning_rate"] .vary').click()
    page.element('[data-path="training.optimizer.learning_rate"] .search-values input').send_keys(
        "0.01, 0.1"
    )
    page.element('[data-path="network.layers[0].units"] .vary').click()
    page.element('[data-path="network.layers[0].units"] .search-values input').send_keys("4, 8")
    type_into(page, "max_parallel", "2")
    page.element("#asha").click()
    type_into(page, "early_termination.min_epochs", "2")
    page.screenshot("sweep-form")
    assert page.accessibility_violations() == []
    page.element("#train").click()
    page.wait_for(lambda driver: "#/sweeps/" in driver.current_url, what="the sweep's page")
    sweep = stack.get(f"/v1/sweeps/{page.driver.current_url.rsplit('/', 1)[1]}").json()
    assert sweep["search"]["method"] == "grid" and sweep["max_parallel"] == 2
    assert sweep["search"]["parameters"] == {
        "training.optimizer.learning_rate": [0.01, 0.1],
        "network.layers[0].units": [4, 8],
    }
    assert sweep["early_termination"] == {"method": "asha", "min_epochs": 2, "reduction_factor": 3}
    assert sweep["n_trials"] == 4


@ON_EMBEDDED
def test_every_page_passes_axe_for_wcag_21_aa(page, stack, digits_job):
    """axe-core finds no violation of WCAG 2.1 A and AA on any page, once its data is shown.
    The forms are checked where their tests fill them (the train form with errors shown, the
    upload form with a preview, the sweep form, the alias and gate forms with their answers, the
    comparison, the sweep page, the keys page on the stack with keys)."""
    job = stack.wait_for_job(digits_job["id"])
    dataset_id, model_id = job["dataset_id"], job["model_id"]
    pages = {
        "#/jobs": f'#jobs tr[data-job="{job["id"]}"]',
        f"#/jobs/{job['id']}": f'#loss-chart[data-points="{EPOCHS}"]',
        "#/datasets": "#datasets tbody tr",
        f"#/datasets/{dataset_id}": "#preview tbody tr",
        f"#/datasets/{dataset_id}/train/from/{job['id']}": "#train-form .resolved:not(:empty)",
        "#/models": "#models tbody tr",
        f"#/models/{model_id}": "#manage",
        "#/sweeps": "#sweeps",
    }
    page.open(f"{stack.base_url}/#/jobs")
    found = {}
    for address, shown in pages.items():  # one document: axe is put in it once
        page.driver.execute_script("location.hash = arguments[0]", address)
        page.element(shown)
        found[address] = page.accessibility_violations()
    failing = {address: v for address, v in found.items() if v}
    assert not failing, json.dumps(failing, indent=1)
