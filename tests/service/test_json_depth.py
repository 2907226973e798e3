"""The nesting scan against Python's own parser, over block edges that cut strings and escapes."""

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from service import json_depth as scan

TRICKY_TEXT = st.text(alphabet='[]{}"\\ab', max_size=8)
JSON_VALUES = st.recursive(
    st.none() | st.integers() | TRICKY_TEXT,
    lambda children: (
        st.lists(children, max_size=3) | st.dictionaries(TRICKY_TEXT, children, max_size=3)
    ),
    max_leaves=20,
)


def depth_of(value) -> int:
    """The nesting of a parsed value: 1 per list or dict."""
    if isinstance(value, dict):
        value = list(value.values())
    if isinstance(value, list):
        return 1 + max(map(depth_of, value), default=0)
    return 0


@settings(max_examples=50, deadline=None)
@given(value=JSON_VALUES, block=st.integers(1, 9), indent=st.sampled_from([None, 1]))
def test_the_scan_measures_what_the_parser_would_nest(value, block, indent):
    """In blocks of a few bytes, so that strings and runs of backslashes span block edges."""
    text = json.dumps(value, indent=indent).encode()
    assert scan.json_depth(text, block_bytes=block) == depth_of(value)


def test_a_thousand_levels_are_measured_without_recursion():
    assert scan.json_depth(b"[" * 1000 + b"]" * 1000) == 1000
    assert scan.json_depth(b'{"a":' * 1000 + b"1" + b"}" * 1000) == 1000


def test_brackets_inside_strings_do_not_count():
    assert scan.json_depth(json.dumps(["[[[{{", '\\"[[', "\\\\"]).encode()) == 1


def test_a_text_with_few_brackets_skips_the_scan_and_many_are_scanned(monkeypatch):
    limit = scan.MAX_JSON_DEPTH
    deep = b"[" * (limit + 1) + b"]" * (limit + 1)
    in_strings = json.dumps(["[" * (limit + 1)]).encode()
    assert scan.depth_unless_shallow(deep) == limit + 1
    assert scan.depth_unless_shallow(in_strings) == 1  # scanned: the brackets are in a string
    monkeypatch.setattr(scan, "json_depth", lambda _text: pytest.fail("scanned"))
    assert scan.depth_unless_shallow(b"[" * limit + b"]" * limit) == limit
    assert scan.depth_unless_shallow(json.dumps({"instances": [[0.5, 1.0]]}).encode()) == 3
