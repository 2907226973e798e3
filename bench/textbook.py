"""The textbook NumPy training loop: a list of weight matrices and nothing else.

It is the yardstick for model_core's abstractions: forward, softmax cross-entropy, backward and
the SGD-with-momentum update, written the way a course would write them.
"""

import numpy as np


def train_textbook(
    X: np.ndarray,
    y: np.ndarray,
    weights: list[tuple[np.ndarray, np.ndarray]],
    epochs: int,
    batch_size: int,
    learning_rate: float,
    momentum: float,
    seed: int = 0,
) -> float:
    """Train a ReLU network with a softmax output in place; return the last epoch's mean loss.

    X : (n_samples, n_features); y : (n_samples,) int labels; weights : [(W, b), ...], updated.
    """
    rng = np.random.default_rng(seed)
    params = [p for pair in weights for p in pair]
    velocities = [np.zeros_like(p) for p in params]
    for _ in range(epochs):
        order = rng.permutation(len(X))
        epoch_loss = 0.0
        for start in range(0, len(X), batch_size):
            batch = order[start : start + batch_size]
            loss, grads = _loss_and_gradients(X[batch], y[batch], weights)
            epoch_loss += loss * len(batch)
            for p, v, g in zip(params, velocities, grads, strict=True):
                v *= momentum
                v -= learning_rate * g
                p += v
    return epoch_loss / len(X)


def _loss_and_gradients(x, y, weights):
    """Mean cross-entropy of a batch and its gradients [dW1, db1, dW2, db2, ...]."""
    activations = [x]
    for W, b in weights[:-1]:
        activations.append(np.maximum(activations[-1] @ W + b, 0))
    z = activations[-1] @ weights[-1][0] + weights[-1][1]
    z -= z.max(axis=1, keepdims=True)
    probabilities = np.exp(z)
    probabilities /= probabilities.sum(axis=1, keepdims=True)
    rows = np.arange(len(x))
    loss = -np.mean(np.log(probabilities[rows, y]))
    delta = probabilities
    delta[rows, y] -= 1
    delta /= len(x)
    grads = []
    for layer in range(len(weights) - 1, -1, -1):
        grads[:0] = [activations[layer].T @ delta, delta.sum(axis=0)]
        if layer:
            delta = (delta @ weights[layer][0].T) * (activations[layer] > 0)
    return float(loss), grads


def train_per_sample(
    X: np.ndarray,
    y: np.ndarray,
    weights: list[tuple[np.ndarray, np.ndarray]],
    epochs: int,
    learning_rate: float,
    seed: int = 0,
) -> float:
    """The tutorial's stochastic gradient descent, one row at a time, in place: sigmoid layers,
    squared error 1/2 * sum (a - t)^2, plain SGD. Returns the last epoch's mean loss.

    X : (n_samples, n_features); y : (n_samples,) int labels; weights : [(W, b), ...], updated.
    """
    rng = np.random.default_rng(seed)
    targets = np.eye(weights[-1][0].shape[1], dtype=X.dtype)[y]
    for _ in range(epochs):
        epoch_loss = 0.0
        for row in rng.permutation(len(X)):
            activations = [X[row]]
            for W, b in weights:
                activations.append(1.0 / (1.0 + np.exp(-(activations[-1] @ W + b))))
            error = activations[-1] - targets[row]
            epoch_loss += 0.5 * float(error @ error)
            delta = error * activations[-1] * (1.0 - activations[-1])
            for layer in range(len(weights) - 1, -1, -1):
                W, b = weights[layer]
                a = activations[layer]
                next_delta = (delta @ W.T) * a * (1.0 - a) if layer else None
                W -= learning_rate * np.outer(a, delta)
                b -= learning_rate * delta
                delta = next_delta
    return epoch_loss / len(X)
