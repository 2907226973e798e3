"""The free text a client names things with (data set names, key descriptions), checked alike
by every schema that takes it."""

import marshmallow as ma
from marshmallow import validate

# The length of a data set's name and of a key's description (their columns are String(200)).
MAX_TEXT_LENGTH = 200


def refuse_nul(text: str) -> None:
    """PostgreSQL's text columns cannot hold a NUL character (SQLite's can): refused on both."""
    if "\x00" in text:
        raise ma.ValidationError("must not contain a NUL character")


def text_rules(min_length: int = 1, max_length: int = MAX_TEXT_LENGTH) -> list:
    return [validate.Length(min_length, max_length), refuse_nul]


def dataset_name_field() -> ma.fields.String:
    return ma.fields.String(validate=text_rules())
