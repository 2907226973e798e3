"""The classic worked example of backpropagation (Matt Mazur, "A Step by Step Backpropagation
Example"), run by the service: a 2-2-2 sigmoid network given the article's weights, one step of
gradient descent (learning rate 0.5) on squared error with its 1/2 (the loss "sse") for one
sample, then the updated weights and the total error checked against the ones it prints.

    make run                             # in one terminal
    python examples/worked_example.py    # in another; exit code 1 if a figure is off
"""

from backprop_client import Client
from common import CheckFailed, run, train

TOLERANCE = 1e-8
NETWORK = {
    "layers": [{"units": 2, "activation": "sigmoid"}, {"units": 2, "activation": "sigmoid"}],
    "loss": "sse",
    "dtype": "float64",
    # W has shape (inputs, units): W[i][j] is the weight from input i to unit j.
    "initial_weights": [
        {"W": [[0.15, 0.25], [0.20, 0.30]], "b": [0.35, 0.35]},  # w1 w3 / w2 w4, b1
        {"W": [[0.40, 0.50], [0.45, 0.55]], "b": [0.60, 0.60]},  # w5 w7 / w6 w8, b2
    ],
}
# One step on the one row, as the article does it: no shuffling, no standardisation.
TRAINING = {
    "epochs": 1,
    "batch_size": 1,
    "shuffle": False,
    "standardize": False,
    "optimizer": {"name": "sgd", "learning_rate": 0.5},
}
TOTAL_ERROR = 0.298371109  # before the update
# The weights after the update as the article prints them: (layer, input, unit).
UPDATED = {
    "w1": (0, 0, 0, 0.149780716),
    "w2": (0, 1, 0, 0.19956143),
    "w3": (0, 0, 1, 0.24975114),
    "w4": (0, 1, 1, 0.29950229),
    "w5": (1, 0, 0, 0.35891648),
    "w6": (1, 1, 0, 0.408666186),
    "w7": (1, 0, 1, 0.511301270),
    "w8": (1, 1, 1, 0.561370121),
}


def main(client: Client) -> None:
    dataset = client.upload_dataset(
        features=[[0.05, 0.10]], targets=[[0.01, 0.99]], task="regression", name="worked-example"
    )
    print(f"data set {dataset['id']}: inputs 0.05, 0.10; targets 0.01, 0.99")
    job = train(client, dataset["id"], NETWORK, TRAINING)

    total_error = client.epochs(job["id"])[0]["train_loss"]
    layers = client.weights(job["model_id"])["layers"]
    found = {name: layers[layer]["W"][i][j] for name, (layer, i, j, _) in UPDATED.items()}
    print(f"total error {total_error:.9f} (published {TOTAL_ERROR})")
    print("updated weights: " + ", ".join(f"{name} = {value:.9f}" for name, value in found.items()))

    wrong = [
        f"{name} = {found[name]:.9f}, published {published}"
        for name, (*_, published) in UPDATED.items()
        if abs(found[name] - published) > TOLERANCE
    ]
    if abs(total_error - TOTAL_ERROR) > TOLERANCE:
        wrong.append(f"total error {total_error:.9f}, published {TOTAL_ERROR}")
    if wrong:
        raise CheckFailed(f"off by more than {TOLERANCE}: " + "; ".join(wrong))
    print(f"ok: the total error and w1..w8 match the published figures within {TOLERANCE}")


if __name__ == "__main__":
    run(main)
