"""Data set arrays as .npz bytes: read in place, exactly as np.load reads them, never a pickle."""

import io
import zipfile

import numpy as np
import pytest

from service.db.npz import arrays_to_npz, npz_to_arrays


def test_round_trip_gives_the_same_arrays_as_np_load():
    arrays = {
        "X": np.random.default_rng(0).standard_normal((50, 7)).astype(np.float32),
        "y": np.array(["setosa", "versicolor"] * 25),
        "F": np.asfortranarray(np.arange(12.0).reshape(3, 4)),
        "empty": np.zeros((0, 3)),
        "scalar": np.array(3, dtype=np.int64),
    }
    data = arrays_to_npz(**arrays)
    loaded = npz_to_arrays(data)
    with np.load(io.BytesIO(data), allow_pickle=False) as reference:
        assert sorted(loaded) == sorted(reference.files)
        for name in reference.files:
            assert loaded[name].dtype == reference[name].dtype
            assert np.array_equal(loaded[name], reference[name])
    assert loaded["X"].flags.c_contiguous and not loaded["X"].flags.writeable
    assert all(array.flags.aligned for array in loaded.values())


def test_arrays_of_another_writer_are_aligned_too():
    buffer = io.BytesIO()
    np.savez(buffer, X=np.ones((10, 3), dtype=np.float32), y=np.arange(10))
    loaded = npz_to_arrays(buffer.getvalue())
    assert all(array.flags.aligned for array in loaded.values())
    assert loaded["X"].tolist() == [[1.0] * 3] * 10


def test_compressed_members_are_read_too():
    buffer = io.BytesIO()
    np.savez_compressed(buffer, X=np.arange(6).reshape(2, 3))
    assert npz_to_arrays(buffer.getvalue())["X"].tolist() == [[0, 1, 2], [3, 4, 5]]


def test_an_object_array_is_refused_not_unpickled():
    payload = io.BytesIO()
    np.save(payload, np.array([{"a": 1}], dtype=object), allow_pickle=True)
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("X.npy", payload.getvalue())
    with pytest.raises(ValueError, match="object arrays"):
        npz_to_arrays(buffer.getvalue())
