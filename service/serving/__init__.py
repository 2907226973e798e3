"""Serving a trained model, with no Flask: predictions and weights as plain values
(``predictions``), the rows a request sends and their checks (``rows``, ``model_inputs``,
``csv_predictions``), the Open Inference Protocol's tensors (``inference_protocol``), ONNX
export (``onnx_export``) and evaluation on labelled rows (``evaluation``).
"""
