"""Our network as a scikit-learn MLPClassifier, saved for MLflow's scoring server.

    MLFLOW_VENV/bin/python bench/mlflow_peer.py WEIGHTS.npz CHECK.npz MODEL_DIR

``python -m bench.serving`` runs this file with the Python of MLflow's own venv, where only
MLflow and scikit-learn are installed (never our packages, so that MLflow's pins never move
ours): it imports nothing of ours. WEIGHTS.npz is ``GET /v1/models/{id}/weights?format=npz``;
CHECK.npz holds ``rows`` (n, n_features) and the ``probabilities`` (n, n_classes) our API
answered for them. The pipeline, a StandardScaler holding our mean and scale and then an
MLPClassifier holding our weights, must give the same probabilities within 1e-6 on the rows in
the model's own dtype before it is saved: otherwise the two servers would not compute the same
network. It prints one line of JSON: the largest differences and the versions.
"""

import json
import sys
import warnings
from pathlib import Path

import mlflow
import mlflow.sklearn
import numpy as np
import sklearn
from mlflow.models import infer_signature
from sklearn.exceptions import ConvergenceWarning
from sklearn.neural_network import MLPClassifier
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler

TOLERANCE = 1e-6

# model_core's hidden activations under the names MLPClassifier gives them.
SKLEARN_ACTIVATIONS = {"relu": "relu", "tanh": "tanh", "sigmoid": "logistic", "linear": "identity"}


def hidden_activation(layers: list[dict]) -> str:
    """MLPClassifier's one activation for every hidden layer; its output layer is a softmax."""
    hidden = {layer["activation"] for layer in layers[:-1]}
    if len(hidden) != 1 or not hidden <= SKLEARN_ACTIVATIONS.keys():
        raise SystemExit(
            f"MLPClassifier needs one hidden activation of {list(SKLEARN_ACTIVATIONS)}"
        )
    if layers[-1]["activation"] != "softmax":
        raise SystemExit("MLPClassifier needs a softmax output (three classes or more)")
    return SKLEARN_ACTIVATIONS[hidden.pop()]


def mlp_classifier(arrays: dict[str, np.ndarray], layers: list[dict]) -> MLPClassifier:
    """An MLPClassifier holding our weights. Fitting one iteration on one row per class sets what
    predict_proba needs besides the weights (classes_, n_layers_, out_activation_, the label
    binarizer); the weights it learnt are then replaced by ours."""
    classes = arrays["classes"]
    w0 = arrays["W0"]
    mlp = MLPClassifier(
        hidden_layer_sizes=tuple(layer["units"] for layer in layers[:-1]),
        activation=hidden_activation(layers),
        max_iter=1,
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        mlp.fit(np.zeros((len(classes), w0.shape[0]), dtype=w0.dtype), classes)
    # MLflow 3.17 saves with skops, which trusts no optimizer: the fitted one is not needed.
    del mlp._optimizer
    mlp.coefs_ = [arrays[f"W{i}"] for i in range(len(layers))]
    mlp.intercepts_ = [arrays[f"b{i}"] for i in range(len(layers))]
    return mlp


def standard_scaler(mean: np.ndarray, scale: np.ndarray) -> StandardScaler:
    """A StandardScaler computing (x - mean) / scale, as our models standardise raw rows."""
    scaler = StandardScaler().fit(np.stack([mean - scale, mean + scale]))
    scaler.mean_, scaler.scale_, scaler.var_ = mean, scale, scale**2
    return scaler


def pipeline_of(arrays: dict[str, np.ndarray]) -> Pipeline:
    layers = json.loads(str(arrays["spec"]))["layers"]
    steps = [("mlp", mlp_classifier(arrays, layers))]
    if "mean" in arrays:
        steps.insert(0, ("standardize", standard_scaler(arrays["mean"], arrays["scale"])))
    return Pipeline(steps)


def largest_difference(pipeline: Pipeline, rows: np.ndarray, expected: np.ndarray) -> float:
    return float(np.max(np.abs(pipeline.predict_proba(rows) - expected)))


def main(weights_path: str, check_path: str, model_dir: str) -> None:
    with np.load(weights_path, allow_pickle=False) as weights:
        arrays = dict(weights)
    with np.load(check_path, allow_pickle=False) as check:
        rows, expected = check["rows"], check["probabilities"]
    pipeline = pipeline_of(arrays)
    in_model_dtype = largest_difference(pipeline, rows.astype(arrays["W0"].dtype), expected)
    if in_model_dtype > TOLERANCE:
        raise SystemExit(f"scikit-learn's probabilities differ from ours by {in_model_dtype:.2e}")
    mlflow.sklearn.save_model(
        pipeline,
        model_dir,
        pyfunc_predict_fn="predict_proba",
        signature=infer_signature(rows, pipeline.predict_proba(rows)),
    )
    summary = {
        "difference_in_model_dtype": in_model_dtype,
        "difference_in_float64": largest_difference(pipeline, rows, expected),
        "mlflow": mlflow.__version__,
        "sklearn": sklearn.__version__,
    }
    print(json.dumps(summary))


if __name__ == "__main__":
    if len(sys.argv) != 4 or Path(sys.argv[3]).exists():
        raise SystemExit(__doc__.splitlines()[2].strip() + "  (MODEL_DIR must not exist yet)")
    main(*sys.argv[1:])
