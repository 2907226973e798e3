"""A CSV, Parquet or .npz upload that names no task: the targets choose it, and the answer says
so (``task_inferred``); a task the form names wins."""

import io

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from service.datasets.ingest import MAX_INFERRED_CLASSES
from service.db import records
from tests.factories import assert_envelope

N_ROWS = 30
FEATURES = np.arange(2.0 * N_ROWS).reshape(N_ROWS, 2)
# Target columns of N_ROWS values, and the task each one suggests.
STRINGS = np.array(["setosa", "versicolor", "virginica"] * (N_ROWS // 3))
BOOLEANS = np.arange(N_ROWS) % 2 == 0
FEW_INTEGERS = np.arange(N_ROWS) % MAX_INFERRED_CLASSES  # 20 distinct: the most for classes
MANY_INTEGERS = np.arange(N_ROWS) % (MAX_INFERRED_CLASSES + 1)  # 21 distinct
FLOATS = np.linspace(0.5, 3.0, N_ROWS)
INFERRED = {
    "strings": (STRINGS, "classification"),
    "booleans": (BOOLEANS, "classification"),
    "at most 20 distinct integers": (FEW_INTEGERS, "classification"),
    "more than 20 distinct integers": (MANY_INTEGERS, "regression"),
    "floats": (FLOATS, "regression"),
}


def csv_bytes(y: np.ndarray) -> bytes:
    """Booleans as pandas writes them (True, False)."""
    lines = ["a,b,y"] + [f"{a:g},{b:g},{label}" for (a, b), label in zip(FEATURES, y, strict=True)]
    return "\n".join(lines).encode()


def parquet_bytes(y: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    pq.write_table(pa.table({"a": FEATURES[:, 0], "b": FEATURES[:, 1], "y": y}), buffer)
    return buffer.getvalue()


def npz_bytes(y: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.savez(buffer, X=FEATURES, y=y)
    return buffer.getvalue()


FILES = {"csv": csv_bytes, "parquet": parquet_bytes, "npz": npz_bytes}


def upload(client, file_format: str, y: np.ndarray, **form):
    data = FILES[file_format](y)
    fields = {"target": "y"} if file_format != "npz" else {}
    body = {**fields, **form, "file": (io.BytesIO(data), f"data.{file_format}")}
    return client.post("/v1/datasets", data=body, content_type="multipart/form-data")


def created(response) -> dict:
    assert response.status_code == 201, response.get_json()
    return response.get_json()


@pytest.mark.parametrize("file_format", FILES)
@pytest.mark.parametrize("case", INFERRED)
def test_the_targets_choose_the_task_when_the_form_names_none(client, sessions, file_format, case):
    y, task = INFERRED[case]
    dataset = created(upload(client, file_format, y))
    assert (dataset["task"], dataset["task_inferred"]) == (task, True)
    assert dataset["rows"] == N_ROWS
    assert "task_inferred" not in client.get(f"/v1/datasets/{dataset['id']}").get_json()
    with sessions() as session:
        stored = records.get_dataset_arrays(session, dataset["id"]).y
    if task == "regression":
        np.testing.assert_array_equal(stored, y)


@pytest.mark.parametrize("file_format", FILES)
def test_classes_inferred_are_those_the_task_named_gives(client, file_format):
    """An inferred task reads the targets as the named one does: integers stay integers."""
    for y in (FEW_INTEGERS, STRINGS):
        inferred = created(upload(client, file_format, y))
        named = created(upload(client, file_format, y, task="classification"))
        assert inferred["classes"] == named["classes"]
        assert (inferred["task_inferred"], named["task_inferred"]) == (True, False)
    assert inferred["classes"] == ["setosa", "versicolor", "virginica"]


BOOLEAN_CLASSES = {"csv": ["False", "True"], "parquet": ["false", "true"], "npz": ["false", "true"]}


@pytest.mark.parametrize("file_format", FILES)
def test_booleans_are_two_classes(client, file_format):
    """As the file writes them: pandas' CSV True and False; Parquet's and numpy's true and
    false, as Arrow spells them."""
    dataset = created(upload(client, file_format, BOOLEANS))
    assert dataset["classes"] == BOOLEAN_CLASSES[file_format]


OVERRIDES = {
    "integers as regression": (FEW_INTEGERS, "regression"),
    "many integers as classification": (MANY_INTEGERS, "classification"),
    "floats as regression": (FLOATS, "regression"),
}


@pytest.mark.parametrize("file_format", FILES)
@pytest.mark.parametrize("case", OVERRIDES)
def test_a_task_the_form_names_wins(client, file_format, case):
    y, task = OVERRIDES[case]
    dataset = created(upload(client, file_format, y, task=task))
    assert (dataset["task"], dataset["task_inferred"]) == (task, False)


def test_several_target_columns_are_regression(client):
    text = "a,y1,y2\n1,1,0\n2,0,1\n3,1,1\n"
    response = client.post(
        "/v1/datasets",
        data={"target": "y1,y2", "file": (io.BytesIO(text.encode()), "two.csv")},
        content_type="multipart/form-data",
    )
    dataset = created(response)
    assert (dataset["task"], dataset["outputs"], dataset["task_inferred"]) == (
        "regression",
        2,
        True,
    )


def test_a_blank_cell_among_numbers_is_a_missing_value_not_a_class(client, row_counts):
    """Regression is inferred from the cells that are numbers; the blank one is then refused
    by its line, rather than taken for a label among 30 others."""
    text = csv_bytes(FLOATS).decode().replace(f",{FLOATS[4]}\n", ",\n", 1)
    response = client.post(
        "/v1/datasets",
        data={"target": "y", "file": (io.BytesIO(text.encode()), "gap.csv")},
        content_type="multipart/form-data",
    )
    error = assert_envelope(response, 422, "target")
    assert "line 6" in str(error) and "is not a number" in str(error)
    assert row_counts()["datasets"] == 0


def test_a_parquet_target_of_another_type_is_refused_by_its_type(client):
    table = pa.table({"a": [1.0, 2.0], "y": pa.array([1, 2], pa.timestamp("s"))})
    buffer = io.BytesIO()
    pq.write_table(table, buffer)
    response = client.post(
        "/v1/datasets",
        data={"target": "y", "file": (io.BytesIO(buffer.getvalue()), "dates.parquet")},
        content_type="multipart/form-data",
    )
    error = assert_envelope(response, 422, "target")
    assert "timestamp" in str(error) and "not numbers" in str(error)


def test_the_openapi_document_says_task_is_optional_and_answers_task_inferred(client):
    spec = client.get("/openapi.json").get_json()
    schemas = spec["components"]["schemas"]
    assert "task" in schemas["FileUpload"]["properties"]
    assert schemas["FileUpload"]["required"] == ["file"]
    answer = spec["paths"]["/v1/datasets"]["post"]["responses"]["201"]["content"]
    created_schema = answer["application/json"]["schema"]["$ref"].rsplit("/", 1)[1]
    assert schemas[created_schema]["properties"]["task_inferred"]["type"] == "boolean"
