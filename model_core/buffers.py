"""Flat buffers: one array holding several, so that an elementwise pass over all of them is one
NumPy call."""

import math
from collections.abc import Sequence

import numpy as np


def flat_buffer(shapes: Sequence[tuple[int, ...]], dtype) -> tuple[np.ndarray, list[np.ndarray]]:
    """One zeroed 1-D array and a C-contiguous view of it for each shape, in order.

    Parameters, gradients and optimizer state live in buffers like this so that an elementwise
    update is a few passes over one array instead of a few per parameter array: at batch 32 on a
    small network the per-call overhead was the optimizer's whole cost. Every view starts on a
    64-byte boundary; the padding between them stays zero through every update.
    """
    itemsize = np.dtype(dtype).itemsize
    align = max(1, 64 // itemsize)
    offsets, total = [], 0
    for shape in shapes:
        offsets.append(total)
        total += -(-math.prod(shape) // align) * align
    flat = np.zeros(total + align, dtype)
    start = (-flat.ctypes.data % 64) // itemsize  # NumPy aligns to 16 bytes only
    flat = flat[start : start + total]
    views = [
        flat[offset : offset + math.prod(shape)].reshape(shape)
        for offset, shape in zip(offsets, shapes, strict=True)
    ]
    return flat, views
