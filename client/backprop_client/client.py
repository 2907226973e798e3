"""``Client``: the Backprop Service HTTP API (/v1) from Python, over ``requests``."""

import json
import os
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, Literal
from urllib.parse import quote

import requests

from backprop_client.errors import ApiError
from backprop_client.events import Event, parse_events
from backprop_client.types import (
    FINISHED,
    OPERATION_ENDED,
    Alias,
    Dataset,
    Epoch,
    Explanation,
    Job,
    Model,
    Operation,
    Prediction,
    Sweep,
    Weights,
)

DEFAULT_URL = "http://127.0.0.1:8000"
PAGE_SIZE = 100  # flask-smorest's largest page
# Reconnections of follow() in a row without an event in between before it gives up.
MAX_RECONNECTS = 5
DROPPED = (requests.ConnectionError, requests.exceptions.ChunkedEncodingError)


class Client:
    """The service at ``base_url`` (else ``$BACKPROP_URL``, else http://127.0.0.1:8000), with
    ``api_key`` (else ``$BACKPROP_API_KEY``, else none: for ``AUTH=off``) sent as a bearer token.
    Every method raises ``ApiError`` on an error answer."""

    def __init__(
        self, base_url: str | None = None, api_key: str | None = None, timeout: float = 30
    ) -> None:
        self.base_url = (base_url or os.environ.get("BACKPROP_URL") or DEFAULT_URL).rstrip("/")
        self.api_key = api_key or os.environ.get("BACKPROP_API_KEY") or None
        self.timeout = timeout
        self.http = requests.Session()
        if self.api_key:
            self.http.headers["Authorization"] = f"Bearer {self.api_key}"

    # Data sets

    def upload_dataset(
        self,
        *,
        builtin: str | None = None,
        path: str | os.PathLike[str] | None = None,
        features: Sequence[Sequence[float]] | Sequence[str] | str | None = None,
        targets: Sequence[Any] | None = None,
        task: Literal["classification", "regression"] | None = None,
        name: str | None = None,
        target: Sequence[str] | str | None = None,
        drop: Sequence[str] | str | None = None,
        format: Literal["csv", "parquet", "npz"] | None = None,
        header: bool | None = None,
        weight: str | None = None,
        sample_weights: Sequence[float] | None = None,
    ) -> Dataset:
        """One of: a ``builtin`` sample (xor, digits, iris); JSON ``features`` (rows of numbers)
        and ``targets`` with ``task``, and optionally ``sample_weights`` (a weight per row in
        the loss); or the CSV, Parquet or .npz file at ``path`` with ``target`` column(s),
        optionally ``task`` (else the targets choose it: the answer's ``task_inferred``),
        ``features`` or ``drop`` (column names) and a ``weight`` column (CSV, Parquet)."""
        if path is not None:
            form = {
                "task": task,
                "name": name,
                "format": format,
                "target": _columns(target),
                "features": _columns(features),  # type: ignore[arg-type]
                "drop": _columns(drop),
                "weight": weight,
                "header": None if header is None else str(header).lower(),
            }
            with open(path, "rb") as file:
                files = {"file": (Path(path).name, file)}
                data = {key: value for key, value in form.items() if value is not None}
                return self._request("POST", "/v1/datasets", data=data, files=files).json()
        body = {
            "builtin": builtin,
            "features": features,
            "targets": targets,
            "task": task,
            "name": name,
            "sample_weights": None if sample_weights is None else list(sample_weights),
        }
        json_body = {key: value for key, value in body.items() if value is not None}
        return self._request("POST", "/v1/datasets", json=json_body).json()

    def datasets(self) -> list[Dataset]:
        return self._all_pages("/v1/datasets")

    def dataset(self, dataset_id: int) -> Dataset:
        return self._request("GET", f"/v1/datasets/{dataset_id}").json()

    # Jobs

    def submit_job(
        self,
        dataset_id: int,
        network: dict[str, Any],
        training: dict[str, Any] | None = None,
        model_name: str | None = None,
        idempotency_key: str | None = None,
    ) -> Job:
        body: dict[str, Any] = {"dataset_id": dataset_id, "network": network}
        if training is not None:
            body["training"] = training
        if model_name is not None:
            body["model_name"] = model_name
        headers = {"Idempotency-Key": idempotency_key} if idempotency_key else {}
        return self._request("POST", "/v1/jobs", json=body, headers=headers).json()

    def job(self, job_id: int) -> Job:
        return self._request("GET", f"/v1/jobs/{job_id}").json()

    def jobs(self) -> list[Job]:
        return self._all_pages("/v1/jobs")

    def cancel(self, job_id: int) -> Job:
        return self._request("POST", f"/v1/jobs/{job_id}/cancel").json()

    def epochs(self, job_id: int, after: int = 0) -> list[Epoch]:
        """Every epoch record after epoch ``after``, following the ``Link: rel="next"`` pages."""
        response = self._request("GET", f"/v1/jobs/{job_id}/epochs", params={"after": after})
        rows: list[Epoch] = response.json()
        while "next" in response.links:
            response = self._request("GET", response.links["next"]["url"])
            rows.extend(response.json())
        return rows

    def wait(self, job_id: int, timeout: float | None = None, poll: float = 0.5) -> Job:
        """The job once it has succeeded, failed or been cancelled; ``TimeoutError`` when it has
        not after ``timeout`` seconds (None: wait as long as it takes)."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while (job := self.job(job_id))["status"] not in FINISHED:
            if deadline is not None and time.monotonic() >= deadline:
                raise TimeoutError(f"job {job_id} is still {job['status']} after {timeout} s")
            time.sleep(poll)
        return job

    def follow(self, job_id: int) -> Iterator[Event]:
        """The job's events as they happen: its status on connecting, then each epoch and each
        change of status, ending after the final status. A dropped connection is reopened with
        ``Last-Event-ID``, so no epoch comes twice (nor the status it already gave)."""
        last_epoch: int | None = None
        last_status: dict[str, Any] | None = None
        reconnects = 0
        while True:
            try:
                for position, event in enumerate(self._events(job_id, last_epoch)):
                    reconnects = 0
                    if event.type == "epoch":
                        last_epoch = event.id
                    elif event.data == last_status:
                        continue
                    else:
                        last_status = event.data
                    yield event
                    # A stream opens with the current status: a job that has already ended
                    # sends its epochs after it, and the final status again, last.
                    if position and event.type == "status" and event.data["status"] in FINISHED:
                        return
                if last_status is not None and last_status["status"] in FINISHED:
                    return  # the stream of a job that had ended, read to its end
            except DROPPED:
                pass
            reconnects += 1
            if reconnects > MAX_RECONNECTS:
                raise ConnectionError(f"the event stream of job {job_id} keeps dropping")
            time.sleep(min(0.25 * 2**reconnects, 5))

    def loss_plot(
        self, job_id: int, format: Literal["png", "svg"] = "png", log: bool = False
    ) -> bytes:
        """The job's loss curves as a PNG or SVG image."""
        params = {"log": "true"} if log else {}
        return self._request("GET", f"/v1/jobs/{job_id}/loss.{format}", params=params).content

    # Models

    def models(self) -> list[Model]:
        return self._all_pages("/v1/models")

    def model(self, ref: int | str) -> Model:
        """``ref``: an id, a name (its latest version), ``name:version`` or ``name@alias``."""
        return self._request("GET", f"/v1/models/{_ref(ref)}").json()

    def weights(self, ref: int | str) -> Weights:
        """All a forward pass needs: per layer ``W`` (inputs, units), ``b`` (units,) and the
        activation, the standardisation and the classes."""
        return self._request("GET", f"/v1/models/{_ref(ref)}/weights").json()

    def predict(self, ref: int | str, rows: Sequence[Sequence[float]]) -> Prediction:
        body = {"instances": [list(row) for row in rows]}
        return self._request("POST", f"/v1/models/{_ref(ref)}/predict", json=body).json()

    def explain(
        self, ref: int | str, rows: Sequence[Sequence[float]], **options: Any
    ) -> Explanation:
        """Attributions of each row's output to its features; ``options`` are the body's
        ``method``, ``target``, ``baseline``, ``steps`` and ``quadrature`` (docs/api.md,
        "Explain a prediction")."""
        body = {"instances": [list(row) for row in rows], **options}
        return self._request("POST", f"/v1/models/{_ref(ref)}/explain", json=body).json()

    def importance(
        self, ref: int | str, dataset_id: int, timeout: float | None = None, **options: Any
    ) -> dict[str, Any]:
        """Global feature importance over a seeded sample of a data set's rows; ``options``
        are the body's ``rows``, ``seed``, ``method``... (docs/api.md, "Feature importance").
        One too large for a request is run by a worker: this waits for its operation."""
        body = {"dataset_id": dataset_id, **options}
        response = self._request("POST", f"/v1/models/{_ref(ref)}/importance", json=body)
        return self._answer_of(response, timeout)

    def set_alias(self, name: str, alias: str, version: int) -> Alias:
        path = f"/v1/models/{_ref(name)}/aliases/{_ref(alias)}"
        return self._request("PUT", path, json={"version": version}).json()

    def promote(
        self,
        name: str,
        alias: str,
        version: int,
        dataset_id: int,
        require: dict[str, dict[str, float]] | None = None,
        not_worse_than_current: bool = False,
        timeout: float | None = None,
    ) -> dict[str, Any]:
        """Move ``name@alias`` to ``version`` only if it passes the gate on held-out data
        (docs/api.md, "Rolling out a version"); ``ApiError`` 409 when it does not. A gate on a
        large data set is run by a worker: this waits for its operation."""
        body = {
            "version": version,
            "dataset_id": dataset_id,
            "require": require or {},
            "not_worse_than_current": not_worse_than_current,
        }
        path = f"/v1/models/{_ref(name)}/aliases/{_ref(alias)}/promote"
        return self._answer_of(self._request("POST", path, json=body), timeout)

    # Operations

    def operation(self, operation_id: int) -> Operation:
        return self._request("GET", f"/v1/operations/{operation_id}").json()

    def wait_for_operation(
        self, operation_id: int, timeout: float | None = None, poll: float = 0.5
    ) -> Operation:
        """The operation once it has succeeded or failed; ``TimeoutError`` when it has not
        after ``timeout`` seconds (None: wait as long as it takes)."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while (operation := self.operation(operation_id))["status"] not in OPERATION_ENDED:
            if deadline is not None and time.monotonic() >= deadline:
                raise TimeoutError(
                    f"operation {operation_id} is still {operation['status']} after {timeout} s"
                )
            time.sleep(poll)
        return operation

    def _answer_of(self, response: requests.Response, timeout: float | None) -> dict[str, Any]:
        """The body of a 200, or of the operation a 202 accepted once it ended: its result, or
        its error raised as the ``ApiError`` the request would have answered."""
        if response.status_code != 202:
            return response.json()
        operation = self.wait_for_operation(response.json()["id"], timeout)
        if operation["status"] == "failed":
            raise ApiError.from_operation(operation["error"])
        return operation["result"]

    # HTTP

    # Sweeps

    def create_sweep(self, body: dict[str, Any]) -> Sweep:
        """``body`` is a job body with ``search`` (and ``metric``, ``goal``,
        ``early_termination``, ``max_parallel``, ``model_name``): docs/api.md, "Sweeps"."""
        return self._request("POST", "/v1/sweeps", json=body).json()

    def sweep(self, sweep_id: int) -> Sweep:
        return self._request("GET", f"/v1/sweeps/{sweep_id}").json()

    def sweeps(self) -> list[Sweep]:
        return self._all_pages("/v1/sweeps")

    def cancel_sweep(self, sweep_id: int) -> Sweep:
        return self._request("POST", f"/v1/sweeps/{sweep_id}/cancel").json()

    def _request(self, method: str, path: str, **kwargs: Any) -> requests.Response:
        url = path if path.startswith(("http://", "https://")) else self.base_url + path
        response = self.http.request(method, url, timeout=self.timeout, **kwargs)
        if not response.ok:
            raise ApiError.from_response(response)
        return response

    def _all_pages(self, path: str) -> list[Any]:
        """Every row of a paginated listing, page by page as ``X-Pagination`` counts them."""
        rows: list[Any] = []
        page = 1
        while True:
            params = {"page": page, "page_size": PAGE_SIZE}
            response = self._request("GET", path, params=params)
            rows.extend(response.json())
            pages = json.loads(response.headers.get("X-Pagination") or "{}").get("total_pages", 0)
            if page >= pages:
                return rows
            page += 1

    def _events(self, job_id: int, last_epoch: int | None) -> Iterator[Event]:
        headers = {"Accept": "text/event-stream"}
        if last_epoch is not None:
            headers["Last-Event-ID"] = str(last_epoch)
        path = f"/v1/jobs/{job_id}/events"
        with self._request("GET", path, headers=headers, stream=True) as response:
            yield from parse_events(response.iter_lines(decode_unicode=True))


def _columns(columns: Sequence[Any] | str | None) -> str | None:
    """Column names as the form takes them: comma-separated."""
    if columns is None or isinstance(columns, str):
        return columns
    return ",".join(str(column) for column in columns)


def _ref(ref: int | str) -> str:
    return quote(str(ref), safe=":@")
