"""The engine's exceptions: one base type, so callers can catch everything model_core raises."""


class ModelCoreError(Exception):
    """Base class of every error model_core raises on purpose."""


class SpecError(ModelCoreError, ValueError):
    """An invalid network spec, training spec or data set.

    ``section`` is ``"network"``, ``"training"`` or ``"data"``; ``field`` is the path inside it
    (``"layers[1].activation"``, ``"X"``); ``str(error)`` reads ``"layers[1].activation: unknown
    'sigmod'"`` (or just the message when it already starts with the field: ``"X contains NaN at
    row 7"``), so the message alone tells the user what to fix.
    """

    def __init__(self, section: str, field: str, message: str):
        self.section = section
        self.field = field
        self.message = message
        says_field = not field or message.startswith(field)
        super().__init__(message if says_field else f"{field}: {message}")

    @property
    def path(self) -> str:
        """The field with its section in front: ``network.layers[1].activation``."""
        return f"{self.section}.{self.field}" if self.field else self.section


class TrainingDiverged(ModelCoreError, ArithmeticError):
    """The loss or a weight became NaN or infinite; ``epoch`` is where it happened (1-based)."""

    def __init__(self, epoch: int, what: str):
        self.epoch = epoch
        super().__init__(
            f"training diverged at epoch {epoch}: {what} is not finite; "
            "lower the learning rate, standardize the inputs or add l2"
        )


class CorruptFileError(ModelCoreError, ValueError):
    """Bytes handed to ``Model.from_bytes`` or ``resume_from`` are not a file model_core wrote."""
