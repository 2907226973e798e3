"""The prediction log through the API: every answer's prediction id (JSON, CSV, /v2), its
rows written by the buffer, paged per model, shown by id; feedback and live performance (equal
to /evaluate on the same rows); drift's answer below DRIFT_MIN_ROWS; and the settings."""

from datetime import timedelta

import numpy as np
import pytest
from sqlalchemy import func, select, update

from service.datasets.samples import load_sample
from service.db import predictions
from service.db.models import PredictionRecord, TrainedModel, utcnow
from service.dispatcher import LogUpkeep
from service.serving.drift import bin_shares, psi, reference_from_npz
from tests.factories import job_body
from tests.service.api.test_aliases import ROW as ALIAS_ROW
from tests.service.api.test_aliases import predict as predict_alias
from tests.service.api.test_aliases import put as put_alias
from tests.service.api.test_metrics import labels, scrape
from tests.service.serving.test_contracts import train_version
from tests.service.serving.test_models_evaluate import (
    IRIS_CLASSES,
    IRIS_COLUMNS,
    IRIS_NETWORK,
    iris_csv,
    trained_model,
    upload_csv,
)
from worker.training import run_training

XOR_ROWS = [[0, 0], [0, 1], [1, 0], [1, 1]]


@pytest.fixture
def xor(client, sessions) -> int:
    dataset_id = client.post("/v1/datasets", json={"builtin": "xor"}).get_json()["id"]
    body = {**job_body(dataset_id, epochs=500), "model_name": "xor"}
    job_id = client.post("/v1/jobs", json=body).get_json()["id"]
    run_training(sessions, job_id)
    return client.get(f"/v1/jobs/{job_id}").get_json()["model_id"]


def flush(client) -> int:
    return client.application.extensions["prediction_log"].flush()


def logged_rows(sessions) -> int:
    with sessions() as session:
        return session.scalar(select(func.count()).select_from(PredictionRecord))


def test_every_predict_answer_has_a_prediction_id_and_its_rows_are_logged(client, xor, sessions):
    answer = client.post("/v1/models/xor/predict", json={"instances": XOR_ROWS})
    prediction_id = answer.get_json()["prediction_id"]
    assert answer.headers["X-Prediction-Id"] == prediction_id and len(prediction_id) == 32
    assert logged_rows(sessions) == 0  # nothing written on the request path
    assert flush(client) == 4
    shown = client.get(f"/v1/predictions/{prediction_id}").get_json()
    assert (shown["model_id"], shown["name"], shown["version"]) == (xor, "xor", 1)
    assert shown["alias"] is None and shown["latency_ms"] > 0
    assert [r["row"] for r in shown["rows"]] == [0, 1, 2, 3]
    assert [r["inputs"] for r in shown["rows"]] == XOR_ROWS
    assert [r["prediction"] for r in shown["rows"]] == answer.get_json()["predictions"]
    assert [r["probabilities"] for r in shown["rows"]] == answer.get_json()["probabilities"]


def test_csv_and_v2_answers_carry_the_id_too(client, xor):
    csv_answer = client.post(
        "/v1/models/xor/predict",
        data="a,b\n0,1\n",
        content_type="text/csv",
        headers={"Accept": "text/csv"},
    )
    assert csv_answer.status_code == 200, csv_answer.get_data(as_text=True)
    infer = client.post(
        "/v2/models/xor/infer",
        json={"inputs": [{"name": "input", "shape": [1, 2], "datatype": "FP32", "data": [1, 0]}]},
    )
    prediction_id = infer.get_json()["parameters"]["prediction_id"]
    assert infer.headers["X-Prediction-Id"] == prediction_id
    flush(client)
    for logged in (csv_answer.headers["X-Prediction-Id"], prediction_id):
        assert client.get(f"/v1/predictions/{logged}").status_code == 200


def test_the_listing_pages_with_a_next_link_and_filters_by_time(client, xor):
    for row in XOR_ROWS:
        client.post(f"/v1/models/{xor}/predict", json={"instances": [row]})
    flush(client)
    first = client.get("/v1/models/xor/predictions?limit=3")
    assert [r["inputs"] for r in first.get_json()] == XOR_ROWS[:3]
    link = first.headers["Link"]
    assert link.endswith('rel="next"')
    rest = client.get(link[1 : link.index(">")])
    assert [r["inputs"] for r in rest.get_json()] == XOR_ROWS[3:]
    assert "Link" not in rest.headers
    later = client.get("/v1/models/xor/predictions?since=2999-01-01T00:00:00Z")
    assert later.get_json() == []
    earlier = client.get("/v1/models/xor/predictions?until=2999-01-01T00:00:00%2B00:00")
    assert len(earlier.get_json()) == 4
    assert client.get("/v1/models/xor/predictions?since=yesterday").status_code == 422


def test_an_unknown_prediction_is_404(client, xor):
    assert client.get(f"/v1/predictions/{'0' * 32}").status_code == 404


def test_the_settings_sample_and_inputs_off(client_with, xor):
    unsampled = client_with(prediction_log_sample=0.0)
    answer = unsampled.post("/v1/models/xor/predict", json={"instances": XOR_ROWS})
    assert "X-Prediction-Id" in answer.headers
    assert flush(unsampled) == 0
    without_inputs = client_with(prediction_log_inputs="off")
    answer = without_inputs.post("/v1/models/xor/predict", json={"instances": XOR_ROWS})
    assert flush(without_inputs) == 4
    shown = without_inputs.get(f"/v1/predictions/{answer.headers['X-Prediction-Id']}")
    assert [r["inputs"] for r in shown.get_json()["rows"]] == [None] * 4
    off = client_with(prediction_log="off")
    answer = off.post("/v1/models/xor/predict", json={"instances": XOR_ROWS})
    assert "prediction_log" not in off.application.extensions
    assert len(answer.headers["X-Prediction-Id"]) == 32


@pytest.fixture
def iris(client, sessions) -> int:
    dataset_id = upload_csv(client, iris_csv())
    return trained_model(client, sessions, dataset_id, IRIS_NETWORK, model_name="iris")


def test_live_accuracy_equals_evaluate_on_the_same_rows_and_feedback_twice_counts_once(
    client, iris
):
    sample = load_sample("iris")
    rows, labels = sample.X[::3].tolist(), sample.y[::3].tolist()  # 50 rows
    answer = client.post("/v1/models/iris/predict", json={"instances": rows}).get_json()
    flush(client)
    items = [
        {"prediction_id": answer["prediction_id"], "row": i, "label": label}
        for i, label in enumerate(labels)
    ]
    wrong_first = [{**item, "label": "setosa"} for item in items[:10]]
    assert client.post("/v1/predictions/feedback", json={"items": wrong_first}).get_json() == {
        "stored": 10,
        "unknown": [],
    }
    assert client.post("/v1/predictions/feedback", json={"items": items}).get_json()["stored"] == 50
    live = client.get("/v1/models/iris/performance?window=1h").get_json()
    evaluated = client.post(
        "/v1/models/iris/evaluate", json={"instances": rows, "targets": labels}
    ).get_json()
    [version] = live["versions"]
    assert (version["predictions"], version["labelled"], version["scored"]) == (50, 50, 50)
    assert version["accuracy"] == evaluated["accuracy"]
    assert [c["recall"] for c in version["per_class"]] == [
        c["recall"] for c in evaluated["per_class"]
    ]
    assert [c["label"] for c in version["per_class"]] == IRIS_CLASSES


def test_feedback_reports_unknown_rows_per_item_and_checks_every_field(client, iris):
    answer = client.post("/v1/models/iris/predict", json={"instances": [[5, 3, 1.5, 0.2]]})
    prediction_id = answer.get_json()["prediction_id"]
    flush(client)
    items = [
        {"prediction_id": prediction_id, "row": 0, "label": "setosa"},
        {"prediction_id": prediction_id, "row": 1, "label": "setosa"},
        {"prediction_id": "f" * 32, "label": "setosa"},
    ]
    body = client.post("/v1/predictions/feedback", json={"items": items}).get_json()
    assert body == {
        "stored": 1,
        "unknown": [
            {"index": 1, "prediction_id": prediction_id, "row": 1},
            {"index": 2, "prediction_id": "f" * 32, "row": 0},
        ],
    }
    for bad, path in (
        ({"prediction_id": "nope", "label": "a"}, "items[0].prediction_id"),
        ({"prediction_id": prediction_id}, "items[0].label"),
        ({"prediction_id": prediction_id, "label": "a", "target": 1}, "items[0].label"),
        ({"prediction_id": prediction_id, "label": True}, "items[0].label"),
        ({"prediction_id": prediction_id, "target": [1, "x"]}, "items[0].target"),
        ({"prediction_id": prediction_id, "row": -1, "label": "a"}, "items[0].row"),
    ):
        response = client.post("/v1/predictions/feedback", json={"items": [bad]})
        assert response.status_code == 422, bad
        assert path in response.get_json()["error"]["details"], response.get_json()
    assert client.post("/v1/predictions/feedback", json={"items": []}).status_code == 422


def test_drift_below_drift_min_rows_says_so_and_a_name_answers_per_version(client, iris):
    client.post("/v1/models/iris/predict", json={"instances": [[5, 3, 1.5, 0.2]]})
    flush(client)
    body = client.get("/v1/models/iris/drift?window=1h").get_json()
    [version] = body["versions"]
    assert version["rows"] == 1 and "DRIFT_MIN_ROWS (100)" in version["message"]
    assert "features" not in version
    assert client.get("/v1/models/iris/drift?window=2h").status_code == 422


def test_drift_over_enough_rows_names_the_features(client, iris):
    sample = load_sample("iris")
    for start in range(0, 150, 50):  # the tests' MAX_PREDICT_ROWS
        rows = sample.X[start : start + 50].tolist()
        assert client.post("/v1/models/iris/predict", json={"instances": rows}).status_code == 200
    flush(client)
    [version] = client.get("/v1/models/iris:1/drift").get_json()["versions"]
    assert version["rows"] == 150
    assert [f["name"] for f in version["features"]] == IRIS_COLUMNS
    assert not version["drifted"]
    assert set(version["predictions"]) == {"psi", "ks", "p_value", "drifted"}
    assert np.isfinite([f["psi"] for f in version["features"]]).all()


def test_metrics_export_the_dispatchers_live_figures_and_the_drops(
    client, iris, sessions, settings
):
    sample = load_sample("iris")
    ids = []
    for start in range(0, 150, 50):
        rows = sample.X[start : start + 50].tolist()
        ids.append(client.post("/v1/models/iris/predict", json={"instances": rows}).get_json())
    flush(client)
    items = [
        {"prediction_id": ids[0]["prediction_id"], "row": i, "label": label}
        for i, label in enumerate(sample.y[:50].tolist())
    ]
    client.post("/v1/predictions/feedback", json={"items": items})
    assert not any(name.startswith("backprop_model_") for name, _ in scrape(client))
    LogUpkeep(settings).refresh_live_figures(sessions)  # what the dispatcher does
    figures = scrape(client)
    [drift] = client.get("/v1/models/iris/drift").get_json()["versions"]
    [performance] = client.get("/v1/models/iris/performance").get_json()["versions"]
    for feature in drift["features"]:
        key = ("backprop_model_feature_psi", labels(model_id=str(iris), feature=feature["name"]))
        assert figures[key] == pytest.approx(feature["psi"], rel=1e-12)
    accuracy = figures[("backprop_model_live_accuracy", labels(model_id=str(iris)))]
    assert accuracy == performance["accuracy"]
    assert figures[("backprop_model_drift_rows", labels(model_id=str(iris)))] == 150
    with sessions() as session:  # a day later, nothing logged since
        session.execute(update(PredictionRecord).values(created_at=utcnow() - timedelta(days=2)))
        session.commit()
    LogUpkeep(settings).refresh_live_figures(sessions)
    assert not any(name.startswith("backprop_model_") for name, _ in scrape(client))


def test_rows_that_do_not_fit_the_buffer_are_dropped_and_counted_in_metrics(client_with, xor):
    small = client_with(prediction_log_buffer_rows=3)
    small.post("/v1/models/xor/predict", json={"instances": XOR_ROWS[:2]})
    small.post("/v1/models/xor/predict", json={"instances": XOR_ROWS})
    assert scrape(small)[("backprop_prediction_log_dropped_rows_total", frozenset())] == 4
    assert flush(small) == 2


def test_a_model_stored_before_reference_profiles_says_there_is_nothing_to_compare(
    client, iris, sessions
):
    with sessions() as session:
        session.execute(update(TrainedModel).values(reference=None))
        session.commit()
    [version] = client.get("/v1/models/iris/drift").get_json()["versions"]
    assert version["rows"] == 0 and "before reference profiles" in version["message"]


def test_performance_counts_per_hour_and_drift_names_its_thresholds(client, xor):
    answer = client.post("/v1/models/xor/predict", json={"instances": XOR_ROWS}).get_json()
    flush(client)
    truth = [{"prediction_id": answer["prediction_id"], "row": i, "label": 1} for i in range(2)]
    client.post("/v1/predictions/feedback", json={"items": truth})
    [version] = client.get("/v1/models/xor/performance").get_json()["versions"]
    [hour] = version["hourly"]
    assert (hour["predictions"], hour["labelled"], hour["accuracy"]) == (4, 2, 0.5)
    assert hour["hour"].endswith(":00:00+00:00")
    drift = client.get("/v1/models/xor/drift").get_json()
    assert drift["thresholds"] == {"psi": 0.2, "ks": 0.1, "p": 0.01}


def test_with_inputs_off_the_log_counts_bins_and_drift_gives_psi_alone(client_with, iris, sessions):
    off = client_with(prediction_log_inputs="off")
    x = load_sample("iris").X
    for start in range(0, 150, 50):
        answer = off.post(
            "/v1/models/iris/predict", json={"instances": x[start : start + 50].tolist()}
        )
        assert answer.status_code == 200
    flush(off)
    with sessions() as session:
        assert session.scalar(select(func.count()).where(PredictionRecord.inputs.is_not(None))) == 0
        reference = reference_from_npz(predictions.reference_blob(session, iris))
    [version] = off.get("/v1/models/iris/drift?window=1h").get_json()["versions"]
    assert version["rows"] == 150
    for feature, profile, column in zip(version["features"], reference.features, x.T, strict=True):
        expected = psi(profile.shares, bin_shares(column, profile.edges))
        assert feature["psi"] == pytest.approx(expected, rel=1e-12, abs=1e-15)
        assert (feature["ks"], feature["p_value"]) == (None, None)
    assert version["predictions"]["ks"] is not None  # the answers are kept: KS on them


@pytest.fixture
def versions(client, sessions) -> list[int]:
    """Three versions of iris, of the same contract (test_aliases.py's)."""
    return [train_version(client, sessions, iris_csv()) for _ in range(3)]


def test_rows_name_the_alias_and_the_split_arm_that_answered(client, versions):
    halves = [{"version": versions[0], "weight": 1}, {"version": versions[1], "weight": 1}]
    assert put_alias(client, {"versions": halves}).status_code == 200
    answers = [predict_alias(client, routing_key=f"key-{i}") for i in range(8)]
    put_alias(client, {"version": versions[2]}, alias="stable")
    single = client.post("/v1/models/iris@stable/predict", json={"instances": ALIAS_ROW})
    by_name = client.post("/v1/models/iris/predict", json={"instances": ALIAS_ROW})
    flush(client)
    for answer in answers:
        shown = client.get(f"/v1/predictions/{answer.headers['X-Prediction-Id']}").get_json()
        assert (shown["alias"], shown["split_arm"]) == (
            "production",
            answer.headers["X-Model-Version"],
        )
    for answer, expected in ((single, ("stable", None)), (by_name, (None, None))):
        shown = client.get(f"/v1/predictions/{answer.headers['X-Prediction-Id']}").get_json()
        assert (shown["alias"], shown["split_arm"]) == expected
