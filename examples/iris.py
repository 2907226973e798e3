"""Fisher's iris from a CSV file: upload examples/data/iris.csv (four measurements in cm and the
species), train a 4-8-3 classifier with a fifth of the rows held out, then predict the species
of three flowers of the file.

    make run                   # in one terminal
    python examples/iris.py    # in another
"""

import csv
from pathlib import Path

from backprop_client import Client
from common import check_held_out_accuracy, run, train

CSV = Path(__file__).resolve().parent / "data" / "iris.csv"
NETWORK = {"layers": [{"units": 8, "activation": "tanh"}, {"units": 3, "activation": "softmax"}]}
TRAINING = {
    "epochs": 100,
    "batch_size": 16,
    "seed": 1,
    "validation_split": 0.2,
    "optimizer": {"name": "adam", "learning_rate": 0.01},
}
MIN_ACCURACY = 0.85
SHOWN = (0, 50, 100)  # a row of each species: the file lists them 50 by 50


def main(client: Client) -> None:
    dataset = client.upload_dataset(path=CSV, target="species", task="classification", name="iris")
    print(f"data set {dataset['id']}: {CSV.name}, {dataset['rows']} rows, {dataset['classes']}")
    job = train(client, dataset["id"], NETWORK, TRAINING, model_name="iris")
    check_held_out_accuracy(job, MIN_ACCURACY)

    with CSV.open(newline="") as file:
        rows = list(csv.DictReader(file))
    flowers = [rows[i] for i in SHOWN]
    features = [[float(flower[name]) for name in dataset["feature_names"]] for flower in flowers]
    predicted = client.predict(job["model_id"], features)["predictions"]
    for flower, species in zip(flowers, predicted, strict=True):
        print(f"  {flower['species']:>10} predicted {species}")
    print("ok")


if __name__ == "__main__":
    run(main)
