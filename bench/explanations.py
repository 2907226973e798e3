"""What an explanation costs (issue 25): over HTTP, and in-process against captum.

    python -m bench.explanations [--seconds 10] [--warmup 2] [--repeats 300]

* Over HTTP: a fresh stack (``bench.serving.running_service``: Granian with 2 processes, a
  worker, the dispatcher, the embedded database) trains the digits model (64-64-10) and an iris
  model (4-8-3); wrk then sends one row per request at one connection: Integrated Gradients with
  64 Gauss-Legendre steps of a digits row (and /predict of the same row, for scale), and exact
  Shapley values of an iris row (4 features, 16 coalitions) over a background of 100 rows of
  the iris data set. p50 and p99 as wrk reports them.
* In-process, one process: model_core's ``integrated_gradients`` and captum's
  ``IntegratedGradients(method="gausslegendre", n_steps=64)`` on the same float32 digits network
  (model_core's weights loaded into a PyTorch ``nn.Sequential`` whose first step is the
  standardisation), one row from the training mean, each the best of ``--repeats`` calls; the
  attributions are checked to agree first.

Needs wrk (``apt-get install -y wrk``) and the bench extra (torch, captum).
"""

import argparse
import json
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import requests
import torch
from captum.attr import IntegratedGradients

from bench.serving import (
    Request,
    WrkResult,
    machine,
    relu_network,
    require_wrk,
    run_wrk,
    running_service,
    say,
    submit_job,
    train_digits,
)
from model_core import Model, train
from model_core.explanations import integrated_gradients, resolve_targets
from service.datasets.samples import load_sample

STEPS = 64
BACKGROUND_ROWS = 100
IRIS_NETWORK = {
    "layers": [{"units": 8, "activation": "tanh"}, {"units": 3, "activation": "softmax"}]
}


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=int, default=10, help="each wrk run (whole seconds)")
    parser.add_argument("--warmup", type=int, default=2, help="wrk seconds before each request")
    parser.add_argument("--repeats", type=int, default=300, help="in-process: best of this many")
    return parser.parse_args(argv)


# --- over HTTP -------------------------------------------------------------------------------


def post(base_url: str, label: str, path: str, body: dict) -> Request:
    return Request("ours", label, f"{base_url}{path}", json.dumps(body).encode())


def http_requests(client, digits_id: int, iris_id: int, iris_dataset: int) -> list[Request]:
    digits_row = load_sample("digits").X[0].tolist()
    iris_row = load_sample("iris").X[0].tolist()
    background = {"dataset_id": iris_dataset, "rows": BACKGROUND_ROWS}
    base = client.base_url
    return [
        post(base, "digits: /predict, one row", f"/v1/models/{digits_id}/predict",
             {"instances": [digits_row]}),
        post(base, f"digits: IG, {STEPS} steps, one row", f"/v1/models/{digits_id}/explain",
             {"instances": [digits_row], "steps": STEPS}),
        post(base, f"iris: exact Shapley, {BACKGROUND_ROWS} background rows, one row",
             f"/v1/models/{iris_id}/explain",
             {"instances": [iris_row], "method": "shapley", "baseline": background}),
    ]  # fmt: skip


def checked(request: Request) -> None:
    """One request answers 200 before wrk repeats it."""
    response = requests.post(
        request.url, data=request.body, headers={"Content-Type": request.content_type}, timeout=30
    )
    if response.status_code != 200:
        raise RuntimeError(f"{request.label}: {response.status_code} {response.text[:300]}")


def over_http(args: argparse.Namespace, folder: Path) -> list[tuple[str, WrkResult]]:
    with running_service("embedded", folder) as (client, _settings):
        digits = train_digits(client)
        iris_dataset = client.post("/v1/datasets", {"builtin": "iris"})["id"]
        say("training iris 4-8-3")
        training = {"epochs": 50, "seed": 1}
        body = {"dataset_id": iris_dataset, "network": IRIS_NETWORK, "training": training}
        iris_id, _ = submit_job(client, body)
        results = []
        for request in http_requests(client, digits.model_id, iris_id, iris_dataset):
            checked(request)
            say(f"wrk: {request.label}")
            run_wrk(request, 1, args.warmup, folder)
            results.append((request.label, run_wrk(request, 1, args.seconds, folder)))
        return results


# --- in-process --------------------------------------------------------------------------------


def digits_model() -> Model:
    """The digits network of the HTTP run (64-64-10, float32), trained here by model_core."""
    sample = load_sample("digits")
    training = {"epochs": 5, "seed": 1}
    return train(sample.X, sample.y, relu_network(64), training, task="classification").model


def torch_network(model: Model) -> torch.nn.Sequential:
    """The model in float32 PyTorch: (x - mean) / scale, then Linear and activation per layer."""
    mean, scale = torch.tensor(model.mean), torch.tensor(model.scale)
    activations = {"relu": torch.nn.ReLU, "softmax": lambda: torch.nn.Softmax(dim=1)}

    class Standardize(torch.nn.Module):
        def forward(self, x):
            return (x - mean) / scale

    steps: list[torch.nn.Module] = [Standardize()]
    for (w, b), activation in zip(model.weights, model.activations, strict=True):
        linear = torch.nn.Linear(*w.shape)
        with torch.no_grad():
            linear.weight.copy_(torch.tensor(w.T))
            linear.bias.copy_(torch.tensor(b))
        steps += [linear, activations[activation.name]()]
    return torch.nn.Sequential(*steps)


def best_microseconds(call: Callable[[], object], repeats: int) -> float:
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        call()
        best = min(best, time.perf_counter() - start)
    return best * 1e6


def in_process(repeats: int) -> dict:
    model = digits_model()
    x = load_sample("digits").X[:1].astype(np.float32)
    baseline = model.mean[np.newaxis]
    targets, labels = resolve_targets(model, x, "predicted")
    network = torch_network(model)
    captum = IntegratedGradients(network)
    inputs, reference = torch.tensor(x), torch.tensor(baseline)

    def ours():
        return integrated_gradients(model, x, baseline, targets, STEPS).attributions

    def theirs():
        return captum.attribute(
            inputs, reference, target=int(targets.units[0]), n_steps=STEPS, method="gausslegendre"
        )

    difference = np.abs(ours() - theirs().detach().numpy()).max()
    say(f"in-process: largest difference of the attributions {difference:.2e} (float32)")
    ours_us, theirs_us = best_microseconds(ours, repeats), best_microseconds(theirs, repeats)
    return {
        "model_core_us": ours_us,
        "captum_us": theirs_us,
        "ratio": theirs_us / ours_us,
        "max_difference": float(difference),
        "torch_threads": torch.get_num_threads(),
        "target": labels[0],
    }


def report(http: list[tuple[str, WrkResult]], local: dict) -> list[str]:
    lines = [f"machine: {machine()}", "", "| request (1 connection) | p50 | p99 | req/s |"]
    lines.append("|---|---|---|---|")
    for label, result in http:
        lines.append(
            f"| {label} | {result.p50_ms:.2f} ms | {result.p99_ms:.2f} ms "
            f"| {result.requests_per_second:.0f} |"
        )
    lines += [
        "",
        f"in-process, IG {STEPS} steps, one digits row (best of the repeats):"
        f" model_core {local['model_core_us']:.0f} us, captum {local['captum_us']:.0f} us"
        f" ({local['ratio']:.1f}x; torch threads {local['torch_threads']}; attributions agree"
        f" to {local['max_difference']:.1e})",
    ]
    return lines


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    require_wrk()
    local = in_process(args.repeats)
    with tempfile.TemporaryDirectory(prefix="bench-explain-") as folder:
        http = over_http(args, Path(folder))
    print("\n".join(report(http, local)))


if __name__ == "__main__":
    main()
