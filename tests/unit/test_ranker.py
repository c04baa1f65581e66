"""The trained ranker of retrieved impressions (model/ranker.py, training/ranker_train.py) on a
small generated corpus: real BM25, real ROUGE, real LightGBM lambdarank."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest

from kernel.errors import ModelError, TrainingError
from model.drafter import DraftRequest
from model.ranker import RANKER_META, RankerDrafter, latest_version, load_ranker, rankers_dir
from model.ranker_features import FEATURES, candidates
from training import dataset as ds
from training import ranker_train as rt

FINDINGS = ["nodule", "effusion", "consolidation", "pneumothorax", "atelectasis", "cardiomegaly"]
SIDES = ["left", "right"]
FILLER = ["The heart size is normal.", "The mediastinum is unremarkable.", "No acute bony abnormality.",
          "Degenerative changes of the spine.", "The trachea is midline.", "Lines and tubes are unchanged.",
          "Prior sternotomy wires are intact.", "Surgical clips project over the abdomen."]


def corpus(n: int, seed: int = 3, institution: str = "SITE") -> list[ds.Example]:
    """Findings whose one abnormality (side and kind) the impression names, in a lot of shared
    filler: BM25's nearest case often matches the filler, not the abnormality."""
    rng = random.Random(seed)
    out = []
    for i in range(n):
        finding, side = rng.choice(FINDINGS), rng.choice(SIDES)
        filler = rng.sample(FILLER, 4)
        findings = " ".join(filler[:2] + [f"There is a {side} {finding}."] + filler[2:])
        out.append(ds.Example(institution, f"A{i:05d}", "chest", "en", findings, f"{side.title()} {finding}."))
    return out


def test_leave_one_out_never_offers_a_report_its_own_impression_count() -> None:
    examples = corpus(60)
    index = rt.index_of(examples)
    e = examples[0]
    found = candidates(index, e.institution, e.findings, e.language, 5, exclude=e.accession,
                       own_impression=e.impression)
    assert found and all(c.case.key != e.accession for c in found)
    history = FEATURES.index("history_log")
    same = sum(x.impression == e.impression for x in examples) - 1
    for c in found:
        if c.case.impression == e.impression:
            import math

            assert c.features[history] == pytest.approx(math.log1p(same))
    assert len({c.case.impression for c in found}) == len(found)  # distinct impressions only


def test_trained_ranker_beats_the_nearest_case_on_validation_and_is_a_versioned_artifact(tmp_path: Path) -> None:
    examples = corpus(700)
    path = rt.train_ranker(examples, tmp_path / "rankers", ks=(5, 10), leaves=(7,), trees=(40,))
    assert path == tmp_path / "rankers" / "ranker" / "v0001"
    meta = json.loads((path / RANKER_META).read_text())
    assert meta["features"] == list(FEATURES) and meta["k"] in (5, 10)
    data = ds.build(examples)  # duplicates dropped, the test split held out
    assert meta["window"]["reports"] == len(data.train) + len(data.val) < len(examples)
    metrics = meta["metrics"]
    assert metrics["validation_rougeL"] > metrics["validation_top1_rougeL"] + 0.05  # it learnt to read the findings
    assert metrics["validation_rougeL"] <= metrics["validation_oracle_rougeL"] + 1e-9

    index = rt.index_of(examples)
    drafter = RankerDrafter.load(path, index)
    new = corpus(30, seed=99)
    drafts = drafter.draft([DraftRequest(e.institution, e.accession, e.findings, e.language) for e in new])
    assert {d.adapter_version for d in drafts} == {"ranker/v0001"}
    assert all(d.text and d.guard == "" for d in drafts)
    right = sum(d.text == e.impression for d, e in zip(drafts, new))
    assert right >= 20, f"only {right} of 30 drafts name the abnormality"
    [empty] = drafter.draft([DraftRequest("ELSEWHERE", "x", new[0].findings, "en")])
    assert (empty.text, empty.guard) == ("", "empty")
    assert rt.train_ranker(examples, tmp_path / "rankers", ks=(5,), leaves=(7,), trees=(10,)).name == "v0002"
    assert latest_version(rankers_dir(tmp_path)) == tmp_path / "rankers" / "ranker" / "v0002"
    assert latest_version(tmp_path / "nowhere") is None


def test_bad_artifacts_and_too_little_data_are_clear_errors(tmp_path: Path) -> None:
    with pytest.raises(ModelError, match="not a radflow ranker"):
        load_ranker(tmp_path)
    with pytest.raises(TrainingError, match="train and validation"):
        rt.train_ranker(corpus(3), tmp_path / "rankers")


def test_a_ranker_trained_on_fewer_features_still_serves_and_an_unknown_one_is_refused(tmp_path: Path) -> None:
    """Upgrading adds features; a site's promoted ranker, trained on the older list, keeps serving
    on the columns it names."""
    import lightgbm as lgb

    from model.ranker import Ranker, save_ranker

    examples = corpus(300)
    older = FEATURES[:21]  # ranker v2's list
    qs = rt.queries(examples, rt.index_of(examples), 5, True)
    x, y, group = rt._matrix([q for q in qs if len(q.candidates) > 1])
    booster = lgb.train(rt.BASE_PARAMS | {"num_leaves": 7}, lgb.Dataset(x[:, :21], label=y, group=group,
                                                                       feature_name=list(older)), num_boost_round=30)
    path = save_ranker(Ranker(booster, 5, older), tmp_path / "rankers", window={}, metrics={}, params={})
    drafter = RankerDrafter.load(path, rt.index_of(examples))
    assert drafter.ranker.features == older
    new = corpus(20, seed=77)
    drafts = drafter.draft([DraftRequest(e.institution, e.accession, e.findings, e.language) for e in new])
    assert sum(d.text == e.impression for d, e in zip(drafts, new)) >= 12

    meta = json.loads((path / RANKER_META).read_text())
    (path / RANKER_META).write_text(json.dumps(meta | {"features": [*older, "from_the_future"]}))
    with pytest.raises(ModelError, match="from_the_future"):
        load_ranker(path)


def test_v3_features_read_each_candidate_against_its_pool() -> None:
    examples = corpus(120)
    index = rt.index_of(examples)
    e = examples[7]
    found = candidates(index, e.institution, e.findings, e.language, 10)  # itself not left out: it is the nearest
    col = {name: FEATURES.index(name) for name in FEATURES}
    own = next(c for c in found if c.case.key == e.accession)
    assert own.features[col["findings_rougeL"]] == pytest.approx(1.0)
    assert own.features[col["findings_rougeL_rel"]] == pytest.approx(1.0)
    assert own.features[col["char_cosine_rel"]] == pytest.approx(1.0) and own.features[col["char_cosine_rank"]] == 0
    others = [c for c in found if c is not own]
    assert others and all(c.features[col["findings_rougeL"]] < 1.0 for c in others)
    assert min(c.features[col["concepts_unnamed_rel"]] for c in found) == 0  # less the pool's fewest
    assert max(c.features[col["history_rel"]] for c in found) == 0  # less the pool's most
    assert sorted(c.features[col["agreement_rank"]] for c in found)[0] == 0
