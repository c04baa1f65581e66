"""The trained ranker as a served system: `radflow import` trains a version from the signed reports
in storage (training/ranker_refit.py), the systems gate promotes it on a segment where it wins,
and the worker's router then drafts that segment with it, each draft naming the version. Real
SQLite, BM25, ROUGE and LightGBM on a small generated corpus; the validation grid narrowed."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from kernel.settings import Settings
from model.drafter import DraftRequest
from model.retrieval import CaseIndex
from model.systems import Loaded, SegmentRouter, build, with_champions
from radflow import cli
from storage.repository import Repository
from streams.worker import serving_router
from tests.conftest import free_port
from training import dataset as ds
from training import ranker_train as rt
from training.ranker_refit import refit_ranker, training_reports
from training.systems_gate import holdout

from .test_ranker import corpus


@pytest.fixture
def site(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, tiny_model: Path) -> Path:
    """An archive of 700 signed chest reports, and the settings `radflow import` reads."""
    for name, grid in (("KS", (5, 10)), ("LEAVES", (7,)), ("TREES", (40,)), ("PENALTIES", (0.0,))):
        monkeypatch.setattr(rt, name, grid)  # the real grid, narrowed to keep the test short
    path = tmp_path / "archive.jsonl"
    with path.open("w", encoding="utf-8") as f:
        for e in corpus(700):
            f.write(json.dumps({"id": e.accession, "institution": e.institution, "body_part": "chest",
                                "language": "en", "findings": e.findings, "impression": e.impression}) + "\n")
    for name, value in {"HOME": str(tmp_path / "home"), "DATABASE_URL": f"sqlite:///{tmp_path / 'db.sqlite'}",
                        "BROKER": f"kafka://127.0.0.1:{free_port()}", "MODEL_PATH": str(tiny_model),  # no broker: choices stay in storage
                        "SYSTEMS": "retrieval,consensus,ranker", "SYSTEM_HOLDOUT": "120",
                        "RANKER_MIN_REPORTS": "200", "RANKER_MAX_REPORTS": "400"}.items():
        monkeypatch.setenv(f"RADFLOW_{name}", value)
    return path


def _cases(repository: Repository) -> CaseIndex:
    cases = CaseIndex()
    for row in repository.signed_pairs():
        cases.add(row.institution, row.accession, row.findings, row.impression)
    return cases


def test_import_trains_a_ranker_the_gate_promotes_where_it_wins_and_drafts_name_its_version(
        site: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["import", "--data", str(site), "--split", "train"]) == 0  # one split of the hash, as the docs do
    out = capsys.readouterr().out
    assert "ranker: ranker/v0001 trained on 400 signed reports" in out, out
    settings = Settings.from_env()
    repository = Repository(settings.resolved_database_url)
    assert repository.system_champions() == {("SITE", "chest"): "ranker/v0001"}, out
    evidence = {e.challenger: e for e in repository.system_evals()}
    assert set(evidence) == {"consensus", "ranker/v0001"}
    won = evidence["ranker/v0001"]
    assert won.promoted and won.champion == "retrieval" and won.n == 120 and won.p_value < 0.05
    assert won.challenger_rougeL > won.champion_rougeL + 0.05

    router = serving_router(settings, repository, _cases(repository))
    held = holdout(ds.from_rows(repository.signed_pairs()).train, 5)
    drafts = router.draft([DraftRequest(e.institution, f"new-{e.accession}", e.findings, e.language,
                                        body_system="chest") for e in held])
    assert {d.system for d in drafts} == {"ranker/v0001"}  # the drafts table and score rows keep it
    assert {d.adapter_version for d in drafts} == {"ranker/v0001"}
    assert all(d.text for d in drafts)

    assert cli.main(["systems", "choose"]) == 0  # nothing new signed: the version is kept, not retrained
    out = capsys.readouterr().out
    assert "ranker/v0001 was trained on these 400 reports: kept" in out, out
    assert not (settings.resolved_ranker_dir / "v0002").exists()
    assert repository.system_champions() == {("SITE", "chest"): "ranker/v0001"}
    assert cli.main(["systems", "list"]) == 0
    assert "ranker/v0001" in capsys.readouterr().out


def test_the_ranker_never_trains_on_the_gates_held_out_reports_and_waits_for_enough(tmp_path: Path) -> None:
    examples = corpus(300)
    held = {e.accession for e in holdout(examples, 120)}
    reports = training_reports(examples, 120, 100)
    assert len(reports) == 100 and not held & {e.accession for e in reports}
    assert reports == training_reports(list(reversed(examples)), 120, 100)  # the same sample every run
    assert len(training_reports(examples, 120, 10_000)) == 180
    few = refit_ranker(examples, tmp_path, min_reports=200, max_reports=1000, holdout_n=120)
    assert (few.path, few.trained) == (None, False) and "180 signed reports" in few.reason
    off = refit_ranker(examples, tmp_path, min_reports=0, max_reports=1000, holdout_n=0)
    assert not off.trained and "RADFLOW_RANKER_MIN_REPORTS=0" in off.reason
    assert not list(tmp_path.iterdir())  # nothing saved


def test_without_a_trained_ranker_the_system_is_left_out_and_a_promoted_version_stays_served(tmp_path: Path) -> None:
    loaded = Loaded(CaseIndex(), rankers=tmp_path / "rankers" / "ranker")
    assert list(build(["retrieval", "ranker"], loaded)) == ["retrieval"]  # nothing trained yet
    path = rt.train_ranker(corpus(300), tmp_path / "rankers", ks=(5,), leaves=(7,), trees=(20,), penalties=(0.0,))
    assert list(build(["retrieval", "ranker"], loaded)) == ["retrieval", f"ranker/{path.name}"]
    names = with_champions(["retrieval", "ranker"], {("A", "chest"): "ranker/v0001", ("A", "head"): "consensus"})
    assert names == ["retrieval", "ranker", "ranker/v0001"]
    assert list(build(names, loaded)) == ["retrieval", "ranker/v0001"]  # the newest is the promoted one
    assert "ranker/v0009" not in build(["ranker/v0009"], loaded)  # deleted since: left to the cold-start rule
    router = SegmentRouter(build(["retrieval"], loaded), loaded.cases, loaded=loaded)
    assert router.set_champions({("A", "chest"): "ranker/v0001"}) == ["A/chest -> ranker/v0001"]  # promoted live
    assert router.system_for("A", "chest") == "ranker/v0001"
