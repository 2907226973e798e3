"""Dashboard benchmark (issue 11, "keep it small and fast"): what a first visit downloads, and
how long each page takes to show its data, in Debian's headless Chromium.

    python -m bench.dashboard                 # 10 visits per page (needs chromium, chromium-driver)
    python -m bench.dashboard --visits 30

It starts the service as `make run` does (the embedded default), stores the digits data set
and trains one model on it (64-32-10, 60 epochs), and ten jobs of 300 epochs on iris, then opens
each page ``--visits`` times in one browser: the jobs list, that job's page until its 60 epochs
are on the chart (read from the event stream), the model page until its architecture is drawn,
the data set's preview, and the workbench's pages (issue 28): the train form until the API's
resolved defaults are shown (one POST /v1/jobs/validate), the upload form, and the comparison of
the ten jobs until their 3,000 epochs are on its charts (each job and all its epochs read).
Per page: the median and worst time from navigation to the data on screen, measured by the
page's own clock (``performance.now()`` when the element appeared). Bytes: the sum of
``transferSize`` of the page and every file it loaded on the first, cold visit.
"""

import argparse
import statistics
import tempfile
from pathlib import Path

from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.support.ui import WebDriverWait

from bench.serving import machine, running_service, say

EPOCHS = 60
JOB = {
    "network": {
        "layers": [{"units": 32, "activation": "relu"}, {"units": 10, "activation": "softmax"}]
    },
    "training": {"epochs": EPOCHS, "validation_split": 0.2, "seed": 1},
}
COMPARED_JOBS = 10
COMPARED_EPOCHS = 300
COMPARED_JOB = {
    "network": {"layers": [{"units": 3, "activation": "softmax"}]},
    "training": {"epochs": COMPARED_EPOCHS, "batch_size": "full", "validation_split": 0.2},
}
# Reports performance.now() once ``selector`` is in the page (polled every 5 ms).
WAIT_FOR = """
const [selector, done] = [arguments[0], arguments[arguments.length - 1]];
const poll = () => document.querySelector(selector) ? done(performance.now()) : setTimeout(poll, 5);
poll();
"""
TRANSFERRED = """
const entries = performance.getEntriesByType("navigation")
  .concat(performance.getEntriesByType("resource"));
return entries.map((e) => [e.name, e.transferSize, e.decodedBodySize]);
"""


def compared_job(seed: int) -> dict:
    """One of the compared jobs: the same network, its own seed and learning rate."""
    training = {**COMPARED_JOB["training"], "seed": seed}
    training["optimizer"] = {"name": "adam", "learning_rate": 0.001 * (seed + 1)}
    return {"network": COMPARED_JOB["network"], "training": training}


def browser() -> webdriver.Chrome:
    options = webdriver.ChromeOptions()
    options.binary_location = "/usr/bin/chromium"
    for argument in (
        "--headless=new",
        "--no-sandbox",
        "--disable-dev-shm-usage",
        "--window-size=1280,900",
        "--disable-background-networking",
    ):
        options.add_argument(argument)
    driver = webdriver.Chrome(service=Service("/usr/bin/chromedriver"), options=options)
    driver.set_script_timeout(60)
    return driver


def time_to_data(driver, url: str, selector: str) -> float:
    """Milliseconds from navigation to ``selector`` in the page, by the page's clock."""
    driver.get("about:blank")
    driver.get(url)
    WebDriverWait(driver, 60).until(
        lambda d: d.execute_script("return document.readyState") != "loading"
    )
    return driver.execute_async_script(WAIT_FOR, selector)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--visits", type=int, default=10)
    args = parser.parse_args()
    with (
        tempfile.TemporaryDirectory() as folder,
        running_service("embedded", Path(folder)) as (
            client,
            _settings,
        ),
    ):
        base = client.base_url
        dataset = client.post("/v1/datasets", {"builtin": "digits"})
        job = client.post("/v1/jobs", {"dataset_id": dataset["id"], **JOB})
        model_id = client.wait_for(job["id"], {"succeeded"})["model_id"]
        iris = client.post("/v1/datasets", {"builtin": "iris"})
        compared = [
            client.post("/v1/jobs", {"dataset_id": iris["id"], **compared_job(seed)})["id"]
            for seed in range(COMPARED_JOBS)
        ]
        for compared_id in compared:
            client.wait_for(compared_id, {"succeeded"})
        pages = {
            "jobs list": (f"{base}/#/jobs", f'#jobs tr[data-job="{job["id"]}"]'),
            "job page (60 epochs charted)": (
                f"{base}/#/jobs/{job['id']}",
                f'#loss-chart[data-points="{EPOCHS}"]',
            ),
            "model page": (f"{base}/#/models/{model_id}", "#architecture .layer"),
            "data set preview (20 rows)": (
                f"{base}/#/datasets/{dataset['id']}",
                "#preview tbody tr:nth-child(20)",
            ),
            "train form (defaults from the API)": (
                f"{base}/#/datasets/{dataset['id']}/train",
                '[data-path="training.epochs"] .resolved:not(:empty)',
            ),
            "upload form": (f"{base}/#/datasets/upload", "#upload-form"),
            f"comparison of {COMPARED_JOBS} jobs x {COMPARED_EPOCHS} epochs": (
                f"{base}/#/compare/{','.join(map(str, compared))}",
                f'#compare-learning_rate[data-points="{COMPARED_JOBS * COMPARED_EPOCHS}"]',
            ),
        }
        driver = browser()
        try:
            driver.get(f"{base}/#/jobs")
            WebDriverWait(driver, 60).until(lambda d: d.find_elements("css selector", "#jobs"))
            files = driver.execute_script(TRANSFERRED)
            times = {name: [] for name in pages}
            for _ in range(args.visits):  # round-robin, so that a noisy moment hits every page
                for name, (url, selector) in pages.items():
                    times[name].append(time_to_data(driver, url, selector))
        finally:
            driver.quit()
    say("done")
    print(f"Machine: {machine()}; Chromium headless; {args.visits} visits per page\n")
    print("| file | transferred | decoded |\n| --- | ---: | ---: |")
    for name, transferred, decoded in files:
        print(f"| {name.removeprefix(base)} | {transferred:,} B | {decoded:,} B |")
    total = sum(transferred for _, transferred, _ in files)
    print(f"| **first visit, in all** | **{total:,} B** | |\n")
    print("| page | median ms to data on screen | worst |\n| --- | ---: | ---: |")
    for name, samples in times.items():
        print(f"| {name} | {statistics.median(samples):.0f} | {max(samples):.0f} |")


if __name__ == "__main__":
    main()
