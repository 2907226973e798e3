"""A cell that is not a number is named with its value: ``features[3][1]``, ``targets[2]``,
``instances[0][1]``, and for a CSV file its line and column."""

import io

import pytest

from tests.factories import job_body
from worker.training import run_training


def details(response, status: int = 422) -> dict:
    assert response.status_code == status, response.get_data(as_text=True)
    return response.get_json()["error"]["details"]


def post_json(client, text: str):
    return client.post("/v1/datasets", data=text, content_type="application/json")


BAD_JSON_CELLS = {
    "a string": (
        '{"task": "regression", "features": [[1, 2], [3, 4], [5, 6], [7, "abc"]],'
        ' "targets": [1, 2, 3, 4]}',
        {"features[3][1]": ["'abc' is not a number"]},
    ),
    "a number as a string": (
        '{"task": "regression", "features": [[1, 2], ["3", 4]], "targets": [1, 2]}',
        {"features[1][0]": ["'3' is not a number"]},
    ),
    "null": (
        '{"task": "regression", "features": [[1, null], [3, 4]], "targets": [1, 2]}',
        {"features[0][1]": ["null is not a number"]},
    ),
    "a boolean": (
        '{"task": "regression", "features": [[true], [false]], "targets": [1, 2]}',
        {"features[0][0]": ["true is not a number"]},
    ),
    "an object": (
        '{"task": "regression", "features": [[1], [{"a": 1}]], "targets": [1, 2]}',
        {"features[1][0]": ['{"a": 1} is not a number']},
    ),
    "a number too large for float64": (
        '{"task": "regression", "features": [[1], [1' + "0" * 400 + ']], "targets": [1, 2]}',
        {"features[1][0]": ["1" + "0" * 39 + "... is too large for a 64-bit float"]},
    ),
    "a string in regression targets": (
        '{"task": "regression", "features": [[1], [2], [3]], "targets": [1, 2, "x"]}',
        {"targets[2]": ["'x' is not a number"]},
    ),
    "null in rows of regression targets": (
        '{"task": "regression", "features": [[1], [2]], "targets": [[1, 2], [3, null]]}',
        {"targets[1][1]": ["null is not a number"]},
    ),
    "NaN in regression targets": (
        '{"task": "regression", "features": [[1], [2]], "targets": [1, NaN]}',
        {"targets[1]": ["NaN and infinity are not allowed"]},
    ),
}


@pytest.mark.parametrize("case", BAD_JSON_CELLS, ids=list(BAD_JSON_CELLS))
def test_the_first_bad_json_cell_is_named_with_its_value(client, row_counts, case):
    text, expected = BAD_JSON_CELLS[case]
    assert details(post_json(client, text)) == expected
    assert row_counts()["datasets"] == 0


def test_integers_too_large_for_int64_are_numbers(client):
    text = '{"task": "regression", "features": [[1], [1' + "0" * 30 + ']], "targets": [1, 2]}'
    assert post_json(client, text).status_code == 201


def post_csv(client, text: str, target: str, header: bool = True):
    form = {"task": "regression", "target": target, "header": str(header).lower()}
    form["file"] = (io.BytesIO(text.encode()), "data.csv")
    return client.post("/v1/datasets", data=form, content_type="multipart/form-data")


BAD_CSV_CELLS = {
    "text in a feature": (
        "a,b,y\n1,2,3\n4,x,6\n",
        {},
        {"file": ["line 3, column 'b': 'x' is not a number"]},
    ),
    "after blank lines": (
        "a,b,y\n\n1,2,3\n\n4,x,6\n",
        {},
        {"file": ["line 5, column 'b': 'x' is not a number"]},
    ),
    "after a quoted line break": (
        'a,b,y\n"1\n",2,3\n4,,6\n',
        {},
        {"file": ["line 4, column 'b': '' is not a number"]},
    ),
    "without a header": (
        "1,2,3\n4,x,6\n",
        {"target": "2", "header": False},
        {"file": ["line 2, column 1: 'x' is not a number"]},
    ),
    "infinity in a feature": (
        "a,b,y\n1,2,3\ninf,5,6\n",
        {},
        {"file": ["line 3, column 'a': 'inf' is not a finite number"]},
    ),
    "text in a regression target": (
        "a,b,y\n1,2,3\n4,5,six\n",
        {},
        {"target": ["line 3, column 'y': 'six' is not a number"]},
    ),
    "NaN in a regression target": (
        "a,b,y\n1,2,nan\n4,5,6\n",
        {},
        {"target": ["line 2, column 'y': 'nan' is not a finite number"]},
    ),
    "a ragged line after a blank one": (
        "a,b,y\n\n1,2,3\n4,5\n",
        {},
        {"file": ["line 4 has 2 values; expected 3"]},
    ),
}


@pytest.mark.parametrize("case", BAD_CSV_CELLS, ids=list(BAD_CSV_CELLS))
def test_the_first_bad_csv_cell_is_named_by_line_and_column(client, row_counts, case):
    text, options, expected = BAD_CSV_CELLS[case]
    response = post_csv(client, text, **{"target": "y", **options})
    assert details(response) == expected
    assert row_counts()["datasets"] == 0


@pytest.fixture
def model_id(client, sessions) -> int:
    """A model of two features, trained by the worker's own function."""
    dataset_id = client.post("/v1/datasets", json={"builtin": "xor"}).get_json()["id"]
    job_id = client.post("/v1/jobs", json=job_body(dataset_id, epochs=1)).get_json()["id"]
    run_training(sessions, job_id)
    return client.get(f"/v1/jobs/{job_id}").get_json()["model_id"]


def test_the_first_bad_instance_cell_is_named_with_its_value(client, model_id):
    body = {"instances": [[0, 1], [1, "a"], [None, 0]]}
    response = client.post(f"/v1/models/{model_id}/predict", json=body)
    assert details(response) == {"instances[1][1]": ["'a' is not a number"]}
