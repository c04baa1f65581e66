"""`radflow eval`: input reading, the systems side by side on a real tiny model, the outputs."""

from __future__ import annotations

import csv
import json
import sys
from pathlib import Path

import pytest

from evaluation.inputs import Fields, drafting_order, read_reports, subsample
from evaluation.run import SYSTEMS, run_eval
from evaluation.tables import write_outputs
from kernel.errors import TrainingError
from model.acquire.bootstrap import BootstrapConfig
from radflow import cli
from radflow.demodata import generate_reports, write_pairs
from training import dataset as ds
from training.recipe import Recipe

REPORTS = Path(__file__).resolve().parents[3] / "shared" / "corpora" / "reports"
QUICK = Recipe.load("embedded").replace(templates=("1", "2"), selection_steps=2, selection_examples=8, epochs=1,
                                        min_examples=10, max_new_tokens=16, checkpoint_every=100)


def test_read_reports_skips_and_reports_rows_without_text(tmp_path: Path, capsys) -> None:
    jsonl = tmp_path / "site_a.jsonl"
    jsonl.write_text("\n".join([
        json.dumps({"id": "1", "findings": "左肺结节。", "impression": "左肺结节"}, ensure_ascii=False),
        json.dumps({"id": "2", "findings": "", "impression": "x"}),
        "{not json",
        json.dumps({"id": "3", "findings": "Clear lungs.", "impression": "Normal.", "body_part": "chest"}),
    ]) + "\n")
    table = tmp_path / "site_b.csv"
    table.write_text("report,conclusion,region\nSmall effusion.,Effusion,chest\n,,\n")
    rows = read_reports([jsonl], Fields(), err=sys.stderr)
    err = capsys.readouterr().err
    assert [(r.institution, r.accession, r.language, r.body_system) for r in rows] == [
        ("site_a", "1", "zh", "other"), ("site_a", "3", "en", "chest")]
    assert "site_a.jsonl:2: no findings; skipped" in err and "site_a.jsonl:3: not JSON" in err
    [row] = read_reports([table], Fields(findings="report", impression="conclusion", body="region"))
    assert (row.institution, row.findings, row.impression, row.body_system) == ("site_b", "Small effusion.",
                                                                              "Effusion", "chest")
    with pytest.raises(TrainingError, match="--data"):
        read_reports([tmp_path / "missing.jsonl"])


def test_eval_puts_every_system_side_by_side(tmp_path: Path, tiny_model: Path) -> None:
    pairs = write_pairs(generate_reports(12, seed=9), tmp_path / "pairs.jsonl")
    examples = read_reports([pairs])
    systems = [s for s in SYSTEMS if s not in ("fewshot", "fewshot-rerank")]  # the tiny base has no chat template
    with pytest.raises(TrainingError, match="chat template"):
        run_eval(examples, tmp_path / "out", QUICK, model_path=tiny_model, progress=False, systems=["fewshot"])
    result = run_eval(examples, tmp_path / "out", QUICK, model_path=tiny_model, progress=False, systems=systems)
    assert list(result.scores) == systems and result.test_size == len(result.test)
    assert all(len(s) == len(result.test) for s in result.scores.values())
    # the baselines are what they claim: retrieval copies a real impression, so it overlaps
    assert sum(s.rougeL for s in result.scores["retrieval"]) > 0
    assert "template" in result.notes["shared-adapter"] and "LAKEVIEW" in result.notes["institution-adapters"]
    paths = write_outputs(result, ["institution", "body_part"], tmp_path / "out", "radflow eval --data pairs.jsonl")
    markdown = paths["markdown"].read_text()
    assert "### R-L by institution" in markdown and "### missed by body part" in markdown
    assert "most similar train report(s) of the institution before the prompt" in result.notes["adapters-retrieval"]
    for name in ("XIHE", "NANHU", "LAKEVIEW", "chest", "maxillofacial_neck", *systems):
        assert name in markdown
    with paths["csv"].open() as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == (3 + 1 + 5 + 1) * len(systems)  # institutions and body systems, each with "all"
    assert paths["png"].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    # the saved drafts make a second run (here: a partial report) train and draft nothing
    again = run_eval(examples, tmp_path / "out", QUICK, model_path=tiny_model, progress=False, systems=systems,
                     partial=True)
    assert {s: [r.rougeL for r in v] for s, v in again.scores.items()} == {
        s: [r.rougeL for r in v] for s, v in result.scores.items()}


def test_a_killed_eval_reports_the_reports_every_system_drafted(tmp_path: Path, tiny_model: Path) -> None:
    examples = read_reports([write_pairs(generate_reports(12, seed=9), tmp_path / "pairs.jsonl")])
    full = run_eval(examples, tmp_path / "out", QUICK, model_path=tiny_model, progress=False, batch=4,
                    systems=["retrieval", "base"])
    saved = tmp_path / "out" / "drafts" / "base.json"
    state = json.loads(saved.read_text())
    state["texts"] = state["texts"][:8]  # as if killed after two batches
    saved.write_text(json.dumps(state))
    part = run_eval(examples, tmp_path / "out", QUICK, model_path=tiny_model, progress=False, batch=4,
                    systems=["retrieval", "base"], partial=True)
    assert len(part.test) == 8 and part.test_size == len(full.test) > 8
    assert [r.rougeL for r in part.scores["base"]] == [r.rougeL for r in full.scores["base"][:8]]
    assert "**Partial:** 8 of the" in write_outputs(part, ["institution"], tmp_path / "out")["markdown"].read_text()


def test_drafting_order_and_training_subsample() -> None:
    test = [ds.Example(i, f"{i}-{n}", "chest", "en", "f", "i") for i, k in (("A", 40), ("B", 10)) for n in range(k)]
    order = drafting_order(test, 5, seed=1)
    assert sorted(order, key=lambda e: e.accession) == sorted(test, key=lambda e: e.accession)
    assert all(len({e.institution for e in order[i : i + 5]}) == 1 for i in range(0, 50, 5))  # one site per batch
    assert [e.institution for e in order[:25]].count("B") == 5  # any prefix is about proportional
    assert order == drafting_order(test, 5, seed=1) != drafting_order(test, 5, seed=2)
    sample = subsample(test, 8, seed=1)
    assert [sum(e.institution == i for e in sample) for i in "AB"] == [8, 8] and subsample(test, None, 1) == test


def test_eval_cli_names_bad_options(tmp_path: Path, capsys) -> None:
    pairs = write_pairs(generate_reports(2, seed=9), tmp_path / "pairs.jsonl")
    assert cli.main(["eval", "--data", str(pairs), "--group-by", "hospital"]) == 2
    assert "--group-by hospital" in capsys.readouterr().err
    assert cli.main(["eval", "--data", str(tmp_path / "nope.jsonl")]) == 2
    assert "cannot read --data" in capsys.readouterr().err
    assert cli.main(["eval", "--data", str(pairs), "--systems", "gpt", "--out", str(tmp_path / "o")]) == 2
    assert "--systems" in capsys.readouterr().err


@pytest.mark.corpus
@pytest.mark.skipif(not REPORTS.is_dir(), reason="../shared/corpora/reports is absent")
def test_eval_reads_the_public_report_sets(tmp_path: Path) -> None:
    files = sorted(REPORTS.glob("*.jsonl"))
    examples = read_reports(files, limit=80)
    assert {e.institution for e in examples} == {f.stem for f in files}
    assert {e.language for e in examples} == {"zh", "en"}
    result = run_eval(examples, tmp_path, QUICK, bootstrap_config=BootstrapConfig(steps=10, vocab_size=600),
                      systems=["last-sentence", "retrieval", "base"], progress=False)
    assert {e.institution for e in result.test} == {f.stem for f in files}
