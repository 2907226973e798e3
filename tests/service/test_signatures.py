"""service/signatures.py: a signature's shape, and what an alias move would break for callers."""

import numpy as np

from service.signatures import (
    input_names,
    model_signature,
    named_inputs,
    output_signature,
    signature_changes,
)

IRIS = ["sepal_length", "sepal_width", "petal_length", "petal_width"]
SPECIES = output_signature("classification", ["setosa", "versicolor", "virginica"], None, 3)


def iris(names=IRIS, outputs=SPECIES, task="classification", statistics=None) -> dict:
    return model_signature(task, names, len(names), "float64", outputs, statistics)


def test_a_signature_names_its_inputs_with_their_statistics():
    statistics = {key: np.arange(4.0) + i for i, key in enumerate(("min", "max", "mean", "std"))}
    signature = iris(statistics=statistics)
    assert signature["inputs"][2] == {
        "name": "petal_length",
        "dtype": "float64",
        "min": 2.0,
        "max": 3.0,
        "mean": 4.0,
        "std": 5.0,
    }
    assert input_names(signature) == named_inputs(signature) == IRIS
    assert SPECIES == {"classes": ["setosa", "versicolor", "virginica"], "type": "string"}


def test_unnamed_inputs_are_numbered_and_positional():
    signature = model_signature(
        "regression", None, 3, "float32", output_signature("regression", None, None, 2)
    )
    assert input_names(signature) == ["x0", "x1", "x2"]
    assert named_inputs(signature) is None and signature["named"] is False
    assert signature["outputs"] == {"targets": ["y0", "y1"]}
    assert signature["inputs"][0]["mean"] is None


def test_label_types_follow_the_labels():
    assert output_signature("classification", [0, 1], None, 2)["type"] == "int"
    assert output_signature("classification", ["a", "b"], None, 2)["type"] == "string"
    assert output_signature("regression", None, ["price"], 1) == {"targets": ["price"]}


def test_the_same_contract_has_no_changes_whatever_the_statistics_or_dtype():
    profiled = iris(statistics={key: np.ones(4) for key in ("min", "max", "mean", "std")})
    as_float32 = model_signature("classification", IRIS, 4, "float32", SPECIES)
    assert signature_changes(iris(), profiled) == signature_changes(iris(), as_float32) == []


def test_each_breaking_difference_is_one_line():
    swapped = [*IRIS[:2], "petal_width", "petal_length"]
    assert signature_changes(iris(), iris(swapped)) == [
        "inputs[2]: petal_length -> petal_width",
        "inputs[3]: petal_width -> petal_length",
    ]
    assert signature_changes(iris(), iris([*IRIS, "sepal_area"])) == ["inputs[4]: added sepal_area"]
    assert signature_changes(iris(), iris(IRIS[:3])) == ["inputs[3]: removed petal_width"]
    fewer = output_signature("classification", ["setosa", "versicolor"], None, 2)
    assert signature_changes(iris(), iris(outputs=fewer)) == [
        "outputs.classes[2]: removed virginica"
    ]


def test_another_task_or_label_type_breaks_callers():
    numbered = output_signature("classification", [0, 1, 2], None, 3)
    assert signature_changes(iris(), iris(outputs=numbered)) == [
        "outputs.classes[0]: setosa -> 0",
        "outputs.classes[1]: versicolor -> 1",
        "outputs.classes[2]: virginica -> 2",
        "outputs.type: string -> int",
    ]
    regression = iris(outputs=output_signature("regression", None, ["y"], 1), task="regression")
    assert signature_changes(iris(), regression) == [
        "task: classification -> regression",
        "outputs.classes: ['setosa', 'versicolor', 'virginica'] -> None",
        "outputs.targets: None -> ['y']",
        "outputs.type: string -> None",
    ]
