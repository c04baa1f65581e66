"""Consensus among retrieved signed cases (model/consensus.py) on a real BM25 index and the real
ROUGE scorer."""

from __future__ import annotations

import pytest

from model.cases import Case
from model.consensus import ConsensusDrafter, pick, vote
from model.drafter import DraftRequest
from model.retrieval import CaseIndex
from model.scoring.rouge import score


def test_the_candidate_closest_to_the_others_wins_over_the_nearest() -> None:
    cases = [Case("n1", "", "Large right pleural effusion with rib fracture."),  # nearest, an outlier
             Case("n2", "", "No acute cardiopulmonary abnormality."),
             Case("n3", "", "No acute cardiopulmonary disease."),
             Case("n4", "", "No acute cardiopulmonary abnormality identified.")]
    chosen = pick(cases, "en")
    assert chosen is not None and chosen.case.key == "n2"
    by_key = {v.case.key: v for v in vote(cases, "en")}
    expected = sum(score(cases[1].impression, c.impression, "en").rougeL for c in (cases[0], cases[2], cases[3])) / 3
    assert by_key["n2"].agreement == pytest.approx(expected)
    assert by_key["n1"].agreement < by_key["n2"].agreement


def test_identical_impressions_count_once_but_vote_with_their_number() -> None:
    cases = [Case("a", "", "右肺上叶炎症"), Case("b", "", "左肺下叶小结节"), Case("c", "", "左肺下叶小结节")]
    voted = vote(cases, "zh")
    assert [v.case.key for v in voted] == ["a", "b"]
    assert [v.count for v in voted] == [1, 2]
    assert pick(cases, "zh").case.key == "b"  # type: ignore[union-attr]


def test_one_candidate_and_none() -> None:
    assert pick([Case("a", "", "Normal chest.")]).agreement == 1.0  # type: ignore[union-attr]
    assert pick([]) is None
    assert pick([Case("a", "", "  ")]) is None


def test_ties_go_to_the_nearer_case() -> None:
    cases = [Case("a", "", "Normal chest."), Case("b", "", "Clear lungs.")]
    assert pick(cases, "en").case.key == "a"  # type: ignore[union-attr]


def test_drafter_uses_k_per_institution_and_never_retrieves_the_report_itself() -> None:
    index = CaseIndex()
    for i, (findings, impression) in enumerate([("右肺上叶见磨玻璃影。", "右肺上叶炎症"),
                                                ("右肺上叶见磨玻璃影，边缘模糊。", "右肺上叶炎症，建议复查"),
                                                ("右肺上叶见磨玻璃影，边缘清楚。", "右肺上叶炎症")]):
        index.add("XIHE", f"x{i}", findings, impression)
    drafter = ConsensusDrafter(index, default_k=3, k_by_institution={"XIHE": 1})
    [d] = drafter.draft([DraftRequest("XIHE", "x0", "右肺上叶见磨玻璃影。", "zh")])
    assert d.guard == "" and d.adapter_version == "consensus-k1"
    assert d.text in {"右肺上叶炎症", "右肺上叶炎症，建议复查"}
    [empty] = drafter.draft([DraftRequest("OTHER", "o1", "右肺上叶见磨玻璃影。", "zh")])
    assert (empty.text, empty.guard) == ("", "empty")
    with pytest.raises(ValueError):
        ConsensusDrafter(index, default_k=0)
