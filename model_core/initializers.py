"""Weight initialisers: ``init(rng, fan_in, fan_out, dtype) -> W`` of shape (fan_in, fan_out).

Biases always start at zero.
"""

from collections.abc import Callable, Sequence

import numpy as np

Initializer = Callable[[np.random.Generator, int, int, np.dtype], np.ndarray]


def normal(rng: np.random.Generator, fan_in: int, fan_out: int, dtype: np.dtype) -> np.ndarray:
    """Standard normal scaled by 1/sqrt(fan_in)."""
    return (rng.standard_normal((fan_in, fan_out)) / np.sqrt(fan_in)).astype(dtype)


def xavier(rng: np.random.Generator, fan_in: int, fan_out: int, dtype: np.dtype) -> np.ndarray:
    """Glorot uniform: U(-limit, limit), limit = sqrt(6 / (fan_in + fan_out))."""
    limit = np.sqrt(6.0 / (fan_in + fan_out))
    return rng.uniform(-limit, limit, (fan_in, fan_out)).astype(dtype)


def he(rng: np.random.Generator, fan_in: int, fan_out: int, dtype: np.dtype) -> np.ndarray:
    """He normal: standard normal scaled by sqrt(2 / fan_in), made for ReLU layers."""
    return (rng.standard_normal((fan_in, fan_out)) * np.sqrt(2.0 / fan_in)).astype(dtype)


INITIALIZERS: dict[str, Initializer] = {"normal": normal, "xavier": xavier, "he": he}


def initial_weights(
    init: str, rng: np.random.Generator, shapes: Sequence[tuple[int, int]], dtype: np.dtype
) -> list[tuple[np.ndarray, np.ndarray]]:
    """Fresh ``[(W, b), ...]`` for layers of the given ``(fan_in, units)`` shapes: W drawn by the
    named initialiser, layer by layer from the same rng; b zeros (units,)."""
    initializer = INITIALIZERS[init]
    return [
        (initializer(rng, fan_in, units, dtype), np.zeros(units, dtype)) for fan_in, units in shapes
    ]
