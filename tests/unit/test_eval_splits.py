"""`radflow eval` on other splits (--split-salt, --split-field) and its two systems without a
model (consensus, ranker), with the paired comparison in results.md; real BM25, ROUGE, LightGBM."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pytest

from evaluation.inputs import Fields, read_reports
from evaluation.run import run_eval
from evaluation.tables import markdown
from kernel.errors import TrainingError
from radflow import cli
from training import dataset as ds
from training.recipe import Recipe

from .test_ranker import corpus


def test_the_empty_salt_is_todays_split_and_a_salt_moves_it() -> None:
    keys = [("A", f"ACC{i}") for i in range(3000)]
    assert all(ds.split_of(i, a) == ds.split_of(i, a, "") for i, a in keys)
    moved = sum(ds.split_of(i, a) != ds.split_of(i, a, "s1") for i, a in keys)
    assert 0.25 * len(keys) < moved < 0.5 * len(keys)  # independent 80/10/10 draws differ 34 % of the time
    counts = Counter(ds.split_of(i, a, "s1") for i, a in keys)
    assert abs(counts["train"] / len(keys) - 0.8) < 0.03 and abs(counts["test"] / len(keys) - 0.1) < 0.02
    moved_data, today = ds.build(corpus(300), salt="s1"), ds.build(corpus(300))
    assert sorted(e.accession for s in ds.SPLITS for e in moved_data.split(s)) == sorted(
        e.accession for s in ds.SPLITS for e in today.split(s))  # the same reports, only assigned differently
    assert [e.accession for e in moved_data.test] != [e.accession for e in today.test]


def _rows(path: Path, splits: list[str | None]) -> Path:
    with path.open("w", encoding="utf-8") as f:
        for n, split in enumerate(splits):
            row = {"id": f"r{n}", "findings": f"finding {n} in the left lung", "impression": f"lesion {n}"}
            if split is not None:
                row["fold"] = split
            f.write(json.dumps(row) + "\n")
    return path


def test_split_field_uses_the_corpus_assignment_and_names_the_flag_when_a_row_lacks_it(tmp_path: Path) -> None:
    path = _rows(tmp_path / "site.jsonl", ["train", "TRAIN", "validation", "dev", "test"])
    examples = read_reports([path], Fields(split="fold"))
    data = ds.build(examples, own_split=True)
    assert [len(data.train), len(data.val), len(data.test)] == [2, 2, 1]
    assert data.test[0].accession == "r4"
    bad = _rows(tmp_path / "bad.jsonl", ["train", None])
    with pytest.raises(TrainingError, match=r"--split-field fold: bad.jsonl:2: it has none"):
        read_reports([bad], Fields(split="fold"))
    odd = _rows(tmp_path / "odd.jsonl", ["holdout"])
    with pytest.raises(TrainingError, match="'holdout' is not one of"):
        read_reports([odd], Fields(split="fold"))


def test_cli_refuses_both_split_flags_and_reports_a_missing_split_column(tmp_path: Path, capsys) -> None:
    path = _rows(tmp_path / "site.jsonl", ["train", None])
    assert cli.main(["eval", "--data", str(path), "--split-field", "fold", "--split-salt", "x"]) == 2
    assert "give one" in capsys.readouterr().err
    assert cli.main(["eval", "--data", str(path), "--split-field", "fold", "--out", str(tmp_path / "o")]) == 2
    assert "--split-field fold" in capsys.readouterr().err


def test_consensus_and_ranker_are_chosen_on_validation_and_compared_report_by_report(tmp_path: Path,
                                                                                     monkeypatch) -> None:
    from training import ranker_train

    for name, grid in (("KS", (5, 10)), ("LEAVES", (7,)), ("TREES", (40,)), ("PENALTIES", (0.0, 0.25))):
        monkeypatch.setattr(ranker_train, name, grid)  # the real grid, narrowed to keep the test short
    examples = corpus(900, institution="SITE") + corpus(300, seed=5, institution="OTHER")
    result = run_eval(examples, tmp_path, Recipe.load("embedded"),
                      systems=["retrieval", "consensus", "ranker"], progress=False, split_salt="s2")
    means = {s: sum(x.rougeL for x in scores) / len(scores) for s, scores in result.scores.items()}
    assert means["ranker"] > means["retrieval"] + 0.05, means
    assert "k chosen per institution on the validation split (OTHER: k=" in result.notes["consensus"]
    assert "chosen on the validation split" in result.notes["ranker"]
    assert "missed-finding rule met: each institution" in result.notes["ranker"]
    text = markdown(result, ["institution"])
    assert "### R-L against retrieval, paired (difference, p)" in text
    assert "### R-L against consensus, paired (difference, p)" in text
    row = next(line for line in text.splitlines() if line.startswith("| **all** |") and "(p=" in line)
    assert f"{means['ranker'] - means['retrieval']:+.4f}" in row


def test_a_fixed_consensus_k_drafts_as_served_without_choosing_on_validation(tmp_path: Path) -> None:
    from model.consensus import ConsensusDrafter
    from model.drafter import DraftRequest
    from model.scoring.rouge import score
    from training.ranker_train import index_of  # the train split's case index, as run_eval builds it

    examples = corpus(300, institution="SITE")
    result = run_eval(examples, tmp_path, Recipe.load("embedded"), systems=["consensus"], progress=False,
                      consensus_k=3)
    assert result.notes["consensus"] == "the most agreed impression among the BM25 top-3 train reports, per institution"
    data = ds.build(examples)
    served = ConsensusDrafter(index_of(data.train), default_k=3).draft(
        [DraftRequest(e.institution, e.accession, e.findings, e.language) for e in result.test])
    scores = [s.rougeL for s in result.scores["consensus"]]
    assert scores == [pytest.approx(score(d.text, e.impression, e.language).rougeL)
                      for d, e in zip(served, result.test, strict=True)]
