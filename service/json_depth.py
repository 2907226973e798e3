"""How deeply a JSON text nests, measured without parsing it.

Python's ``json`` and everything after it (marshmallow, webargs, the error envelope) recurse once
per level: a 2 KB body of 1,000 brackets exhausts the interpreter's recursion limit inside the
parser. The scan here is iterative and vectorized, a block at a time, so that its cost is linear
in the body and its memory a few blocks whatever the body's size; brackets inside strings do not
count.
"""

import numpy as np

# Deeper than any body of the API needs (a job spec is about 6 levels), far below the 1,000 of
# the recursion limit.
MAX_JSON_DEPTH = 64
BLOCK_BYTES = 1 << 20
QUOTE, BACKSLASH = ord('"'), ord("\\")
OPENERS = np.array([ord("["), ord("{")], dtype=np.uint8)
CLOSERS = np.array([ord("]"), ord("}")], dtype=np.uint8)


class NestingScan:
    """The state of a scan between two blocks: the depth, whether a string is open, and how many
    backslashes the last block ended with (an odd number escapes the next block's first byte)."""

    def __init__(self) -> None:
        self.depth = 0
        self.deepest = 0
        self.in_string = False
        self.trailing_backslashes = 0

    def feed(self, block: np.ndarray) -> None:
        """Take the next bytes (uint8) of the text."""
        quotes = (block == QUOTE) & ~self.escaped(block)
        inside = (np.cumsum(quotes, dtype=np.int64) + self.in_string) % 2 == 1
        steps = np.isin(block, OPENERS).astype(np.int8) - np.isin(block, CLOSERS)
        steps[inside] = 0
        depths = np.cumsum(steps, dtype=np.int64) + self.depth
        if depths.size:
            self.deepest = max(self.deepest, int(depths.max()))
            self.depth = int(depths[-1])
            self.in_string = bool(inside[-1])

    def escaped(self, block: np.ndarray) -> np.ndarray:
        """Where a byte follows an odd run of backslashes (the run may begin in the last block)."""
        backslash = block == BACKSLASH
        positions = np.arange(block.size, dtype=np.int64)
        last_other = np.maximum.accumulate(np.where(backslash, -1, positions))
        run = np.full(block.size, self.trailing_backslashes, dtype=np.int64)
        run[1:] = positions[:-1] - last_other[:-1]
        run[1:][last_other[:-1] == -1] += self.trailing_backslashes
        if block.size:
            self.trailing_backslashes = int(run[-1] + 1 if backslash[-1] else 0)
        return run % 2 == 1


def json_depth(text: bytes | memoryview, block_bytes: int = BLOCK_BYTES) -> int:
    """The deepest nesting of arrays and objects in ``text`` (0 for a scalar), scanned
    ``block_bytes`` at a time."""
    data = np.frombuffer(text, dtype=np.uint8)
    scan = NestingScan()
    for start in range(0, data.size, block_bytes):
        scan.feed(data[start : start + block_bytes])
    return scan.deepest


def depth_unless_shallow(text: bytes) -> int:
    """``json_depth(text)`` when ``text`` has more than ``MAX_JSON_DEPTH`` brackets, else their
    count: every level opens one, so a text with no more than that many nests no deeper, and a
    prediction's body skips the scan (about 60 us of numpy calls for a single row)."""
    brackets = text.count(b"[") + text.count(b"{")
    return brackets if brackets <= MAX_JSON_DEPTH else json_depth(text)
