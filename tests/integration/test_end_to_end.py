"""The whole service over HTTP, with real worker processes, on both backends."""

import concurrent.futures
import io
import re

import numpy as np

from tests.factories import DIGITS_NETWORK, DIGITS_TRAINING, job_body

IRIS_TRAINING = {"epochs": 100, "seed": 3, "optimizer": {"name": "adam", "learning_rate": 0.01}}


def test_xor_end_to_end(stack):
    dataset = stack.create("/v1/datasets", 201, json={"builtin": "xor"})
    job = stack.create("/v1/jobs", 202, json=job_body(dataset["id"], epochs=500))
    job = stack.wait_for_job(job["id"])
    assert job["status"] == "succeeded", job
    rows = [[0, 0], [0, 1], [1, 0], [1, 1]]
    prediction = stack.create(
        f"/v1/models/{job['model_id']}/predict", 200, json={"instances": rows}
    )
    assert prediction["predictions"] == [0, 1, 1, 0]


def test_digits_reach_97_percent_on_450_held_out_rows(stack):
    # scikit-learn imported here, not at the top: collecting this module in a live worker that
    # runs none of its tests costs nothing (docs/testing.md, "A slower machine").
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    digits = load_digits()
    x_train, x_test, y_train, y_test = train_test_split(
        digits.data, digits.target, test_size=0.25, random_state=42
    )
    upload = {
        "name": "digits-train",
        "task": "classification",
        "features": x_train.tolist(),
        "targets": y_train.tolist(),
    }
    dataset = stack.create("/v1/datasets", 201, json=upload)
    body = {"dataset_id": dataset["id"], "network": DIGITS_NETWORK, "training": DIGITS_TRAINING}
    job = stack.wait_for_job(stack.create("/v1/jobs", 202, json=body)["id"])
    assert job["status"] == "succeeded", job
    predicted = stack.create(
        f"/v1/models/{job['model_id']}/predict", 200, json={"instances": x_test.tolist()}
    )["predictions"]
    assert len(x_test) == 450
    accuracy = np.mean(np.array(predicted) == y_test)
    assert accuracy >= 0.97, accuracy


def test_csv_upload_trains_a_model(stack):
    from sklearn.datasets import load_iris

    iris = load_iris()
    lines = [",".join([*iris.feature_names, "species"])]
    lines += [
        ",".join([*map(str, row), iris.target_names[label]])
        for row, label in zip(iris.data, iris.target, strict=True)
    ]
    text = "\n".join(lines)
    files = {"file": ("iris.csv", io.BytesIO(text.encode()), "text/csv")}
    form = {"task": "classification", "target": "species", "name": "iris"}
    dataset = stack.create("/v1/datasets", 201, data=form, files=files)
    assert (dataset["rows"], dataset["features"], dataset["classes"]) == (
        150,
        4,
        list(iris.target_names),
    )
    network = {
        "layers": [{"units": 8, "activation": "tanh"}, {"units": 3, "activation": "softmax"}]
    }
    body = {"dataset_id": dataset["id"], "network": network, "training": IRIS_TRAINING}
    job = stack.wait_for_job(stack.create("/v1/jobs", 202, json=body)["id"])
    assert job["status"] == "succeeded" and job["train_accuracy"] > 0.9, job


def test_epoch_history_is_complete_and_in_order_while_polled(stack):
    dataset = stack.create("/v1/datasets", 201, json={"builtin": "digits"})
    training = {**DIGITS_TRAINING, "epochs": 60, "validation_split": 0.2}
    body = {"dataset_id": dataset["id"], "network": DIGITS_NETWORK, "training": training}
    job_id = stack.create("/v1/jobs", 202, json=body)["id"]
    seen, status = [], "queued"
    while status not in {"succeeded", "failed"}:
        status = stack.get(f"/v1/jobs/{job_id}").json()["status"]
        after = seen[-1]["epoch"] if seen else 0
        seen += stack.get(f"/v1/jobs/{job_id}/epochs", params={"after": after}).json()
    assert status == "succeeded"
    assert [record["epoch"] for record in seen] == list(range(1, 61))
    assert all(record["val_loss"] is not None and record["seconds"] > 0 for record in seen)
    job = stack.get(f"/v1/jobs/{job_id}").json()
    assert job["epoch"] == 60 and job["val_loss"] == seen[-1]["val_loss"]


def test_ten_jobs_at_once_with_two_workers_are_each_trained_exactly_once(stack):
    dataset = stack.create("/v1/datasets", 201, json={"builtin": "xor"})
    with concurrent.futures.ThreadPoolExecutor(10) as pool:
        submitted = list(
            pool.map(
                lambda _: stack.create("/v1/jobs", 202, json=job_body(dataset["id"], epochs=200)),
                range(10),
            )
        )
    jobs = [stack.wait_for_job(job["id"]) for job in submitted]
    assert [job["status"] for job in jobs] == ["succeeded"] * 10
    assert [job["attempt"] for job in jobs] == [1] * 10
    logs = stack.worker_logs()
    for job in jobs:
        assert len(re.findall(rf"job {job['id']} succeeded", logs)) == 1
        epochs = stack.get(f"/v1/jobs/{job['id']}/epochs").json()
        assert [record["epoch"] for record in epochs] == list(range(1, 201))
