"""flat_buffer: the one array behind the parameters, gradients and optimizer state."""

import numpy as np
import pytest

from model_core.buffers import flat_buffer


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_views_are_aligned_disjoint_zeroed_parts_of_one_array(dtype):
    shapes = [(7, 3), (3,), (3, 5), (5,)]
    flat, views = flat_buffer(shapes, dtype)
    assert [v.shape for v in views] == shapes
    assert all(v.flags.c_contiguous and v.ctypes.data % 64 == 0 for v in views)
    assert not flat.any()
    for i, view in enumerate(views):
        view[...] = i + 1
    assert sorted(np.unique(flat).tolist()) == [0.0, 1.0, 2.0, 3.0, 4.0]
    assert [int(np.count_nonzero(flat == i + 1)) for i in range(4)] == [21, 3, 15, 5]
    flat += 1.0
    assert all((v == i + 2).all() for i, v in enumerate(views))
