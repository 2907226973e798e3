"""XOR with the Python client: upload the built-in sample, train a 2-4-2 network while following
its epochs live, then predict the four rows by the model's name.

    make run                  # in one terminal
    python examples/xor.py    # in another (BACKPROP_URL, BACKPROP_API_KEY if AUTH=required)
"""

from backprop_client import Client
from common import CheckFailed, run

ROWS = [[0, 0], [0, 1], [1, 0], [1, 1]]
NETWORK = {"layers": [{"units": 4, "activation": "tanh"}, {"units": 2, "activation": "softmax"}]}
TRAINING = {
    "epochs": 300,
    "batch_size": "full",
    "seed": 1,
    "optimizer": {"name": "adam", "learning_rate": 0.05},
}
REPORT_EVERY = 100  # epochs


def main(client: Client) -> None:
    dataset = client.upload_dataset(builtin="xor")
    print(f"data set {dataset['id']}: xor, {dataset['rows']} rows")
    job = client.submit_job(dataset["id"], NETWORK, TRAINING, model_name="xor")
    print(f"job {job['id']}: training {job['epochs']} epochs, following its events")
    status = job["status"]
    for event in client.follow(job["id"]):
        if event.type == "epoch" and event.data["epoch"] % REPORT_EVERY == 0:
            print(f"  epoch {event.data['epoch']}: train loss {event.data['train_loss']:.5f}")
        elif event.type == "status":
            status = event.data["status"]
    if status != "succeeded":
        raise CheckFailed(f"job {job['id']} {status}: {client.job(job['id'])['error']}")

    model = client.model(client.job(job["id"])["model_id"])
    answer = client.predict(f"xor:{model['version']}", ROWS)
    print(f"model xor:{model['version']} predicts {answer['predictions']} for {ROWS}")
    if answer["predictions"] != [0, 1, 1, 0]:
        raise CheckFailed(f"XOR not learned: {answer['predictions']}, expected [0, 1, 1, 0]")
    print("ok: XOR learned")


if __name__ == "__main__":
    run(main)
