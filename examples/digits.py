"""The 8x8 handwritten digits (the built-in sample: 1797 images, 64 pixels each, labels 0-9)
with two small hidden layers of 6 and 4 sigmoid units, trained by plain gradient descent; a
quarter of the rows is held out, and the model's accuracy on them is printed.

    make run                     # in one terminal
    python examples/digits.py    # in another
"""

from backprop_client import Client
from common import check_held_out_accuracy, run, train

NETWORK = {
    "layers": [
        {"units": 6, "activation": "sigmoid"},
        {"units": 4, "activation": "sigmoid"},
        {"units": 10, "activation": "softmax"},
    ]
}
TRAINING = {
    "epochs": 100,
    "batch_size": 32,
    "seed": 2,
    "validation_split": 0.25,  # held out: scored every epoch, never trained on
    "optimizer": {"name": "sgd", "learning_rate": 0.5},
}
# 64-6-4-10 is a small network: about 90% of the held-out rows; below this, something broke.
MIN_ACCURACY = 0.85


def main(client: Client) -> None:
    dataset = client.upload_dataset(builtin="digits")
    print(f"data set {dataset['id']}: digits, {dataset['rows']} rows x {dataset['features']}")
    job = train(client, dataset["id"], NETWORK, TRAINING, model_name="digits")
    print(f"train loss {job['train_loss']:.4f}, validation loss {job['val_loss']:.4f}")
    check_held_out_accuracy(job, MIN_ACCURACY)
    print("ok")


if __name__ == "__main__":
    run(main)
