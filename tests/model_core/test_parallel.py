"""The elementwise passes and optimizer updates split over threads (model_core/parallel.py):
the same bits as on one thread, no thread below the threshold, none left after training."""

import threading

import numpy as np
import pytest

from model_core import Trainer, train
from model_core.activations import ACTIVATIONS
from model_core.buffers import flat_buffer
from model_core.network import backward, dropout_buffers, forward
from model_core.optimizers import SGD, Adam
from model_core.parallel import ITEMS_PER_ROW, MIN_ROWS, SERIAL, Split, Workers, parts
from model_core.schedules import InverseTimeDecay

# min_rows=1: every pass with two rows or more is split, so small arrays exercise the split.
EAGER = {"threads": 2, "min_rows": 1}


def pool_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name.startswith("model_core-")]


@pytest.fixture(autouse=True)
def no_thread_left():
    yield
    assert pool_threads() == []


@pytest.mark.parametrize(
    ("length", "count", "align", "expected"),
    [
        (1023, 2, 1, [(0, 512), (512, 1023)]),
        (1024, 2, 1, [(0, 512), (512, 1024)]),
        (1, 2, 1, [(0, 1)]),
        (100, 3, 16, [(0, 48), (48, 96), (96, 100)]),
        (40, 2, 16, [(0, 32), (32, 40)]),
    ],
)
def test_parts_cover_the_range_once_on_aligned_boundaries(length, count, align, expected):
    assert [(p.start, p.stop) for p in parts(length, count, align)] == expected


def test_the_threshold_decides_and_one_thread_never_splits():
    split = Split(2, min_rows=256)
    assert not split.splits(255) and split.splits(256)
    assert not split.splits_items(256 * ITEMS_PER_ROW - 1) and split.splits_items(
        256 * ITEMS_PER_ROW
    )
    assert not Split(1, min_rows=1).splits(10**6) and not SERIAL.splits(10**6)
    with pytest.raises(ValueError, match="threads"):
        Split(0)


def test_a_pass_below_the_threshold_runs_whole_on_the_calling_thread():
    seen = []
    with Split(2, min_rows=256) as split:
        split.by_rows(lambda part: seen.append((part, threading.current_thread().name)), 255)
        assert pool_threads() == []  # no helper was started
    assert seen == [(slice(None), threading.main_thread().name)]


def test_a_split_pass_runs_each_part_once_and_close_ends_the_threads():
    seen = []
    with Split(**EAGER) as split:
        split.by_rows(lambda part: seen.append((part.start, part.stop)), 7)
        assert len(pool_threads()) == 1
    assert sorted(seen) == [(0, 4), (4, 7)]
    assert pool_threads() == []


def test_an_error_in_a_helper_is_raised_in_the_caller_and_the_pool_still_works():
    def fail_in_second_half(part: slice) -> None:
        if part.start:
            raise ZeroDivisionError("second half")

    workers = Workers(2)
    try:
        with pytest.raises(ZeroDivisionError, match="second half"):
            workers.run(fail_in_second_half, parts(10, 2))
        done = []
        workers.run(done.append, parts(10, 2))
        assert len(done) == 2
    finally:
        workers.close()


def network_arrays(rng, rows: int, dtype, activation: str, rates):
    """Weights (fan_in 9 -> 7 -> 6 -> 4) and the buffers of one batch of ``rows``."""
    sizes = [9, 7, 6, 4]
    weights = [
        (rng.standard_normal((a, b)).astype(dtype), rng.standard_normal(b).astype(dtype))
        for a, b in zip(sizes, sizes[1:], strict=False)
    ]
    activations = [ACTIVATIONS[activation]] * 2 + [ACTIVATIONS["softmax"]]
    x = rng.standard_normal((rows, sizes[0])).astype(dtype)
    dropout = dropout_buffers(rows, weights, rates, dtype)
    dropout.draw(np.random.default_rng(5), rates)
    return weights, activations, x, dropout


def forward_and_backward(weights, activations, x, dropout, split):
    """Every array a training step writes, from one forward and one backward pass."""
    outputs = [np.empty((len(x), w.shape[1]), x.dtype) for w, _ in weights]
    deltas = [np.empty_like(o) for o in outputs]
    grads = [np.empty_like(p) for pair in weights for p in pair]
    last = forward(x, weights, activations, outputs, dropout, split)
    deltas[-1][...] = last - np.eye(4, dtype=x.dtype)[np.arange(len(x)) % 4]
    backward(x, weights, activations, outputs, deltas, grads, 0.01, 0.5, dropout, split)
    return [*outputs, *deltas, *grads]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("activation", sorted(set(ACTIVATIONS) - {"softmax"}))
@pytest.mark.parametrize("rows", [2, 3, 257, 1023])
def test_forward_and_backward_give_the_same_bits_on_two_threads(dtype, activation, rows):
    rng = np.random.default_rng(rows)
    weights, activations, x, dropout = network_arrays(rng, rows, dtype, activation, [0.3, 0, 0])
    serial = forward_and_backward(weights, activations, x, dropout, SERIAL)
    with Split(**EAGER) as split:
        threaded = forward_and_backward(weights, activations, x, dropout, split)
    for one, two in zip(serial, threaded, strict=True):
        assert one.tobytes() == two.tobytes()


OPTIMIZERS = [
    (SGD, {"momentum": 0.0}),
    (SGD, {"momentum": 0.9}),
    (SGD, {"momentum": 0.9, "nesterov": True}),
    (Adam, {}),
    (Adam, {"clip_norm": 0.5}),
]


def optimizer_run(cls, options, dtype, split) -> list[np.ndarray]:
    """Five steps of an optimizer on a flat buffer of several arrays, with a learning rate
    that changes each epoch; its parameters and state after them."""
    rng = np.random.default_rng(3)
    shapes = [(33, 17), (17,), (17, 5), (5,)]  # 667 items: two parts at min_rows=1
    flat, params = flat_buffer(shapes, dtype)
    flat[...] = rng.standard_normal(flat.shape)
    optimizer = cls(params, InverseTimeDecay(0.1, 0.3), **options)
    for epoch in range(1, 6):
        optimizer.start_epoch(epoch)
        grads = rng.standard_normal(flat.shape).astype(dtype) * optimizer.gradient_scale()
        optimizer.step(flat, grads, split)
    return [flat.copy(), *(np.asarray(a) for a in optimizer.state().values())]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize(("cls", "options"), OPTIMIZERS)
def test_optimizer_steps_give_the_same_bits_on_two_threads(cls, options, dtype):
    assert Split(**EAGER).splits_items(667)
    serial = optimizer_run(cls, options, dtype, SERIAL)
    with Split(**EAGER) as split:
        threaded = optimizer_run(cls, options, dtype, split)
    for one, two in zip(serial, threaded, strict=True):
        assert one.tobytes() == two.tobytes()


def wide_data(rows: int = 1301):
    rng = np.random.default_rng(0)
    return rng.standard_normal((rows, 300)), rng.integers(0, 3, rows)


WIDE_NETWORK = {
    "layers": [
        {"units": 260, "activation": "relu", "dropout": 0.1},
        {"units": 3, "activation": "softmax"},
    ],
    "dtype": "float32",
}


@pytest.mark.parametrize(
    "optimizer",
    [{"name": "sgd", "momentum": 0.9, "nesterov": True}, {"name": "adam", "learning_rate": 0.003}],
)
def test_training_on_two_threads_gives_the_same_model_and_history(optimizer):
    """Batches of 600 rows (split) and a last one of 101 (not): 78,000 weights, so the
    optimizer's update is split too."""
    x, y = wide_data()
    training = {"batch_size": 600, "epochs": 2, "seed": 7, "optimizer": optimizer}
    one = train(x, y, WIDE_NETWORK, training, threads=1)
    two = train(x, y, WIDE_NETWORK, training, threads=2)
    for (w1, b1), (w2, b2) in zip(one.model.weights, two.model.weights, strict=True):
        assert w1.tobytes() == w2.tobytes() and b1.tobytes() == b2.tobytes()
    assert [r["train_loss"] for r in one.history] == [r["train_loss"] for r in two.history]


def test_resuming_on_two_threads_continues_a_one_thread_run_exactly():
    x, y = wide_data()
    training = {
        "batch_size": 600,
        "epochs": 3,
        "seed": 7,
        "optimizer": {"name": "sgd", "momentum": 0.9},
    }
    whole = train(x, y, WIDE_NETWORK, training, threads=1)
    first = Trainer(x, y, WIDE_NETWORK, {**training, "epochs": 1}, threads=1)
    first.fit()
    resumed = train(x, y, WIDE_NETWORK, training, resume_from=first.checkpoint(), threads=2)
    for (w1, b1), (w2, b2) in zip(whole.model.weights, resumed.model.weights, strict=True):
        assert w1.tobytes() == w2.tobytes() and b1.tobytes() == b2.tobytes()


def test_small_batches_take_the_one_thread_path():
    x, y = wide_data(400)
    trainer = Trainer(x, y, WIDE_NETWORK, {"batch_size": MIN_ROWS - 1, "epochs": 1}, threads=2)
    assert trainer.split is SERIAL
    trainer.fit()
    large = Trainer(x, y, WIDE_NETWORK, {"batch_size": MIN_ROWS, "epochs": 1}, threads=2)
    assert large.split.threads == 2


def test_fit_ends_its_helper_threads_even_when_training_fails():
    x, y = wide_data(600)

    def stop(record):
        assert pool_threads()  # the helper serves the epoch's batches
        raise RuntimeError("stop here")

    trainer = Trainer(x, y, WIDE_NETWORK, {"batch_size": 300, "epochs": 2}, threads=2)
    with pytest.raises(RuntimeError, match="stop here"):
        trainer.fit(stop)
    assert pool_threads() == []
