"""Drafting systems (model/systems.py) and the gate that chooses one per segment
(training/systems_gate.py): real SQLite, real BM25 and ROUGE, the tiny model for model systems."""

from __future__ import annotations

from pathlib import Path

import pytest

from kernel.codes import AdapterStatus
from kernel.errors import ModelError, StorageError
from model.drafter import Draft, DraftRequest, EchoDrafter
from model.loader import load_model
from model.retrieval import CaseIndex
from model.systems import MODEL, REGISTRY, Loaded, SegmentRouter, build
from storage.repository import Repository
from storage.tables import SignedReportRow
from training import dataset as ds
from training.gate import Decision
from training.recipe import Recipe
from training.systems_gate import SystemsGate, holdout, holm

# the nearest case to "right lower lobe opacity" is an outlier; the three after it agree
CASES = [("a1", "right lower lobe opacity and effusion", "Large right pleural effusion with rib fracture."),
         ("a2", "right lower lobe opacity", "No acute cardiopulmonary abnormality."),
         ("a3", "lower lobe opacity", "No acute cardiopulmonary disease."),
         ("a4", "lobe opacity noted", "No acute cardiopulmonary abnormality identified.")]


def _index() -> CaseIndex:
    index = CaseIndex()
    for accession, findings, impression in CASES:
        index.add("A", accession, findings, impression)
    return index


def test_the_registry_builds_case_systems_without_a_model_and_names_what_is_unknown() -> None:
    drafters = build(["retrieval", "consensus", "retrieval"], Loaded(_index()))
    assert list(drafters) == ["retrieval", "consensus"]
    with pytest.raises(ModelError, match="RADFLOW_SYSTEMS"):
        build(["retrieval", "nearest-guess"], Loaded(_index()))
    with pytest.raises(ModelError, match="RADFLOW_MODEL_PATH"):
        build(["rerank"], Loaded(_index()))  # a model system, and no model configured
    assert {"retrieval", "consensus", "rerank", MODEL, "fewshot", "adapter-cases"} <= set(REGISTRY)


def test_the_router_serves_each_segment_its_champion_then_the_cold_start_rule() -> None:
    index = _index()
    drafters = build(["retrieval", "consensus"], Loaded(index)) | {MODEL: EchoDrafter()}
    router = SegmentRouter(drafters, index, cold="retrieval", min_cases=3,
                           champions={("A", "chest"): "consensus", ("A", "head"): "not-built-here"})
    findings = "right lower lobe opacity and effusion"
    drafts = router.draft([DraftRequest("A", "new1", findings, "en", body_system="chest"),
                           DraftRequest("A", "new2", findings, "en", body_system="abdomen"),
                           DraftRequest("A", "new3", findings, "en", body_system="head"),
                           DraftRequest("B", "new4", "Small nodule. Stable.", "en", body_system="chest")])
    assert [d.system for d in drafts] == ["consensus", "retrieval", "retrieval", MODEL]
    assert drafts[0].text == "No acute cardiopulmonary abnormality."  # the consensus, not the nearest
    assert drafts[1].text == "Large right pleural effusion with rib fracture."  # the nearest case
    assert drafts[3].text == "Stable."  # B has no signed cases: the base (here the echo) drafts
    changes = router.set_champions({("A", "abdomen"): "consensus"})
    assert changes == ["A/abdomen -> consensus"]
    assert router.system_for("A", "chest") == "retrieval"  # its champion is gone: cold start again
    assert router.set_adapters({}) == []  # no model drafter among these: nothing to swap


def test_model_systems_share_one_model_and_record_their_names(tiny_chat_model: Path) -> None:
    index = _index()
    loads = []

    def load():  # noqa: ANN202
        loads.append(1)
        return load_model(tiny_chat_model)

    loaded = Loaded(index, load, max_new_tokens=8, rerank_k=2, rerank_shots=1)
    drafters = build([MODEL, "fewshot", "rerank", "adapter-cases"], loaded)
    assert len(loads) == 1  # one model behind every model system
    router = SegmentRouter(drafters, index, cold="retrieval", min_cases=1,
                           champions={("A", "chest"): "rerank", ("A", "head"): "fewshot",
                                      ("A", "abdomen"): "adapter-cases", ("A", "other"): MODEL})
    requests = [DraftRequest("A", f"r{i}", "right lower lobe opacity", "en", body_system=b)
                for i, b in enumerate(("chest", "head", "abdomen", "other"))]
    drafts = router.draft(requests)
    assert [d.system for d in drafts] == ["rerank", "fewshot", "adapter-cases", MODEL]
    signed = {impression for _, _, impression in CASES}
    assert drafts[0].text in signed  # the reranker's draft is always a signed impression
    assert drafts[1].adapter_version.startswith("base+fewshot")
    assert drafts[2].adapter_version == ""  # no adapter promoted yet: an instruct base drafts zero-shot
    assert loaded.model_drafter().fewshot_k == loaded.fewshot_k  # each call's settings were put back


class _Oracle:
    """Drafts the signed impression itself (a system that is always right), for the gate's logic."""

    def __init__(self, rows: list[SignedReportRow]) -> None:
        self.truth = {(r.institution, r.accession): r.impression for r in rows}

    def draft(self, requests: list[DraftRequest]) -> list[Draft]:
        return [Draft(self.truth[(r.institution, r.accession)], "", 0.0, "oracle", "none") for r in requests]


def _signed(institution: str, n: int, body: str = "chest") -> list[SignedReportRow]:
    words = ["effusion", "nodule", "pneumothorax", "atelectasis", "edema", "fracture", "mass", "consolidation"]
    return [SignedReportRow(institution=institution, accession=f"{institution}{i}", status="F", body_system=body,
                            language="en", findings=f"There is {words[i % 8]} in zone {i}.",
                            impression=f"{words[i % 8].title()} of zone {i} with {words[(i * 3) % 8]}.")
            for i in range(n)]


def test_the_gate_promotes_a_significant_winner_keeps_evidence_and_rolls_back(tmp_path: Path) -> None:
    repository = Repository(f"sqlite:///{tmp_path / 'db.sqlite'}")
    rows = _signed("A", 40) + _signed("SMALL", 3)
    repository.add_new_signed(rows)
    index = CaseIndex()
    for r in rows:
        index.add(r.institution, r.accession, r.findings, r.impression)
    drafters = build(["retrieval", "consensus"], Loaded(index)) | {"oracle": _Oracle(rows)}
    recipe = Recipe.load("embedded").replace(permutations=500)
    gate = SystemsGate(repository, drafters, recipe, cold="retrieval", min_cases=10, holdout=30)
    choices = {(c.institution, c.body_system): c for c in gate.run()}
    a = choices[("A", "chest")]
    assert (a.before, a.after) == ("", "oracle") and "oracle replaces retrieval" in a.reason
    assert {e.challenger for e in a.evidence} == {"consensus", "oracle"}
    assert all(e.n == 30 for e in a.evidence)
    oracle = next(e for e in a.evidence if e.challenger == "oracle")
    assert oracle.promoted and oracle.challenger_rougeL == pytest.approx(1.0) and oracle.p_value < 0.05
    assert choices[("SMALL", "chest")].after == MODEL  # too few cases: the base serves, no champion
    assert repository.system_champions() == {("A", "chest"): "oracle"}
    history = [(r.system, r.status) for r in repository.system_history("A")]
    assert history == [("retrieval", AdapterStatus.RETIRED), ("oracle", AdapterStatus.CHAMPION)]
    assert {e.challenger for e in repository.system_evals()} == {"consensus", "oracle"}

    again = {(c.institution, c.body_system): c for c in gate.run()}[("A", "chest")]
    assert again.after == "oracle" and again.reason == "champion kept: no challenger wins"
    assert {e.challenger for e in repository.system_evals()} == {"retrieval", "consensus"}  # the latest run

    assert repository.rollback_system("A", "chest").system == "retrieval"
    assert repository.system_champions() == {("A", "chest"): "retrieval"}
    with pytest.raises(StorageError, match="no earlier system"):
        repository.rollback_system("SMALL", "chest")


def test_holdout_is_stable_and_bounded() -> None:
    examples = [ds.Example("A", f"x{i}", "chest", "en", "f", "i") for i in range(50)]
    first = holdout(examples, 10)
    assert len(first) == 10 and first == holdout(list(reversed(examples)), 10)
    assert holdout(examples[:4], 10) == holdout(examples[:4], 4)


def _decision(p: float, delta: float = 0.02, promote: bool = True) -> Decision:
    return Decision(promote, f"ROUGE-L {delta:+.4f} (p={p:.3f})", delta, p, {}, {})


def test_holm_corrects_alpha_for_the_number_of_challengers() -> None:
    # two challengers: the smaller p needs < 0.025, the larger < 0.05, and a failure stops the rest
    kept = holm({"ranker": _decision(0.003), "consensus": _decision(0.04)}, 0.05)
    assert kept["ranker"].promote and kept["consensus"].promote
    lost = holm({"ranker": _decision(0.032), "consensus": _decision(0.146, promote=False)}, 0.05)
    assert not lost["ranker"].promote and "Holm needs < 0.025" in lost["ranker"].reason
    assert lost["consensus"].reason == "ROUGE-L +0.0200 (p=0.146)"  # not promoted anyway: its reason stands
    stopped = holm({"a": _decision(0.03), "b": _decision(0.04), "c": _decision(0.001)}, 0.05)
    assert stopped["c"].promote and not stopped["a"].promote and not stopped["b"].promote  # 0.03 >= 0.05/2
    assert holm({"only": _decision(0.049)}, 0.05)["only"].promote  # one challenger: the adapters' alpha
