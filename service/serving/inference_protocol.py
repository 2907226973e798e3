"""The Open Inference Protocol (KServe v2) as plain values: an infer request's bytes in, the
rows to predict out; the predictions in, the response's bytes out; and the model metadata.

A request is JSON, or with the binary tensor extension a JSON header of
``Inference-Header-Content-Length`` bytes followed by each input's raw little-endian bytes, in
input order, ``parameters.binary_data_size`` bytes each (tritonclient's default). A response is
JSON, or a JSON header followed by the raw bytes of the outputs asked for in binary
(``parameters.binary_data`` per output, ``parameters.binary_data_output`` for every output).
BYTES elements travel as a 4-byte little-endian length then the UTF-8 bytes.

Every problem with a request raises ``ProtocolError`` whose message names the tensor (or header)
and what is wrong with it: the HTTP layer answers it as a 400.
"""

import json
import math
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from model_core import Model, SpecError
from model_core.preprocessing import check_finite
from service.json_depth import MAX_JSON_DEPTH, depth_unless_shallow

HEADER_LENGTH = "Inference-Header-Content-Length"
# More than any body's length (MAX_REQUEST_BYTES) has digits.
MAX_LENGTH_DIGITS = 18
INPUT = "input"
PREDICTIONS = "predictions"
PROBABILITIES = "probabilities"
PLATFORM = "backprop_numpy"
EXTENSIONS = ("binary_tensor_data",)

INPUT_DTYPES = {"FP32": np.dtype("<f4"), "FP64": np.dtype("<f8")}
FLOAT_DATATYPES = {np.dtype(np.float32): "FP32", np.dtype(np.float64): "FP64"}
LABEL_DATATYPES = {"b": "BOOL", "i": "INT64", "u": "UINT64", "f": "FP64", "U": "BYTES"}
WIRE_DTYPES = {
    "BOOL": np.dtype("?"),
    "INT64": np.dtype("<i8"),
    "UINT64": np.dtype("<u8"),
    "FP32": np.dtype("<f4"),
    "FP64": np.dtype("<f8"),
}


class ProtocolError(ValueError):
    """A request this protocol, or this model, cannot take; the message says which tensor or
    header is wrong and how."""


@dataclass(frozen=True)
class TensorSpec:
    """What the metadata says of a tensor: a datatype and a shape, -1 for any number of rows."""

    datatype: str
    shape: tuple[int, ...]

    def as_metadata(self, name: str) -> dict[str, Any]:
        return {"name": name, "datatype": self.datatype, "shape": list(self.shape)}


@dataclass(frozen=True)
class RequestedOutput:
    name: str
    binary: bool


@dataclass(frozen=True)
class InferRequest:
    """``x`` (n_samples, n_features) in the model's dtype; the outputs to answer, in order."""

    x: np.ndarray
    outputs: tuple[RequestedOutput, ...]
    request_id: str | None


def input_spec(model: Model) -> TensorSpec:
    return TensorSpec(FLOAT_DATATYPES[model.dtype], (-1, model.n_features))


def output_specs(model: Model) -> dict[str, TensorSpec]:
    """``predictions`` (labels (n,) for classification: INT64, BYTES for strings; values
    (n, n_outputs) for regression) and, for classification, ``probabilities`` (n, n_classes)."""
    values = FLOAT_DATATYPES[model.dtype]
    if model.task != "classification":
        return {PREDICTIONS: TensorSpec(values, (-1, model.n_outputs))}
    return {
        PREDICTIONS: TensorSpec(label_datatype(model.classes), (-1,)),
        PROBABILITIES: TensorSpec(values, (-1, len(model.classes))),
    }


def label_datatype(classes: list) -> str:
    """The datatype of the class labels as ``Model.predict`` returns them."""
    return LABEL_DATATYPES[np.asarray(classes).dtype.kind]


def model_metadata(
    model: Model, name: str, version: str | None, feature_names: list[str]
) -> dict[str, Any]:
    """The model metadata response: the one input, ``input``, whose columns ``feature_names``
    are (as ``parameters.feature_names``, MLServer's extension), and the outputs."""
    metadata: dict[str, Any] = {"name": name}
    if version is not None:
        metadata["versions"] = [version]
    metadata["platform"] = PLATFORM
    the_input = input_spec(model).as_metadata(INPUT)
    metadata["inputs"] = [{**the_input, "parameters": {"feature_names": feature_names}}]
    metadata["outputs"] = [spec.as_metadata(out) for out, spec in output_specs(model).items()]
    return metadata


# Requests


def parse_infer_request(
    body: bytes | memoryview, header_length: str | None, model: Model, max_rows: int
) -> InferRequest:
    """The rows and requested outputs of an infer request's ``body``; ``header_length`` is the
    ``Inference-Header-Content-Length`` header as sent (None: the body is all JSON). Binary
    rows in the model's dtype are a view of ``body``, not a copy."""
    header, binary = split_body(body, header_length)
    x = input_rows(header, binary, model, max_rows)
    request_id = header.get("id")
    if request_id is not None and not isinstance(request_id, str):
        raise ProtocolError(f"id must be a string; got {json.dumps(request_id)}")
    return InferRequest(x, requested_outputs(header, output_specs(model)), request_id)


def split_body(body: bytes | memoryview, header_length: str | None) -> tuple[dict, memoryview]:
    """The JSON header as a dict and the binary tensor data after it (a view, not a copy)."""
    size = len(body) if header_length is None else parse_header_length(header_length, len(body))
    view = memoryview(body)
    text = view[:size].tobytes()
    check_depth(text)
    try:
        header = json.loads(text)
    except (UnicodeDecodeError, ValueError) as error:
        where = "the request body" if header_length is None else f"the first {size} bytes"
        raise ProtocolError(f"{where} must be a JSON inference request: {error}") from None
    if not isinstance(header, dict):
        raise ProtocolError("the inference request must be a JSON object with 'inputs'")
    return header, view[size:]


def check_depth(header: bytes) -> None:
    """The JSON header nests at most ``MAX_JSON_DEPTH`` levels: ``json.loads`` recurses."""
    depth = depth_unless_shallow(header)
    if depth > MAX_JSON_DEPTH:
        raise ProtocolError(
            f"the inference request nests {depth} levels deep; at most {MAX_JSON_DEPTH} are"
            " accepted"
        )


def parse_header_length(text: str, body_size: int) -> int:
    """The header's value as a number of bytes: a decimal integer of at most
    ``MAX_LENGTH_DIGITS`` digits (``int()`` refuses "²", and 5,000 digits with a ValueError of
    its own)."""
    digits = text.strip()
    if not (digits.isascii() and digits.isdigit() and len(digits) <= MAX_LENGTH_DIGITS):
        shown = repr(text) if len(text) <= MAX_LENGTH_DIGITS else f"{len(text)} characters"
        raise ProtocolError(
            f"{HEADER_LENGTH} must be a number of bytes of at most {MAX_LENGTH_DIGITS} digits;"
            f" got {shown}"
        )
    size = int(digits)
    if size > body_size:
        raise ProtocolError(f"{HEADER_LENGTH} is {size} but the body has only {body_size} bytes")
    return size


def input_rows(header: dict, binary: memoryview, model: Model, max_rows: int) -> np.ndarray:
    """The ``input`` tensor as rows (n_samples, n_features) in the model's dtype."""
    tensor = the_input(header.get("inputs"))
    datatype = tensor.get("datatype")
    if not isinstance(datatype, str) or datatype not in INPUT_DTYPES:
        raise ProtocolError(
            f"input '{INPUT}': datatype {json.dumps(datatype)} is not accepted; send FP32 or FP64"
        )
    shape = tensor_shape(tensor)
    values = input_values(tensor, binary, INPUT_DTYPES[datatype], shape)
    check_rows(shape, model.n_features, max_rows)
    x = values.reshape(shape).astype(model.dtype, copy=False)
    try:
        check_finite(x, "data")
    except SpecError as error:
        raise ProtocolError(f"input '{INPUT}': {error.message}") from None
    return x


def the_input(inputs: object) -> Mapping[str, Any]:
    """The one tensor of ``inputs``, which must be named ``input``."""
    if not isinstance(inputs, list) or not all(isinstance(each, dict) for each in inputs):
        raise ProtocolError("inputs must be a list of tensors, each an object with a name")
    names = [each.get("name") for each in inputs]
    if names != [INPUT]:
        raise ProtocolError(
            f"inputs: the model takes one tensor named '{INPUT}'; got {json.dumps(names)}"
        )
    return inputs[0]


def tensor_shape(tensor: Mapping[str, Any]) -> tuple[int, ...]:
    shape = tensor.get("shape")
    if not isinstance(shape, list) or not all(is_count(each) for each in shape):
        raise ProtocolError(
            f"input '{INPUT}': shape must be a list of non-negative integers; got"
            f" {json.dumps(shape)}"
        )
    return tuple(shape)


def is_count(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def check_rows(shape: tuple[int, ...], n_features: int, max_rows: int) -> None:
    """The shape is (rows, n_features) with 1 to ``max_rows`` rows."""
    if len(shape) != 2:
        raise ProtocolError(
            f"input '{INPUT}': shape {list(shape)} must be [rows, {n_features}] (2-D)"
        )
    rows, columns = shape
    if columns != n_features:
        raise ProtocolError(
            f"input '{INPUT}': each row needs {n_features} features; shape {list(shape)} has"
            f" {columns}"
        )
    if not 1 <= rows <= max_rows:
        raise ProtocolError(
            f"input '{INPUT}': shape {list(shape)} has {rows} rows; send 1 to {max_rows}"
        )


def input_values(
    tensor: Mapping[str, Any], binary: memoryview, dtype: np.dtype, shape: tuple[int, ...]
) -> np.ndarray:
    """The tensor's elements (flat) from the binary data or from ``data``, as many as the
    shape holds."""
    parameters = tensor.get("parameters") or {}
    if not isinstance(parameters, dict):
        raise ProtocolError(f"input '{INPUT}': parameters must be an object")
    size = parameters.get("binary_data_size")
    if size is None:
        if len(binary):
            raise ProtocolError(
                f"{len(binary)} bytes follow the JSON header but input '{INPUT}' has no"
                " parameters.binary_data_size"
            )
        return json_values(tensor.get("data"), dtype, shape)
    if "data" in tensor:
        raise ProtocolError(f"input '{INPUT}' has both data and parameters.binary_data_size")
    return binary_values(size, binary, dtype, shape)


def binary_values(
    size: object, binary: memoryview, dtype: np.dtype, shape: tuple[int, ...]
) -> np.ndarray:
    if not is_count(size):
        raise ProtocolError(
            f"input '{INPUT}': parameters.binary_data_size must be a non-negative integer"
        )
    if size != len(binary):
        raise ProtocolError(
            f"input '{INPUT}': parameters.binary_data_size is {size} but {len(binary)} bytes"
            f" follow the JSON header ({HEADER_LENGTH})"
        )
    expected = math.prod(shape) * dtype.itemsize
    if size != expected:
        raise ProtocolError(
            f"input '{INPUT}': shape {list(shape)} of {dtype_name(dtype)} needs {expected} bytes;"
            f" binary_data_size is {size}"
        )
    return np.frombuffer(binary, dtype=dtype)


def json_values(data: object, dtype: np.dtype, shape: tuple[int, ...]) -> np.ndarray:
    """``data`` flat or nested in row-major order, numbers only."""
    if not isinstance(data, list):
        raise ProtocolError(
            f"input '{INPUT}': data must be a list of numbers (or binary data after the header)"
        )
    try:
        array = np.array(data)
    except (ValueError, OverflowError):
        raise ProtocolError(f"input '{INPUT}': data must be numbers, nested evenly") from None
    if array.dtype.kind not in "iuf" and array.size:
        raise ProtocolError(f"input '{INPUT}': data must hold numbers only")
    if array.size != math.prod(shape):
        raise ProtocolError(
            f"input '{INPUT}': shape {list(shape)} holds {math.prod(shape)} values; data has"
            f" {array.size}"
        )
    return array.reshape(-1).astype(dtype)


def dtype_name(dtype: np.dtype) -> str:
    return next(name for name, each in INPUT_DTYPES.items() if each == dtype)


def requested_outputs(header: dict, specs: Mapping[str, TensorSpec]) -> tuple[RequestedOutput, ...]:
    """The outputs asked for, each in binary or not; every output when none is named.

    ``parameters.binary_data_output`` (request level) is the default of each output's own
    ``parameters.binary_data``.
    """
    binary_default = flag(header.get("parameters"), "binary_data_output", "parameters")
    outputs = header.get("outputs")
    if outputs is None:
        return tuple(RequestedOutput(name, binary_default) for name in specs)
    if not isinstance(outputs, list) or not outputs:
        raise ProtocolError('outputs must be a non-empty list of {"name": ...} objects')
    if len(outputs) > len(specs):
        raise ProtocolError(
            f"outputs: {len(outputs)} requested; this model has {len(specs)} ({known(specs)})"
        )
    requested = tuple(requested_output(each, specs, binary_default) for each in outputs)
    check_distinct(requested)
    return requested


def check_distinct(requested: tuple[RequestedOutput, ...]) -> None:
    """Each output is named once: each name asked for again would be encoded again."""
    for name, times in Counter(output.name for output in requested).items():
        if times > 1:
            raise ProtocolError(f"outputs: '{name}' is requested {times} times; name it once")


def known(specs: Mapping[str, TensorSpec]) -> str:
    return ", ".join(f"'{each}'" for each in specs)


def requested_output(
    output: object, specs: Mapping[str, TensorSpec], binary_default: bool
) -> RequestedOutput:
    name = output.get("name") if isinstance(output, dict) else None
    if not isinstance(name, str) or name not in specs:
        raise ProtocolError(
            f"outputs: unknown output {json.dumps(name)}; this model has {known(specs)}"
        )
    parameters = output.get("parameters")
    if isinstance(parameters, dict) and "classification" in parameters:
        raise ProtocolError(
            f"output '{name}': parameters.classification is not supported; ask for"
            f" '{PROBABILITIES}'"
        )
    binary = flag(parameters, "binary_data", f"output '{name}': parameters", binary_default)
    return RequestedOutput(name, binary)


def flag(parameters: object, key: str, where: str, default: bool = False) -> bool:
    if parameters is None:
        return default
    if not isinstance(parameters, dict):
        raise ProtocolError(f"{where} must be an object")
    value = parameters.get(key, default)
    if not isinstance(value, bool):
        raise ProtocolError(f"{where}.{key} must be true or false; got {json.dumps(value)}")
    return value


# Responses


def infer_outputs(model: Model, predictions: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    """``service.serving.predictions.prediction_arrays``'s arrays in the shapes of
    :func:`output_specs`: a regression's single target becomes one column."""
    outputs = dict(predictions)
    if model.task != "classification" and outputs[PREDICTIONS].ndim == 1:
        outputs[PREDICTIONS] = outputs[PREDICTIONS].reshape(-1, 1)
    return outputs


def encode_infer_response(
    request: InferRequest,
    outputs: Mapping[str, np.ndarray],
    specs: Mapping[str, TensorSpec],
    model_name: str,
    model_version: str | None,
    prediction_id: str | None = None,
) -> tuple[list[bytes], int | None]:
    """The response body as its pieces, to be sent one after the other (the JSON header, then
    each binary output: never joined into a copy of them all), and, when some output travels in
    binary, the length of the header (the ``Inference-Header-Content-Length`` to send). A
    ``prediction_id`` goes in the response's ``parameters``."""
    response: dict[str, Any] = {"model_name": model_name}
    if model_version is not None:
        response["model_version"] = model_version
    if request.request_id is not None:
        response["id"] = request.request_id
    if prediction_id is not None:
        response["parameters"] = {"prediction_id": prediction_id}
    tensors, chunks = [], []
    for output in request.outputs:
        array, datatype = outputs[output.name], specs[output.name].datatype
        tensor = {"name": output.name, "datatype": datatype, "shape": list(array.shape)}
        if output.binary:
            chunks.append(tensor_bytes(array, datatype))
            tensor["parameters"] = {"binary_data_size": len(chunks[-1])}
        else:
            tensor["data"] = array.reshape(-1).tolist()
        tensors.append(tensor)
    response["outputs"] = tensors
    header = json.dumps(response, separators=(",", ":")).encode()
    return [header, *chunks], len(header) if chunks else None


def tensor_bytes(array: np.ndarray, datatype: str) -> bytes:
    """Row-major little-endian elements; BYTES as a 4-byte length and the UTF-8 of each."""
    if datatype == "BYTES":
        return serialize_bytes(array)
    return np.ascontiguousarray(array, dtype=WIRE_DTYPES[datatype]).tobytes()


def serialize_bytes(array: np.ndarray) -> bytes:
    parts = []
    for element in array.reshape(-1).tolist():
        encoded = str(element).encode()
        parts += [len(encoded).to_bytes(4, "little"), encoded]
    return b"".join(parts)


def server_metadata(name: str, version: str) -> dict[str, Any]:
    return {"name": name, "version": version, "extensions": list(EXTENSIONS)}
