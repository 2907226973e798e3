"""Learning-rate schedules and warm-up against torch.optim.lr_scheduler, epoch by epoch (1e-12).

A training run's history records each epoch's rate (``learning_rate``); PyTorch's schedulers
are stepped once per epoch as its documentation shows, the plateau one fed the losses our run
recorded. Warm-up is checked against its formula: lr * e / N for e <= N, then the schedule from
its own epoch 1.
"""

import numpy as np
import pytest
import torch

from model_core import Trainer, resolve_spec, train
from model_core.schedules import make_schedule

LR = 0.1
ATOL = 1e-12
X = np.random.default_rng(0).normal(size=(12, 3))
Y = np.arange(12) % 2
NETWORK = {
    "layers": [{"units": 4, "activation": "tanh"}, {"units": 2, "activation": "softmax"}],
    "dtype": "float64",
}


def our_rates(epochs: int, **training) -> tuple[list[float], list[float]]:
    """Each epoch's learning rate and training loss, from a short full-batch run."""
    spec = {
        "epochs": epochs,
        "batch_size": "full",
        "seed": 3,
        "optimizer": {"name": "sgd", "learning_rate": LR},
        **training,
    }
    history = train(X, Y, NETWORK, spec).history
    return [r["learning_rate"] for r in history], [r["train_loss"] for r in history]


def torch_rates(make_scheduler, epochs: int, losses: list[float] | None = None) -> list[float]:
    """The rate PyTorch's optimizer holds during each of ``epochs`` epochs."""
    optimizer = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=LR)
    scheduler = make_scheduler(optimizer)
    rates = []
    for epoch in range(epochs):
        rates.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step(*([] if losses is None else [losses[epoch]]))
    return rates


SCHEDULES = {
    "step": (
        {"name": "step", "step_size": 30, "gamma": 0.1},
        lambda o: torch.optim.lr_scheduler.StepLR(o, step_size=30, gamma=0.1),
        200,
    ),
    "exponential": (
        {"name": "exponential", "gamma": 0.95},
        lambda o: torch.optim.lr_scheduler.ExponentialLR(o, gamma=0.95),
        200,
    ),
    "cosine": (
        {"name": "cosine", "t_max": 100, "eta_min": 0.001},
        lambda o: torch.optim.lr_scheduler.CosineAnnealingLR(o, T_max=100, eta_min=0.001),
        101,  # up to t_max: epoch t_max + 1 is the first at eta_min
    ),
}


@pytest.mark.parametrize("name", SCHEDULES)
def test_closed_form_schedules_match_pytorch(name):
    spec, make_scheduler, epochs = SCHEDULES[name]
    ours, _ = our_rates(epochs, schedule=spec)
    np.testing.assert_allclose(ours, torch_rates(make_scheduler, epochs), rtol=0, atol=ATOL)


def test_cosine_stays_at_eta_min_after_t_max():
    ours, _ = our_rates(30, schedule={"name": "cosine", "t_max": 10, "eta_min": 0.002})
    assert ours[10:] == [0.002] * 20


def resolved_schedule(**training):
    spec = resolve_spec(
        NETWORK,
        {"optimizer": {"name": "sgd", "learning_rate": LR}, **training},
        task="classification",
        n_features=3,
        n_outputs=2,
    )
    return make_schedule(spec.training)


def plateau_rates(schedule, losses: list[float], first_epoch: int = 1) -> list[float]:
    rates = []
    for epoch, loss in enumerate(losses, start=first_epoch):
        rates.append(schedule.rate(epoch))
        schedule.observe(epoch, loss)
    return rates


# Falls, stalls, wiggles within the threshold, falls again: several reductions, one to min_lr.
PLATEAU_LOSSES = [
    *np.linspace(1.0, 0.5, 10),
    *[0.5] * 8,
    *(0.5 - 0.00001 * np.arange(12)),
    *np.linspace(0.49, 0.2, 10),
    *[0.2, 0.21, 0.2, 0.22] * 10,
]
PLATEAU = {"name": "plateau", "factor": 0.5, "patience": 3, "threshold": 1e-4, "min_lr": 0.004}


def torch_plateau(optimizer):
    return torch.optim.lr_scheduler.ReduceLROnPlateau(
        optimizer, mode="min", factor=0.5, patience=3, threshold=1e-4, min_lr=0.004
    )


def test_plateau_matches_pytorch_fed_the_same_losses():
    ours = plateau_rates(resolved_schedule(schedule=PLATEAU), PLATEAU_LOSSES)
    expected = torch_rates(torch_plateau, len(PLATEAU_LOSSES), PLATEAU_LOSSES)
    np.testing.assert_allclose(ours, expected, rtol=0, atol=ATOL)
    assert len(set(ours)) >= 4 and min(ours) == 0.004


def test_plateau_in_training_watches_the_recorded_losses():
    spec = {**PLATEAU, "patience": 0, "threshold": 0.05}
    ours, losses = our_rates(40, schedule=spec)
    scheduler = lambda o: torch.optim.lr_scheduler.ReduceLROnPlateau(  # noqa: E731
        o, factor=0.5, patience=0, threshold=0.05, min_lr=0.004
    )
    np.testing.assert_allclose(ours, torch_rates(scheduler, 40, losses), rtol=0, atol=ATOL)
    assert ours[-1] < LR


def warmed_up(n: int, rates_after: list[float], epochs: int) -> list[float]:
    """The issue's formula: lr * e / N for e <= N, then the schedule from its epoch 1."""
    return [LR * e / n if e <= n else rates_after[e - n - 1] for e in range(1, epochs + 1)]


def test_warm_up_alone_then_the_constant_rate():
    ours, _ = our_rates(12, warmup_epochs=5)
    assert ours == warmed_up(5, [LR] * 12, 12)


def test_warm_up_then_decay():
    ours, _ = our_rates(
        12, warmup_epochs=3, optimizer={"name": "sgd", "learning_rate": LR, "decay": 0.5}
    )
    assert ours == warmed_up(3, [LR / (1 + 0.5 * k) for k in range(12)], 12)


@pytest.mark.parametrize("name", SCHEDULES)
def test_warm_up_then_each_schedule(name):
    spec, make_scheduler, epochs = SCHEDULES[name]
    ours, _ = our_rates(epochs, schedule=spec, warmup_epochs=7)
    expected = warmed_up(7, torch_rates(make_scheduler, epochs), epochs)
    np.testing.assert_allclose(ours, expected, rtol=0, atol=ATOL)


def test_warm_up_then_plateau_counts_patience_after_the_warm_up():
    n = 6
    schedule = resolved_schedule(schedule=PLATEAU, warmup_epochs=n)
    # Stalled losses during the warm-up must not count against the plateau's patience.
    losses = [0.5] * n + PLATEAU_LOSSES
    ours = plateau_rates(schedule, losses)
    after = torch_rates(torch_plateau, len(PLATEAU_LOSSES), PLATEAU_LOSSES)
    np.testing.assert_allclose(ours, warmed_up(n, after, len(losses)), rtol=0, atol=ATOL)


def test_schedule_state_survives_a_checkpoint():
    """A plateau run stopped and resumed from its checkpoint goes on with the same rates."""
    spec = {
        "epochs": 30,
        "batch_size": "full",
        "seed": 3,
        "optimizer": {"name": "sgd", "learning_rate": LR, "momentum": 0.9},
        "schedule": {**PLATEAU, "patience": 0, "threshold": 0.05},
        "warmup_epochs": 2,
        "clip_norm": 0.5,
    }
    uninterrupted = train(X, Y, NETWORK, spec)
    trainer = Trainer(X, Y, NETWORK, spec)
    saved = {}

    def stop_at_twelve(record):
        saved["checkpoint"] = trainer.checkpoint()
        return record["epoch"] == 12

    trainer.fit(stop_at_twelve)
    resumed = train(X, Y, NETWORK, spec, resume_from=saved["checkpoint"])
    strip = lambda h: [{k: v for k, v in r.items() if k != "seconds"} for r in h]  # noqa: E731
    assert strip(resumed.history) == strip(uninterrupted.history)
    assert len(set(r["learning_rate"] for r in resumed.history[12:])) > 1
    for (w1, b1), (w2, b2) in zip(resumed.model.weights, uninterrupted.model.weights, strict=True):
        assert np.array_equal(w1, w2) and np.array_equal(b1, b2)
