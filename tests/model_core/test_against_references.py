"""model_core against independent implementations: PyTorch and scikit-learn's MLP, in float64.

The same initial weights and the same rows in the same order (no shuffling) for a few epochs: the
final weights and every epoch's loss must agree to 1e-10 relative. That pins down the forward pass,
each loss, the backward pass, the optimizers' update rules and defaults, L2 on weights only,
learning-rate decay and the mean over a partial last batch, not merely something close to them.
"""

import warnings

import numpy as np
import pytest
import torch
from sklearn.exceptions import ConvergenceWarning

from bench.frameworks import MLPWithInitialWeights
from model_core import Trainer, train
from model_core.buffers import flat_buffer
from model_core.optimizers import clip_global_norm

RTOL, ATOL = 1e-10, 1e-12
N_SAMPLES, N_FEATURES = 48, 5

TORCH_ACTIVATIONS = {
    "relu": torch.nn.ReLU,
    "tanh": torch.nn.Tanh,
    "sigmoid": torch.nn.Sigmoid,
    "leaky_relu": lambda: torch.nn.LeakyReLU(0.01),
    "linear": torch.nn.Identity,
}
TORCH_NAMES = {"learning_rate": "lr", "epsilon": "eps"}


def make_rows(seed: int = 0) -> np.ndarray:
    """X : (N_SAMPLES, N_FEATURES) float64."""
    return np.random.default_rng(seed).standard_normal((N_SAMPLES, N_FEATURES))


def make_labels(n_classes: int, seed: int = 1) -> np.ndarray:
    """Balanced integer labels 0..n_classes-1 in a random order."""
    return np.random.default_rng(seed).permutation(np.arange(N_SAMPLES) % n_classes)


def make_weights(units: list[int], seed: int = 2) -> list[tuple[np.ndarray, np.ndarray]]:
    """[(W, b), ...] for layers of ``units`` after N_FEATURES inputs; biases non-zero on purpose."""
    rng = np.random.default_rng(seed)
    sizes = [N_FEATURES, *units]
    return [
        (
            rng.standard_normal((fan_in, fan_out)) / np.sqrt(fan_in),
            0.1 * rng.standard_normal(fan_out),
        )
        for fan_in, fan_out in zip(sizes[:-1], sizes[1:], strict=True)
    ]


def train_model_core(X, y, layers, loss, weights, task, **training):
    """model_core in float64 without shuffling or standardisation: [(W, b), ...] and losses."""
    network = {
        "layers": [{"units": units, "activation": name} for units, name in layers],
        "loss": loss,
        "dtype": "float64",
        "initial_weights": [{"W": W, "b": b} for W, b in weights],
    }
    training = {"shuffle": False, "standardize": False, "validation_split": 0.0, **training}
    result = train(X, y, network=network, training=training, task=task)
    return result.model.weights, [record["train_loss"] for record in result.history]


# -- PyTorch ------------------------------------------------------------------------------------


def torch_network(layers, weights) -> torch.nn.Sequential:
    """Linear layers with the given weights; a softmax output is left to CrossEntropyLoss."""
    modules: list[torch.nn.Module] = []
    for (_, activation), (W, b) in zip(layers, weights, strict=True):
        linear = torch.nn.Linear(*W.shape, dtype=torch.float64)
        with torch.no_grad():
            linear.weight.copy_(torch.from_numpy(W.T))
            linear.bias.copy_(torch.from_numpy(b))
        modules.append(linear)
        if activation != "softmax":
            modules.append(TORCH_ACTIVATIONS[activation]())
    return torch.nn.Sequential(*modules)


def torch_loss(loss: str, output: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """The batch mean of the per-sample loss, as model_core defines each of them."""
    if loss == "cross_entropy":
        return torch.nn.functional.cross_entropy(output, targets.argmax(dim=1))
    if loss == "sse":
        return 0.5 * ((output - targets) ** 2).sum(dim=1).mean()
    if loss == "mse":
        return torch.nn.functional.mse_loss(output, targets)
    return torch.nn.functional.binary_cross_entropy(output, targets)


def torch_optimizer(params, spec: dict) -> torch.optim.Optimizer:
    """torch.optim's SGD or Adam; what the spec leaves out stays at PyTorch's own defaults."""
    options = {
        TORCH_NAMES.get(key, key): value
        for key, value in spec.items()
        if key not in ("name", "decay")
    }
    if spec["name"] == "sgd":
        return torch.optim.SGD(params, **options)
    if "beta1" in options:
        options["betas"] = (options.pop("beta1"), options.pop("beta2"))
    return torch.optim.Adam(params, **options)


def train_torch(
    X,
    targets,
    layers,
    loss,
    weights,
    *,
    epochs,
    batch_size,
    optimizer,
    l2=0.0,
    clip_norm=None,
    scheduler=None,
):
    """The same training in PyTorch: [(W, b), ...] and the mean loss of every epoch.

    ``targets`` is (n_samples, n_outputs): one-hot rows, 0/1 columns or regression values.
    ``scheduler(optimizer)`` makes an lr_scheduler, stepped once per epoch (default: the
    inverse-time ``decay``); ``clip_norm`` clips each step's gradient with clip_grad_norm_.
    """
    network = torch_network(layers, weights)
    step = torch_optimizer(network.parameters(), optimizer)
    decay = optimizer.get("decay", 0.0)
    if scheduler is None:
        schedule = torch.optim.lr_scheduler.LambdaLR(
            step, lambda epoch: 1.0 / (1.0 + decay * epoch)
        )
    else:
        schedule = scheduler(step)
    X_t, targets_t = torch.from_numpy(X), torch.from_numpy(targets)
    batch_size = len(X) if batch_size == "full" else batch_size
    history = []
    for _ in range(epochs):
        total = 0.0
        for start in range(0, len(X), batch_size):
            rows = slice(start, start + batch_size)
            value = torch_loss(loss, network(X_t[rows]), targets_t[rows])
            value = value + 0.5 * l2 * sum((m.weight**2).sum() for m in linear_layers(network))
            step.zero_grad()
            value.backward()
            if clip_norm is not None:
                torch.nn.utils.clip_grad_norm_(network.parameters(), clip_norm)
            step.step()
            total += value.item() * len(X_t[rows])
        schedule.step()
        history.append(total / len(X))
    return torch_weights(network), history


def linear_layers(network: torch.nn.Sequential) -> list[torch.nn.Linear]:
    return [module for module in network if isinstance(module, torch.nn.Linear)]


def torch_weights(network: torch.nn.Sequential) -> list[tuple[np.ndarray, np.ndarray]]:
    """[(W, b), ...] with W of shape (inputs, units), as model_core stores them."""
    return [(m.weight.detach().numpy().T, m.bias.detach().numpy()) for m in linear_layers(network)]


def one_hot(labels: np.ndarray, n_classes: int) -> np.ndarray:
    return np.eye(n_classes)[labels]


def assert_same_training(ours, reference):
    (our_weights, our_history), (their_weights, their_history) = ours, reference
    np.testing.assert_allclose(our_history, their_history, rtol=RTOL, atol=ATOL)
    for (W, b), (W_ref, b_ref) in zip(our_weights, their_weights, strict=True):
        np.testing.assert_allclose(W, W_ref, rtol=RTOL, atol=ATOL)
        np.testing.assert_allclose(b, b_ref, rtol=RTOL, atol=ATOL)


CLASSIFIER_CASES = {
    "sgd, partial last batch": (
        [(8, "relu"), (3, "softmax")],
        {"epochs": 3, "batch_size": 20, "optimizer": {"name": "sgd", "learning_rate": 0.1}},
    ),
    "sgd momentum": (
        [(8, "tanh"), (6, "relu"), (3, "softmax")],
        {
            "epochs": 4,
            "batch_size": 8,
            "optimizer": {"name": "sgd", "learning_rate": 0.05, "momentum": 0.9},
        },
    ),
    "sgd nesterov, l2, decay": (
        [(8, "leaky_relu"), (3, "softmax")],
        {
            "epochs": 4,
            "batch_size": 16,
            "l2": 0.01,
            "optimizer": {
                "name": "sgd",
                "learning_rate": 0.05,
                "momentum": 0.9,
                "nesterov": True,
                "decay": 0.1,
            },
        },
    ),
    "adam, both libraries' defaults": (
        [(8, "relu"), (3, "softmax")],
        {"epochs": 3, "batch_size": 8, "optimizer": {"name": "adam"}},
    ),
    "adam, full batch, l2, decay": (
        [(8, "sigmoid"), (3, "softmax")],
        {
            "epochs": 5,
            "batch_size": "full",
            "l2": 0.001,
            "optimizer": {
                "name": "adam",
                "learning_rate": 0.05,
                "beta1": 0.8,
                "beta2": 0.99,
                "epsilon": 1e-7,
                "decay": 0.05,
            },
        },
    ),
}


@pytest.mark.parametrize("case", CLASSIFIER_CASES)
def test_softmax_classifier_matches_pytorch(case):
    layers, training = CLASSIFIER_CASES[case]
    X, y = make_rows(), make_labels(3)
    weights = make_weights([units for units, _ in layers])
    ours = train_model_core(X, y, layers, "cross_entropy", weights, "classification", **training)
    reference = train_torch(X, one_hot(y, 3), layers, "cross_entropy", weights, **training)
    assert_same_training(ours, reference)


# A clip_norm below most batches' gradient norm, so that most steps are clipped.
SCHEDULED_CASES = {
    "sgd nesterov, step schedule, clipped": (
        {"name": "sgd", "learning_rate": 0.2, "momentum": 0.9, "nesterov": True},
        {"schedule": {"name": "step", "step_size": 2, "gamma": 0.5}},
        lambda o: torch.optim.lr_scheduler.StepLR(o, step_size=2, gamma=0.5),
    ),
    "sgd momentum, cosine schedule, clipped": (
        {"name": "sgd", "learning_rate": 0.2, "momentum": 0.9},
        {"schedule": {"name": "cosine", "t_max": 4, "eta_min": 0.01}},
        lambda o: torch.optim.lr_scheduler.CosineAnnealingLR(o, T_max=4, eta_min=0.01),
    ),
    "sgd momentum, warm-up then exponential, clipped": (
        {"name": "sgd", "learning_rate": 0.2, "momentum": 0.9},
        {"schedule": {"name": "exponential", "gamma": 0.7}, "warmup_epochs": 2},
        lambda o: torch.optim.lr_scheduler.LambdaLR(
            o, lambda k: (k + 1) / 2 if k < 2 else 0.7 ** (k - 2)
        ),
    ),
    "adam, exponential schedule, clipped": (
        {"name": "adam", "learning_rate": 0.02},
        {"schedule": {"name": "exponential", "gamma": 0.7}},
        lambda o: torch.optim.lr_scheduler.ExponentialLR(o, gamma=0.7),
    ),
}


@pytest.mark.parametrize("case", SCHEDULED_CASES)
def test_schedules_and_clipping_match_pytorch(case):
    """The optimizer's schedule (and warm-up) and clip_norm, a whole run: the same weights and
    losses."""
    optimizer, scheduling, scheduler = SCHEDULED_CASES[case]
    layers = [(8, "tanh"), (3, "softmax")]
    X, y = make_rows(), make_labels(3)
    weights = make_weights([8, 3])
    common = {"epochs": 5, "batch_size": 8, "optimizer": optimizer, "l2": 0.01}
    ours = train_model_core(
        X,
        y,
        layers,
        "cross_entropy",
        weights,
        "classification",
        clip_norm=0.3,
        **scheduling,
        **common,
    )
    reference = train_torch(
        X,
        one_hot(y, 3),
        layers,
        "cross_entropy",
        weights,
        clip_norm=0.3,
        scheduler=scheduler,
        **common,
    )
    assert_same_training(ours, reference)


def test_dropout_steps_match_pytorch_given_the_same_masks():
    """Three full-batch Adam steps with dropout on both hidden layers: PyTorch, handed each
    step's masks, reaches the same weights and losses (1e-10)."""
    layers = [(8, "tanh"), (6, "relu"), (3, "softmax")]
    X, y = make_rows(), make_labels(3)
    weights = make_weights([8, 6, 3])
    network = {
        "layers": [
            {"units": 8, "activation": "tanh", "dropout": 0.3},
            {"units": 6, "activation": "relu", "dropout": 0.5},
            {"units": 3, "activation": "softmax"},
        ],
        "dtype": "float64",
        "initial_weights": [{"W": W, "b": b} for W, b in weights],
    }
    training = {
        "epochs": 3,
        "batch_size": "full",
        "shuffle": False,
        "standardize": False,
        "optimizer": {"name": "adam", "learning_rate": 0.05},
    }
    trainer = Trainer(X, y, network, training)
    masks = []

    def keep_masks(_record):
        dropout = trainer.batch_buffers(N_SAMPLES).dropout
        masks.append([torch.from_numpy(m.copy()) for m in dropout.masks[:2]])

    result = trainer.fit(keep_masks)

    modules = torch_network(layers, weights)
    linear, activations = linear_layers(modules), [torch.tanh, torch.relu]
    step = torch.optim.Adam(modules.parameters(), lr=0.05)
    X_t, labels, losses = torch.from_numpy(X), torch.from_numpy(y), []
    for epoch_masks in masks:
        a = X_t
        for layer, activation, mask in zip(linear[:2], activations, epoch_masks, strict=True):
            a = activation(layer(a)) * mask
        value = torch.nn.functional.cross_entropy(linear[-1](a), labels)
        step.zero_grad()
        value.backward()
        step.step()
        losses.append(value.item())
    ours = (result.model.weights, [record["train_loss"] for record in result.history])
    assert_same_training(ours, (torch_weights(modules), losses))
    assert all(0 < int((m == 0).sum()) < m.numel() for step_masks in masks for m in step_masks)


def test_clipping_equals_clip_grad_norm():
    """The flat gradient buffer clipped as clip_grad_norm_ clips the parameters' gradients,
    raw (Adam) and with the learning rate folded in (SGD), above and below the limit."""
    rng = np.random.default_rng(4)
    shapes = [(5, 8), (8,), (8, 3), (3,)]
    for clip_norm, scale in [(0.5, 1.0), (0.5, 0.07), (1e3, 1.0), (2.0, 0.3)]:
        flat, grads = flat_buffer(shapes, np.float64)
        for g in grads:
            g[...] = rng.standard_normal(g.shape)
        tensors = [torch.nn.Parameter(torch.zeros(g.shape, dtype=torch.float64)) for g in grads]
        for tensor, g in zip(tensors, grads, strict=True):
            tensor.grad = torch.from_numpy(g.copy())
        torch.nn.utils.clip_grad_norm_(tensors, clip_norm)
        flat *= scale
        clip_global_norm(flat, clip_norm, scale)
        for tensor, g in zip(tensors, grads, strict=True):
            np.testing.assert_allclose(g / scale, tensor.grad.numpy(), rtol=0, atol=1e-12)


def test_binary_sigmoid_output_matches_pytorch():
    layers = [(6, "tanh"), (1, "sigmoid")]
    training = {
        "epochs": 3,
        "batch_size": 10,
        "optimizer": {"name": "sgd", "learning_rate": 0.2, "momentum": 0.5},
    }
    X, y = make_rows(), make_labels(2)
    weights = make_weights([6, 1])
    ours = train_model_core(
        X, y, layers, "binary_cross_entropy", weights, "classification", **training
    )
    reference = train_torch(
        X, y.reshape(-1, 1).astype(np.float64), layers, "binary_cross_entropy", weights, **training
    )
    assert_same_training(ours, reference)


@pytest.mark.parametrize("loss", ["mse", "sse"])
def test_regression_matches_pytorch(loss):
    layers = [(7, "sigmoid"), (2, "linear")]
    training = {"epochs": 3, "batch_size": 12, "optimizer": {"name": "adam", "learning_rate": 0.01}}
    X = make_rows()
    targets = np.random.default_rng(3).standard_normal((N_SAMPLES, 2))
    weights = make_weights([7, 2])
    ours = train_model_core(X, targets, layers, loss, weights, "regression", **training)
    reference = train_torch(X, targets, layers, loss, weights, **training)
    assert_same_training(ours, reference)


# -- scikit-learn -------------------------------------------------------------------------------


def train_sklearn(
    X, y, hidden, weights, *, epochs, batch_size, learning_rate, momentum, nesterov, alpha
):
    """scikit-learn's MLP as plain mini-batch SGD: constant rate, no shuffling, no early stop."""
    classifier = MLPWithInitialWeights(
        hidden_layer_sizes=hidden,
        activation="relu",
        solver="sgd",
        alpha=alpha,
        batch_size=batch_size,
        learning_rate="constant",
        learning_rate_init=learning_rate,
        momentum=momentum,
        nesterovs_momentum=nesterov,
        max_iter=epochs,
        shuffle=False,
        tol=0.0,
        n_iter_no_change=epochs + 1,
    )
    classifier.initial_weights = weights
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        classifier.fit(X, y)
    return list(zip(classifier.coefs_, classifier.intercepts_, strict=True)), classifier.loss_curve_


@pytest.mark.parametrize(
    ("momentum", "nesterov", "alpha"),
    [(0.0, False, 0.0), (0.9, False, 0.0), (0.9, True, 0.0), (0.9, False, 0.32)],
)
def test_relu_softmax_sgd_matches_sklearn(momentum, nesterov, alpha):
    """sklearn scales L2 per batch, alpha / batch_size: the same as model_core's l2 when every
    batch is full (48 rows, batch 16)."""
    batch_size, epochs, learning_rate = 16, 4, 0.05
    X, y = make_rows(), make_labels(3)
    weights = make_weights([8, 6, 3])
    layers = [(8, "relu"), (6, "relu"), (3, "softmax")]
    ours = train_model_core(
        X,
        y,
        layers,
        "cross_entropy",
        weights,
        "classification",
        epochs=epochs,
        batch_size=batch_size,
        l2=alpha / batch_size,
        optimizer={
            "name": "sgd",
            "learning_rate": learning_rate,
            "momentum": momentum,
            "nesterov": nesterov,
        },
    )
    reference = train_sklearn(
        X,
        y,
        (8, 6),
        weights,
        epochs=epochs,
        batch_size=batch_size,
        learning_rate=learning_rate,
        momentum=momentum,
        nesterov=nesterov,
        alpha=alpha,
    )
    assert_same_training(ours, reference)
