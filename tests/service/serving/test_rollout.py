"""service/serving/rollout.py: which version of a split answers, counts across processes, and
shadow runs that never hold a request up."""

import random
import threading

import numpy as np
import pytest

from service.serving.rollout import (
    SERVED,
    SHADOW_MAX,
    CountPublisher,
    FileCounts,
    ShadowRun,
    ShadowRunner,
    merged,
    pick_version,
    served_counts,
    shadow_figures,
)
from tests.model_core.test_network import random_model

KEYS = [f"user-{i}" for i in range(10_000)]


def routed(arms, keys=KEYS, alias="digits@production") -> list[int]:
    return [pick_version(arms, alias, key) for key in keys]


def test_keys_land_on_each_version_by_its_weight():
    versions = routed([(3, 90), (4, 10)])
    share = versions.count(4) / len(versions)
    assert abs(share - 0.10) <= 0.015, share


def test_a_key_always_gets_the_same_version_and_another_alias_hashes_apart():
    assert routed([(3, 90), (4, 10)]) == routed([(4, 10), (3, 90)])
    other = routed([(3, 90), (4, 10)], alias="digits@staging")
    assert other != routed([(3, 90), (4, 10)])


def test_raising_the_new_versions_weight_moves_keys_only_towards_it():
    before = routed([(3, 90), (4, 10)])
    after = routed([(3, 70), (4, 30)])
    assert all(now == 4 for was, now in zip(before, after, strict=True) if was == 4)
    assert abs(after.count(4) / len(after) - 0.30) <= 0.015
    three = routed([(3, 70), (4, 20), (5, 10)])
    assert abs(three.count(5) / len(three) - 0.10) <= 0.015


def test_without_a_key_the_choice_is_random_by_weight():
    rng = random.Random(5)
    picks = [pick_version([(1, 1), (2, 3)], "m@a", None, rng) for _ in range(10_000)]
    assert abs(picks.count(2) / len(picks) - 0.75) <= 0.015
    assert pick_version([(7, 100)], "m@a", None) == 7


def test_counts_are_summed_over_processes_and_the_max_is_the_largest(tmp_path):
    store = FileCounts(tmp_path)
    first, second = CountPublisher(store), CountPublisher(store, process="another-host:1")
    for _ in range(3):
        first.add("k", f"{SERVED}3")
    second.add("k", f"{SERVED}3")
    second.add("k", f"{SERVED}4", 2)
    first.raise_max("k", 0.5)
    second.raise_max("k", 0.25)
    first.publish()
    second.publish()
    (tmp_path / "other").with_suffix(".json").write_text('{"k": {"served:4": 1}}')
    counts = first.read("k")
    assert served_counts(counts) == {3: 4, 4: 3}
    assert counts[SHADOW_MAX] == 0.5


def test_merged_counts_take_the_max_of_maxima_and_sum_the_rest():
    parts = [{"served:1": 2.0, f"{SHADOW_MAX}a": 0.1}, {"served:1": 1.0, f"{SHADOW_MAX}b": 0.3}]
    assert merged(parts) == {"served:1": 3.0, SHADOW_MAX: 0.3}


def model_pair(task: str):
    activations = ["relu", "softmax"] if task == "classification" else ["relu", "linear"]
    return random_model(activations, "float64", 1.0, 1), random_model(
        activations, "float64", 1.0, 2
    )


def predictions(model, x, _max_bytes):
    if model.task == "classification":
        return model.predict_with_proba(x)[0]
    return model.predict(x)


@pytest.mark.parametrize("task", ["classification", "regression"])
def test_a_shadow_compares_its_own_predictions_with_the_answer(tmp_path, task):
    answering, shadow = model_pair(task)
    x = np.random.default_rng(0).normal(size=(50, 5))
    counts = CountPublisher(FileCounts(tmp_path))
    runner = ShadowRunner(counts, 10, predictions)
    answered = predictions(answering, x, None)
    labels = ("t", "m", "a", "2")
    assert runner.submit(ShadowRun("k", labels, lambda: shadow, x, answered, 1 << 20))
    runner.wait()
    figures = shadow_figures(counts.read("k"), task)
    direct = predictions(shadow, x, None)
    assert figures["requests_compared"] == 1 and figures["rows_compared"] == 50
    if task == "classification":
        assert figures["agreement"] == pytest.approx(np.mean(direct == answered))
        assert 0 < figures["agreement"] < 1
    else:
        differences = np.abs(direct - answered)
        assert figures["mean_abs_difference"] == pytest.approx(differences.mean())
        assert figures["max_abs_difference"] == pytest.approx(differences.max())


def test_a_full_queue_drops_the_shadow_run_and_counts_it(tmp_path):
    answering, shadow = model_pair("classification")
    x = np.zeros((1, 5))
    counts = CountPublisher(FileCounts(tmp_path))
    runner = ShadowRunner(counts, 1, predictions)
    held = threading.Event()

    def blocked_load():
        held.wait(10)
        return shadow

    labels = ("t", "m", "a", "2")
    answered = predictions(answering, x, None)
    assert runner.submit(ShadowRun("k", labels, blocked_load, x, answered, 1 << 20))
    # The thread now waits in blocked_load with the queue empty: one more fills it.
    while runner.queue.qsize():
        pass
    assert runner.submit(ShadowRun("k", labels, lambda: shadow, x, answered, 1 << 20))
    assert not runner.submit(ShadowRun("k", labels, lambda: shadow, x, answered, 1 << 20))
    held.set()
    runner.wait()
    figures = shadow_figures(counts.read("k"), "classification")
    assert (figures["requests_compared"], figures["requests_dropped"]) == (2, 1)
