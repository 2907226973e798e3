"""Model references as paths take them: ``42`` (an id), ``digits`` (its latest version),
``digits:3`` (a version) and ``digits@production`` (an alias)."""

import re
from dataclasses import dataclass

from service.vocabulary import NAME_PATTERN

REF_FORMS = "an id (42), a name (digits), name:version (digits:3) or name@alias (digits@production)"
NAME_RULE = (
    "lowercase letters, digits, '.', '_' and '-', starting with a letter, at most 64 characters"
)
_NAME = re.compile(NAME_PATTERN)
_REF = re.compile(
    rf"(?P<id>[0-9]{{1,10}})|(?P<name>{NAME_PATTERN})(?::(?P<version>[0-9]{{1,10}})|@(?P<alias>{NAME_PATTERN}))?"
)


class ModelNotFound(LookupError):
    """No model answers to this reference; ``str(error)`` says which."""


class BadModelRef(ModelNotFound):
    """The text is no model reference at all; ``str(error)`` says what one looks like."""


@dataclass(frozen=True)
class ModelRef:
    """Exactly one of ``model_id`` and ``name``; ``version`` or ``alias`` only with a name."""

    model_id: int | None = None
    name: str | None = None
    version: int | None = None
    alias: str | None = None

    def __str__(self) -> str:
        if self.model_id is not None:
            return str(self.model_id)
        if self.version is not None:
            return f"{self.name}:{self.version}"
        return f"{self.name}@{self.alias}" if self.alias else str(self.name)


def parse_ref(text: str) -> ModelRef:
    """The reference ``text`` stands for; ``BadModelRef`` when it is none."""
    match = _REF.fullmatch(text)
    if match is None:
        raise BadModelRef(f"{text!r} is not a model reference: use {REF_FORMS}.")
    if match["id"] is not None:
        return ModelRef(model_id=int(match["id"]))
    version = None if match["version"] is None else int(match["version"])
    return ModelRef(name=match["name"], version=version, alias=match["alias"])


def is_name(text: str) -> bool:
    """Whether ``text`` is a valid model name or alias."""
    return _NAME.fullmatch(text) is not None
