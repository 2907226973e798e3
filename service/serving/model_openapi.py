"""One model's OpenAPI 3.1 document: its predict operation alone, the request body a JSON Schema
with one required ``number`` property per input of the model's signature, the response with the
model's own classes as ``enum`` and exactly as many probabilities as it has classes.

An app (or a code generator) reads the contract of the very model it calls, as MLflow's users
asked (mlflow issues 2972 and 6086). The forms are exact: a body the schema accepts is one the
service predicts for, and one it refuses is one the service refuses with a 4xx.
"""

from typing import Any

from model_core import Model
from service.signatures import input_names

ERROR = {
    "type": "object",
    "properties": {
        "error": {
            "type": "object",
            "properties": {
                "code": {"type": "string"},
                "message": {"type": "string"},
                "details": {
                    "type": "object",
                    "additionalProperties": {"type": "array", "items": {"type": "string"}},
                },
            },
        }
    },
}
ERROR_CONTENT = {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}
ERRORS = {
    "400": "Not JSON",
    "401": "No valid API key (AUTH=required)",
    "403": "The key's scope does not allow it",
    "404": "No such model (anymore)",
    "413": "Over MAX_REQUEST_BYTES",
    "415": "Neither JSON nor CSV",
    "422": "Rows that do not fit the model",
    "429": "Over the rate limit",
}


def fixed_array(items: dict, count: int) -> dict:
    return {"type": "array", "items": items, "minItems": count, "maxItems": count}


def input_number(model: Model) -> dict:
    """A value the model computes with finitely (``Model.input_bound``): a larger one is
    refused with a 422."""
    return {"type": "number", "minimum": -model.input_bound, "maximum": model.input_bound}


def request_forms(model: Model, names: list[str], max_rows: int) -> list[dict]:
    """The three forms of the body, each with exactly the model's inputs: ``records``,
    ``columns`` + ``data``, and positional ``instances``."""
    number = input_number(model)
    rows = {"type": "array", "minItems": 1, "maxItems": max_rows}
    record = {
        "type": "object",
        "properties": dict.fromkeys(names, number),
        "required": names,
        "additionalProperties": False,
    }
    columns = {**fixed_array({"type": "string", "enum": names}, len(names)), "uniqueItems": True}
    return [
        body_form({"records": {**rows, "items": record}}, "one object per row, by feature name"),
        body_form(
            {"columns": columns, "data": {**rows, "items": fixed_array(number, len(names))}},
            "the names of data's columns (every input, in any order), then the rows",
        ),
        body_form(
            {"instances": {**rows, "items": fixed_array(number, len(names))}},
            f"rows of numbers in input order: {', '.join(names)}",
        ),
    ]


ROUTING_KEY = {
    "type": "string",
    "minLength": 1,
    "maxLength": 200,
    "description": "on an alias split between versions, the same key always gets the same one",
}


def body_form(properties: dict, description: str) -> dict:
    """One form of the body: ``properties`` required, and an optional ``routing_key``."""
    return {
        "type": "object",
        "description": description,
        "properties": {**properties, "routing_key": ROUTING_KEY},
        "required": list(properties),
        "additionalProperties": False,
    }


def prediction_schema(model: Model, signature: dict) -> dict:
    """What a 200 answers: which model, and the predictions (the classes' labels, and each
    row's probabilities in class order; or the regression values)."""
    identity = {
        "model_id": {"type": "integer"},
        "name": {"type": ["string", "null"]},
        "version": {"type": ["integer", "null"]},
    }
    outputs = signature["outputs"]
    if "classes" in outputs:
        classes = outputs["classes"]
        answers = {
            "predictions": {"type": "array", "items": {"enum": classes}},
            "probabilities": {
                "type": "array",
                "items": fixed_array({"type": "number"}, len(classes)),
            },
        }
    elif model.n_outputs == 1 and model.target_ndim == 1:
        answers = {"predictions": {"type": "array", "items": {"type": "number"}}}
    else:
        value = fixed_array({"type": "number"}, len(outputs["targets"]))
        answers = {"predictions": {"type": "array", "items": value}}
    return {
        "type": "object",
        "properties": {**identity, **answers},
        "required": list(answers),
    }


def model_openapi(
    ref: str,
    title: str,
    model: Model,
    signature: dict,
    *,
    server_url: str,
    max_rows: int,
    secured: bool,
) -> dict[str, Any]:
    """The document of ``POST {server_url}/v1/models/{ref}/predict`` for this model;
    ``secured``: the operation needs an API key as a bearer token (AUTH=required)."""
    names = input_names(signature)
    operation: dict[str, Any] = {
        "operationId": "predict",
        "summary": f"Predict with {title}",
        "requestBody": {
            "required": True,
            "content": {
                "application/json": {"schema": {"oneOf": request_forms(model, names, max_rows)}}
            },
        },
        "responses": {
            "200": {
                "description": "The predictions, one per row",
                "content": {"application/json": {"schema": prediction_schema(model, signature)}},
            },
            **{
                status: {
                    "description": description,
                    "content": {
                        "application/json": {"schema": {"$ref": "#/components/schemas/Error"}}
                    },
                }
                for status, description in ERRORS.items()
            },
        },
    }
    document: dict[str, Any] = {
        "openapi": "3.1.0",
        "info": {
            "title": title,
            "version": "1",
            "description": "The predict operation of one model, its inputs by name",
        },
        "servers": [{"url": server_url}],
        "paths": {f"/v1/models/{ref}/predict": {"post": operation}},
        "components": {"schemas": {"Error": ERROR}},
    }
    if secured:
        document["components"]["securitySchemes"] = {"bearer": {"type": "http", "scheme": "bearer"}}
        document["security"] = [{"bearer": []}]
    return document
