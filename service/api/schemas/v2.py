"""The Open Inference Protocol's (KServe v2) bodies, for the OpenAPI document: the views build
and parse them with service.serving.inference_protocol, not with these schemas."""

import marshmallow as ma

TENSOR_DATATYPES = "FP32 or FP64 in requests; FP32, FP64, INT64, BOOL or BYTES in responses"


class ProtocolErrorSchema(ma.Schema):
    error = ma.fields.String(metadata={"description": "what is wrong, naming the tensor"})


class LiveSchema(ma.Schema):
    live = ma.fields.Boolean()


class ReadySchema(ma.Schema):
    ready = ma.fields.Boolean()


class ModelReadySchema(ReadySchema):
    name = ma.fields.String()


class ServerMetadataSchema(ma.Schema):
    name = ma.fields.String()
    version = ma.fields.String()
    extensions = ma.fields.List(ma.fields.String())


class TensorMetadataSchema(ma.Schema):
    name = ma.fields.String()
    datatype = ma.fields.String(metadata={"description": TENSOR_DATATYPES})
    shape = ma.fields.List(ma.fields.Integer(), metadata={"description": "-1: any number of rows"})


class InputParametersSchema(ma.Schema):
    feature_names = ma.fields.List(
        ma.fields.String(),
        metadata={
            "description": "the name of each column of the input, in order (MLServer's"
            " extension of the metadata; x0, x1, ... when the training data named none)"
        },
    )


class InputMetadataSchema(TensorMetadataSchema):
    parameters = ma.fields.Nested(InputParametersSchema)


class ModelMetadataSchema(ma.Schema):
    name = ma.fields.String(metadata={"description": "the model's name, or its id if unnamed"})
    versions = ma.fields.List(ma.fields.String(), metadata={"description": "the answering one"})
    platform = ma.fields.String()
    inputs = ma.fields.List(ma.fields.Nested(InputMetadataSchema))
    outputs = ma.fields.List(ma.fields.Nested(TensorMetadataSchema))


class TensorParametersSchema(ma.Schema):
    binary_data_size = ma.fields.Integer(
        metadata={"description": "bytes of this tensor after the JSON header, in tensor order"}
    )


class OutputParametersSchema(ma.Schema):
    binary_data = ma.fields.Boolean(metadata={"description": "answer this output in binary"})


class TensorSchema(TensorMetadataSchema):
    parameters = ma.fields.Nested(TensorParametersSchema)
    data = ma.fields.List(
        ma.fields.Raw(), metadata={"description": "row-major elements, flat or nested"}
    )


class RequestedOutputSchema(ma.Schema):
    name = ma.fields.String()
    parameters = ma.fields.Nested(OutputParametersSchema)


class InferParametersSchema(ma.Schema):
    binary_data_output = ma.fields.Boolean(
        metadata={"description": "answer every output in binary unless it says otherwise"}
    )


class InferRequestSchema(ma.Schema):
    id = ma.fields.String()
    parameters = ma.fields.Nested(InferParametersSchema)
    inputs = ma.fields.List(
        ma.fields.Nested(TensorSchema), metadata={"description": "one tensor, 'input'"}
    )
    outputs = ma.fields.List(
        ma.fields.Nested(RequestedOutputSchema), metadata={"description": "default: every one"}
    )


class InferResponseSchema(ma.Schema):
    model_name = ma.fields.String()
    model_version = ma.fields.String()
    id = ma.fields.String()
    parameters = ma.fields.Dict(
        metadata={"description": "prediction_id: this answer's id in the prediction log"}
    )
    outputs = ma.fields.List(ma.fields.Nested(TensorSchema))
