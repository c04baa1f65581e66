"""Training pieces without a broker: splits, recipes, the significance test and the gate."""

from __future__ import annotations

from collections import Counter

import pytest

from kernel.errors import TrainingError
from training.dataset import Example, build, split_of
from training.gate import ReportScore, approximate_randomisation, decide
from training.recipe import Recipe
from training.schedule import parse_interval


def _example(i: int, institution: str = "A", body: str = "chest", impression: str | None = None) -> Example:
    return Example(institution, f"ACC{i:05d}", body, "en", f"finding {i}", impression or f"impression {i}")


def test_split_is_stable_and_about_80_10_10() -> None:
    counts = Counter(split_of("A", f"ACC{i}") for i in range(5000))
    assert 0.77 < counts["train"] / 5000 < 0.83 and 0.08 < counts["val"] / 5000 < 0.12
    assert all(split_of("A", f"ACC{i}") == split_of("A", f"ACC{i}") for i in range(50))
    # a refit with more data never moves an old report to another split
    small = build(_example(i) for i in range(100))
    large = build(_example(i) for i in range(400))
    for name in ("train", "val", "test"):
        assert {e.accession for e in small.split(name)} <= {e.accession for e in large.split(name)}


def test_build_deduplicates_and_skips_empty_pairs() -> None:
    rows = [_example(1), _example(2, impression="same"), _example(3, impression="same"), _example(4, impression=" ")]
    rows[2] = Example("A", "ACC00003", "chest", "en", "finding 2", "same")  # a copied report
    data = build(rows)
    assert sum(data.counts().values()) == 2 and data.duplicates == 1


def test_recipe_defaults_follow_the_paper_and_files_are_checked(tmp_path) -> None:
    paper = Recipe.load("paper")
    assert (paper.r, paper.alpha, paper.lr, paper.epochs, paper.effective_batch, paper.max_length) == (
        64, 16, 1.41e-5, 3, 64, 512)
    assert paper == Recipe() and len(paper.templates) == 5
    bad = tmp_path / "bad.yaml"
    bad.write_text("rank: 8\n")
    with pytest.raises(TrainingError, match="unknown keys"):
        Recipe.load(bad)
    with pytest.raises(TrainingError, match="RADFLOW_TRAIN_RECIPE"):
        Recipe.load("nonexistent")
    with pytest.raises(TrainingError, match="multiple of micro_batch"):
        Recipe(effective_batch=10, micro_batch=4)


def test_approximate_randomisation() -> None:
    same = [0.3, 0.5, 0.2, 0.4] * 10
    assert approximate_randomisation(same, same, 500) == 1.0
    better = [x + 0.1 for x in same]
    assert approximate_randomisation(better, same, 500) < 0.01
    noisy = [x + (0.05 if i % 2 else -0.05) for i, x in enumerate(same)]
    assert approximate_randomisation(noisy, same, 500) > 0.5


def _scores(values: list[float], missed: int = 0) -> list[ReportScore]:
    return [ReportScore(v, v, v, missed, 0) for v in values]


def test_gate_promotes_a_clear_winner_and_refuses_a_regressing_segment() -> None:
    recipe = Recipe(min_segment=10, margin=0.02, permutations=500)
    examples = [_example(i, body="chest") for i in range(30)] + [_example(i, body="head") for i in range(30, 60)]
    champion = _scores([0.4] * 60)
    win = decide(examples, _scores([0.5] * 60), champion, recipe)
    assert win.promote and win.p_value < 0.01 and len(win.segments) == 2
    # big gain on chest, a loss of 0.05 on head: overall better, still refused
    mixed = decide(examples, _scores([0.7] * 30 + [0.35] * 30), champion, recipe)
    assert not mixed.promote and "A/head" in mixed.reason
    # the same loss on a segment too small to judge does not block
    small = decide(examples, _scores([0.7] * 30 + [0.35] * 30), champion, Recipe(min_segment=31, permutations=500))
    assert small.promote
    missed = decide(examples, _scores([0.5] * 60, missed=1), champion, recipe)
    assert not missed.promote and "missed-diagnosis" in missed.reason
    assert not decide(examples, champion, champion, recipe).promote


def test_parse_interval() -> None:
    assert parse_interval("24h") == 86400 and parse_interval("30m") == 1800 and parse_interval("90") == 90
    with pytest.raises(TrainingError, match="--every"):
        parse_interval("daily")


def test_schedule_refits_everything_then_the_segment_of_a_drift_alert(tmp_path) -> None:
    import threading
    import time

    from storage.repository import Repository
    from storage.tables import AlertRow
    from training.refit import Outcome
    from training.schedule import run_schedule

    repo = Repository(f"sqlite:///{tmp_path / 'radflow.sqlite'}")
    repo.add(AlertRow(institution="XIHE", body_system="chest", metric="rougeL"))  # before start: not new
    calls: list[tuple[str, str]] = []

    class RecordingRefitter:  # the refits themselves are tested on the real path (test_training.py)
        def dataset(self, window_end):
            return None

        def targets(self, data):
            return ["shared", "XIHE"]

        def refit_all(self, trigger):
            calls.append(("all", trigger))
            return []

        def refit(self, name, trigger):
            calls.append((name, trigger))
            return Outcome(name, 1, "rejected", "")

    stop = threading.Event()
    def choose() -> None:  # the systems gate after each round (its own run is tested in test_systems.py)
        calls.append(("systems", "choose"))

    thread = threading.Thread(target=run_schedule, args=(RecordingRefitter(), repo, 3600, stop, 0.05, 3600),
                              kwargs={"choose": choose})
    thread.start()
    try:
        deadline = time.monotonic() + 5
        while ("systems", "choose") not in calls and time.monotonic() < deadline:
            time.sleep(0.02)
        repo.add(AlertRow(institution="XIHE", body_system="head", metric="rougeL"))
        repo.add(AlertRow(institution="NANHU", body_system="chest", metric="missed_rate"))  # no adapter: shared
        repo.add(AlertRow(institution="XIHE", body_system="chest", metric="over_rate"))  # same adapter: once
        while len(calls) < 5 and time.monotonic() < deadline:
            time.sleep(0.02)
    finally:
        stop.set()
        thread.join(5)
    assert calls[:2] == [("all", "schedule"), ("systems", "choose")] and calls[-1] == ("systems", "choose")
    assert sorted(calls[2:4]) == [("XIHE", "drift"), ("shared", "drift")] and len(calls) == 5
