"""Models and checkpoints travel as .npz bytes with a JSON header; nothing is ever unpickled."""

import io
import pickle
import zipfile

import numpy as np
import pytest

from model_core import CorruptFileError, Model, Trainer, train

X = np.random.default_rng(1).normal(size=(30, 5))
Y = np.array(["cat", "dog", "eel"] * 10)
NETWORK = {"layers": [{"units": 6, "activation": "tanh"}, {"units": 3, "activation": "softmax"}]}


@pytest.fixture(scope="module")
def model():
    return train(X, Y, NETWORK, {"epochs": 3, "seed": 0}).model


def test_round_trip_predicts_the_same(model):
    loaded = Model.from_bytes(model.to_bytes())
    assert np.array_equal(loaded.predict_proba(X), model.predict_proba(X))
    assert list(loaded.predict(X)) == list(model.predict(X))
    assert loaded.classes == ["cat", "dog", "eel"]
    assert loaded.network == model.network and loaded.training == model.training
    for (w1, b1), (w2, b2) in zip(loaded.weights, model.weights, strict=True):
        assert np.array_equal(w1, w2) and np.array_equal(b1, b2)
    assert loaded.weights[0][0].shape == (5, 6) and loaded.weights[1][1].shape == (3,)


class Exploit:
    def __reduce__(self):
        return (print, ("this must never run",))


def test_a_pickle_is_refused():
    with pytest.raises(CorruptFileError):
        Model.from_bytes(pickle.dumps(Exploit()))


def test_an_npz_carrying_a_pickled_object_array_is_refused(model):
    buffer = io.BytesIO()
    with (
        zipfile.ZipFile(io.BytesIO(model.to_bytes())) as original,
        zipfile.ZipFile(buffer, "w") as crafted,
    ):
        for name in original.namelist():
            if name != "W0.npy":
                crafted.writestr(name, original.read(name))
        payload = io.BytesIO()
        np.save(payload, np.array([Exploit()], dtype=object), allow_pickle=True)
        crafted.writestr("W0.npy", payload.getvalue())
    with pytest.raises(CorruptFileError, match="not a backprop-model file"):
        Model.from_bytes(buffer.getvalue())


@pytest.mark.parametrize("data", [b"", b"garbage", b"PK\x03\x04broken"])
def test_garbage_is_refused(data):
    with pytest.raises(CorruptFileError):
        Model.from_bytes(data)


def test_a_checkpoint_is_not_a_model():
    trainer = Trainer(X, Y, NETWORK, {"epochs": 1, "seed": 0})
    trainer.fit()
    with pytest.raises(CorruptFileError, match="not a backprop-model file"):
        Model.from_bytes(trainer.checkpoint())


def test_predict_with_proba_is_predict_and_predict_proba_in_one_pass(model):
    labels, probabilities = model.predict_with_proba(X)
    assert list(labels) == list(model.predict(X))
    assert np.array_equal(probabilities, model.predict_proba(X))
