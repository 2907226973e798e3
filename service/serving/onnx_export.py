"""A trained model as an ONNX graph that onnxruntime (or any ONNX runtime) runs with our numbers.

The graph repeats model_core's forward pass op by op rather than folding anything into the
weights: the standardisation stays ``Sub`` then ``Div`` because ``(x - mean) / scale`` folded into
the first layer's W and b loses float32 precision on columns with large means (1e6 + noise keeps
only a few bits of the noise once multiplied into the weights).
"""

from collections.abc import Callable

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from model_core import Model
from model_core.activations import LEAKY_RELU_SLOPE
from service.serving.predictions import classes_array

# Opset 21 (IR version 10) is old enough for every onnxruntime of the last two years and has
# every op used here in its current form (ReduceSum and Squeeze take their axes as inputs).
OPSET = 21
INPUT = "input"
PROBABILITIES = "probabilities"
PREDICTIONS = "predictions"
PRODUCER = "backprop-service"
ELEMENT_TYPES = {np.dtype(np.float32): TensorProto.FLOAT, np.dtype(np.float64): TensorProto.DOUBLE}


class NotExportable(ValueError):
    """The model has something the ONNX graph cannot express; the message names it."""


class GraphBuilder:
    """Nodes and initializers in the order they are added, every value named once.

    Constants are created in the model's dtype, as numpy would broadcast a Python float into a
    float32 or float64 array, so that each op computes in the same precision as model_core.
    """

    def __init__(self, dtype: np.dtype):
        self.dtype = dtype
        self.nodes: list[onnx.NodeProto] = []
        self.initializers: dict[str, onnx.TensorProto] = {}

    def constant(self, name: str, value) -> str:
        """An initializer holding the number or array ``value`` in the model's dtype."""
        return self.initializer(name, np.asarray(value, dtype=self.dtype))

    def initializer(self, name: str, array: np.ndarray) -> str:
        """An initializer holding ``array`` in its own dtype; a name is stored once."""
        if name not in self.initializers:
            self.initializers[name] = numpy_helper.from_array(array, name)
        return name

    def add(self, op: str, inputs: list[str], output: str, **attributes) -> str:
        """Appends ``op(inputs) -> output``; returns ``output`` so that calls nest."""
        self.nodes.append(helper.make_node(op, inputs, [output], name=output, **attributes))
        return output


# -- activations: each takes the pre-activation's name and returns the activation's ------------


def onnx_sigmoid(graph: GraphBuilder, z: str, prefix: str) -> str:
    return graph.add("Sigmoid", [z], f"{prefix}.sigmoid")


def onnx_tanh(graph: GraphBuilder, z: str, prefix: str) -> str:
    return graph.add("Tanh", [z], f"{prefix}.tanh")


def onnx_relu(graph: GraphBuilder, z: str, prefix: str) -> str:
    return graph.add("Relu", [z], f"{prefix}.relu")


def onnx_leaky_relu(graph: GraphBuilder, z: str, prefix: str) -> str:
    """max(z, slope * z) as model_core writes it. ONNX's LeakyRelu takes its slope as a float32
    attribute, which is 2e-8 off 0.01 relatively: too far for a float64 model."""
    slope = graph.constant("leaky_relu_slope", LEAKY_RELU_SLOPE)
    scaled = graph.add("Mul", [z, slope], f"{prefix}.scaled")
    return graph.add("Max", [z, scaled], f"{prefix}.leaky_relu")


def onnx_linear(graph: GraphBuilder, z: str, prefix: str) -> str:
    return z


def onnx_softmax(graph: GraphBuilder, z: str, prefix: str) -> str:
    """Softmax over the last axis (each row), as model_core's; ONNX's op also subtracts the row
    maximum first."""
    return graph.add("Softmax", [z], f"{prefix}.softmax", axis=-1)


OnnxActivation = Callable[[GraphBuilder, str, str], str]
ONNX_ACTIVATIONS: dict[str, OnnxActivation] = {
    "sigmoid": onnx_sigmoid,
    "tanh": onnx_tanh,
    "relu": onnx_relu,
    "leaky_relu": onnx_leaky_relu,
    "linear": onnx_linear,
    "softmax": onnx_softmax,
}


# -- the graph, front to back -------------------------------------------------------------------


def onnx_model_bytes(model: Model) -> bytes:
    """The model as a serialized ONNX ModelProto (opset :data:`OPSET`), checked by onnx.checker.

    The graph: input ``input`` (N, n_features) in the model's dtype (FLOAT for float32, DOUBLE
    for float64); ``Sub`` mean and ``Div`` scale when the model standardises; per layer a ``Gemm``
    (W (inputs, units), b (units,)) and its activation. Classifiers have two outputs:
    ``probabilities`` (N, n_classes), columns in the order of ``model.classes``, the same
    post-processing as ``service.serving.predictions.predict`` (softmax as is, one sigmoid unit
    as (1 - p, p), other outputs clipped at 0 and normalised per row), and ``predictions`` (N,),
    the labels (INT64, STRING, BOOL or DOUBLE as the classes are) by ``ArgMax`` (or p > 0.5 for
    one unit) and ``Gather``. Regression has one output, ``predictions`` (N, n_outputs).

    Raises :class:`NotExportable` for an activation with no ONNX counterpart or classes that no
    ONNX tensor holds.
    """
    graph = GraphBuilder(model.dtype)
    outputs = network_output(graph, model)
    if model.task == "classification":
        graph_outputs = classification_outputs(graph, model, outputs)
    else:
        graph_outputs = [regression_output(graph, model, outputs)]
    proto = helper.make_model(
        helper.make_graph(
            graph.nodes,
            "backprop_model",
            [tensor_info(INPUT, model.dtype, ["N", model.n_features])],
            graph_outputs,
            list(graph.initializers.values()),
        ),
        opset_imports=[helper.make_opsetid("", OPSET)],
        producer_name=PRODUCER,
    )
    proto.ir_version = helper.find_min_ir_version_for(proto.opset_import)
    onnx.checker.check_model(proto, full_check=True)
    return proto.SerializeToString()


def tensor_info(name: str, dtype: np.dtype, shape: list) -> onnx.ValueInfoProto:
    return helper.make_tensor_value_info(name, element_type(dtype), shape)


def element_type(dtype: np.dtype) -> int:
    """The ONNX element type of a network's dtype: FLOAT or DOUBLE."""
    try:
        return ELEMENT_TYPES[np.dtype(dtype)]
    except KeyError:
        raise NotExportable(
            f"dtype {dtype} has no ONNX export; expected float32 or float64"
        ) from None


def network_output(graph: GraphBuilder, model: Model) -> str:
    """Standardisation, then every layer: the name of the last layer's activation (N, units)."""
    a = standardized_input(graph, model)
    for i, ((w, b), activation) in enumerate(zip(model.weights, model.activations, strict=True)):
        a = dense_layer(graph, a, i, w, b, activation.name)
    return a


def standardized_input(graph: GraphBuilder, model: Model) -> str:
    """``(input - mean) / scale`` as two nodes, or the input itself for an unstandardised model."""
    if model.mean is None:
        return INPUT
    mean = graph.initializer("mean", np.asarray(model.mean, dtype=model.dtype))
    scale = graph.initializer("scale", np.asarray(model.scale, dtype=model.dtype))
    centred = graph.add("Sub", [INPUT, mean], "centred")
    return graph.add("Div", [centred, scale], "standardized")


def dense_layer(
    graph: GraphBuilder, a: str, i: int, w: np.ndarray, b: np.ndarray, activation: str
) -> str:
    """``activation(a @ W + b)`` for layer ``i``: a Gemm, then the activation's nodes."""
    prefix = f"layer{i}"
    try:
        to_onnx = ONNX_ACTIVATIONS[activation]
    except KeyError:
        raise NotExportable(
            f"layers[{i}].activation: {activation!r} has no ONNX export; exportable activations"
            f" are {', '.join(sorted(ONNX_ACTIVATIONS))}"
        ) from None
    weights = graph.initializer(f"{prefix}.W", np.asarray(w, dtype=graph.dtype))
    bias = graph.initializer(f"{prefix}.b", np.asarray(b, dtype=graph.dtype))
    z = graph.add("Gemm", [a, weights, bias], f"{prefix}.z")
    return to_onnx(graph, z, prefix)


def regression_output(graph: GraphBuilder, model: Model, outputs: str) -> onnx.ValueInfoProto:
    """``predictions`` (N, n_outputs): the last layer's activations as they are."""
    graph.add("Identity", [outputs], PREDICTIONS)
    return tensor_info(PREDICTIONS, model.dtype, ["N", model.n_outputs])


def classification_outputs(
    graph: GraphBuilder, model: Model, outputs: str
) -> list[onnx.ValueInfoProto]:
    """``probabilities`` (N, n_classes) and ``predictions`` (N,) as model_core computes them."""
    units = model.weights[-1][0].shape[1]
    columns = probability_columns(graph, outputs, model.activations[-1].name, units)
    graph.add("Identity", [columns], PROBABILITIES)
    labels = graph.initializer("classes", onnx_classes(model.classes))
    graph.add("Gather", [labels, class_indices(graph, outputs, units)], PREDICTIONS, axis=0)
    return [
        tensor_info(PROBABILITIES, model.dtype, ["N", len(model.classes)]),
        helper.make_tensor_value_info(PREDICTIONS, graph.initializers[labels].data_type, ["N"]),
    ]


def probability_columns(graph: GraphBuilder, outputs: str, activation: str, units: int) -> str:
    """model_core's ``output_probabilities``: one unit as (1 - p, p), softmax as is, anything
    else clipped at zero and divided by its row sum (a row summing to 0 becomes uniform)."""
    if units == 1:
        one = graph.constant("one", 1.0)
        complement = graph.add("Sub", [one, outputs], "complement")
        return graph.add("Concat", [complement, outputs], "both_classes", axis=1)
    if activation == "softmax":
        return outputs
    clipped = graph.add("Relu", [outputs], "clipped")
    axes = graph.initializer("class_axis", np.array([1], dtype=np.int64))
    totals = graph.add("ReduceSum", [clipped, axes], "totals", keepdims=1)
    positive = graph.add("Greater", [totals, graph.constant("zero", 0.0)], "positive")
    normalised = graph.add("Div", [clipped, totals], "normalised")
    uniform = graph.constant("uniform", 1.0 / units)
    return graph.add("Where", [positive, normalised, uniform], "clipped_probabilities")


def class_indices(graph: GraphBuilder, outputs: str, units: int) -> str:
    """model_core's ``class_indices`` (N,) INT64: ArgMax over the units (the first of equal
    maxima, as numpy), or p > 0.5 for a single unit."""
    if units > 1:
        return graph.add("ArgMax", [outputs], "class_index", axis=1, keepdims=0)
    above = graph.add("Greater", [outputs, graph.constant("half", 0.5)], "above_half")
    as_index = graph.add("Cast", [above], "above_half_index", to=TensorProto.INT64)
    axes = graph.initializer("unit_axis", np.array([1], dtype=np.int64))
    return graph.add("Squeeze", [as_index, axes], "class_index")


def onnx_classes(classes: list) -> np.ndarray:
    """The labels in the type ``predict`` returns them in, as an array that becomes an INT64,
    STRING, BOOL or DOUBLE tensor (integers, strings, booleans, numbers with a fraction)."""
    try:
        array = classes_array(classes)
    except ValueError as error:
        raise NotExportable(f"classes: {error}") from None
    # onnx stores strings from object arrays; a fixed-width unicode array is not one of its types.
    return array.astype(object) if array.dtype.kind == "U" else array
