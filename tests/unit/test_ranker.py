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
    # the rule and the per-institution figures travel with the artifact (choose() is tested below)
    assert metrics["missed_rule"] == "each institution"
    cell = f"k{meta['k']}-l7-t40-p{meta['params']['missed_penalty']}"
    chosen, top1 = (metrics["validation_by_institution"][name] for name in (cell, f"k{meta['k']}-top1"))
    assert chosen.keys() == top1.keys() == {"SITE"}
    assert chosen["SITE"][1] <= top1["SITE"][1] + 1e-9

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


def test_a_ranker_reads_its_own_columns_by_name_and_refuses_a_list_that_does_not_fit(tmp_path: Path) -> None:
    """Upgrading adds features; a site's promoted ranker, trained on another list, keeps serving on
    the columns it names, in its own order (not a prefix of today's list)."""
    import lightgbm as lgb
    import numpy as np

    from model.ranker import Ranker, save_ranker

    examples = corpus(300)
    named = (*FEATURES[21:], *FEATURES[:3], "concepts_unnamed")  # v3's new ones first, then a few of v2's
    columns = [FEATURES.index(f) for f in named]
    qs = rt.queries(examples, rt.index_of(examples), 5, True)
    x, y, group = rt._matrix([q for q in qs if len(q.candidates) > 1])
    booster = lgb.train(rt.BASE_PARAMS | {"num_leaves": 7}, lgb.Dataset(x[:, columns], label=y, group=group,
                                                                       feature_name=list(named)), num_boost_round=30)
    path = save_ranker(Ranker(booster, 5, named), tmp_path / "rankers", window={}, metrics={}, params={})
    index = rt.index_of(examples)
    drafter = RankerDrafter.load(path, index)
    assert drafter.ranker.features == named
    new = corpus(20, seed=77)
    for e in new:  # the served choice is the booster's own on exactly those columns
        found = candidates(index, e.institution, e.findings, e.language, 5)
        direct = booster.predict(np.asarray([c.features for c in found])[:, columns])
        assert drafter.ranker.best(found) is found[int(np.argmax(direct))]
    drafts = drafter.draft([DraftRequest(e.institution, e.accession, e.findings, e.language) for e in new])
    assert sum(d.text == e.impression for d, e in zip(drafts, new)) >= 12

    meta = json.loads((path / RANKER_META).read_text())
    (path / RANKER_META).write_text(json.dumps(meta | {"features": [*named, "from_the_future"]}))
    with pytest.raises(ModelError, match="from_the_future"):
        load_ranker(path)
    (path / RANKER_META).write_text(json.dumps(meta | {"features": list(named[:-1])}))
    with pytest.raises(ModelError, match="does not match its booster"):
        load_ranker(path)


def test_v3_features_read_each_candidate_against_its_pool() -> None:
    examples = corpus(120)
    index = rt.index_of(examples)
    e = examples[7]
    found = candidates(index, e.institution, e.findings, e.language, 10)  # itself not left out: it is the nearest
    assert len(found) >= 3
    col = {name: FEATURES.index(name) for name in FEATURES}

    def values(name: str) -> list[float]:
        return [c.features[col[name]] for c in found]

    def rank(xs: list[float], i: int) -> int:
        return sum(x > xs[i] for x in xs)

    own = next(c for c in found if c.case.key == e.accession)
    assert own.features[col["findings_rougeL"]] == pytest.approx(1.0)
    assert all(c.features[col["findings_rougeL"]] < 1.0 for c in found if c is not own)
    for i, c in enumerate(found):  # each pool feature recomputed from its base column
        f = c.features
        assert f[col["findings_rougeL_rel"]] == pytest.approx(f[col["findings_rougeL"]] / max(values("findings_rougeL")))
        assert f[col["char_cosine_rel"]] == pytest.approx(f[col["char_cosine"]] / max(values("char_cosine")))
        assert f[col["char_cosine_rank"]] == rank(values("char_cosine"), i)
        assert f[col["words_in_findings_rel"]] == pytest.approx(
            f[col["words_in_findings"]] / (max(values("words_in_findings")) or 1.0))
        assert f[col["concepts_unnamed_rel"]] == f[col["concepts_unnamed"]] - min(values("concepts_unnamed"))
        assert f[col["agreement_rank"]] == rank(values("agreement"), i)
        assert f[col["history_rel"]] == pytest.approx(f[col["history_log"]] - max(values("history_log")))
    assert own.features[col["char_cosine_rank"]] == 0 and own.features[col["findings_rougeL_rel"]] == 1.0


def test_the_chosen_cell_misses_no_more_findings_than_the_nearest_case_at_any_institution() -> None:
    # (R-L, missed rate) pooled and per institution; the pooled rate hides a site that misses more
    cells = [(5, 7, 50, 0.0), (5, 7, 50, 0.1), (5, 7, 50, 0.25)]
    top1 = {"A": (0.50, 0.20), "B": (0.10, 0.20)}
    # the best R-L, but B misses more than with its nearest case
    rows = {"k5-l7-t50-p0.0": ({"A": (0.60, 0.10), "B": (0.14, 0.26)}, (0.40, 0.16)),
            "k5-l7-t50-p0.1": ({"A": (0.58, 0.20), "B": (0.12, 0.20)}, (0.38, 0.20)),
            "k5-l7-t50-p0.25": ({"A": (0.55, 0.18), "B": (0.11, 0.20)}, (0.36, 0.19))}
    grid = {"k5-top1": (0.33, 0.20)} | {name: pooled for name, (_, pooled) in rows.items()}
    per_site = {"k5-top1": top1} | {name: sites for name, (sites, _) in rows.items()}
    sizes = {"A": 200, "B": 50}
    assert rt.choose(cells, grid, per_site, sizes) == ((5, 7, 50, 0.1), "each institution")
    # a site with too few validation reports to read its own rate counts in the pooled one only
    assert rt.choose(cells, grid, per_site, {"A": 200, "B": rt.MIN_SITE_REPORTS - 1}) == ((5, 7, 50, 0.0),
                                                                                         "each institution")
    # no cell keeps every site: the pooled rate decides
    per_site["k5-l7-t50-p0.1"] = per_site["k5-l7-t50-p0.25"] = {"A": (0.58, 0.21), "B": (0.12, 0.20)}
    assert rt.choose(cells, grid, per_site, sizes) == ((5, 7, 50, 0.0), "pooled")
    # no site large enough to be read on its own: the pooled rule, named as such
    assert rt.choose(cells, grid, per_site, {"A": 20, "B": 10}) == ((5, 7, 50, 0.0), "pooled")
    # not even the pooled rate: the best R-L, said so
    grid = {name: (rl, 0.5) if name != "k5-top1" else (rl, 0.2) for name, (rl, _) in grid.items()}
    assert rt.choose(cells, grid, per_site, sizes) == ((5, 7, 50, 0.0), "none met")


def test_each_cell_is_held_to_the_nearest_case_of_its_own_k_and_ties_go_to_the_simpler_cell() -> None:
    sizes = {"A": 100}
    cells = [(5, 7, 50, 0.0), (10, 7, 50, 0.0), (10, 7, 50, 0.1), (10, 15, 150, 0.1)]
    top1 = {"k5-top1": (0.30, 0.10), "k10-top1": (0.30, 0.30)}  # the same case, read with other k's cells
    cell_rows = {"k5-l7-t50-p0.0": (0.40, 0.20),  # worse than k5's nearest case
                 "k10-l7-t50-p0.0": (0.38, 0.25), "k10-l7-t50-p0.1": (0.38, 0.25), "k10-l15-t150-p0.1": (0.38, 0.25)}
    grid = top1 | cell_rows
    per_site = {name: {"A": value} for name, value in grid.items()}
    # k=5's cell misses more than k=5's top-1 (0.10), though not more than k=10's (0.30)
    assert rt.choose(cells, grid, per_site, sizes) == ((10, 7, 50, 0.0), "each institution")
