"""model_core: a NumPy feedforward network trained by backpropagation. Maths only: no I/O.

See docs/model_core.md for the public surface.
"""

from model_core.errors import CorruptFileError, ModelCoreError, SpecError, TrainingDiverged
from model_core.network import Model, layer_shapes
from model_core.specs import MAX_INT32, ResolvedSpec, resolve_spec
from model_core.training import Trainer, TrainResult, train

__all__ = [
    "MAX_INT32",
    "CorruptFileError",
    "Model",
    "ModelCoreError",
    "ResolvedSpec",
    "SpecError",
    "TrainResult",
    "Trainer",
    "TrainingDiverged",
    "layer_shapes",
    "resolve_spec",
    "train",
]
