"""Retrieval of similar signed cases, the guards, and adapters on the tiny model."""

from __future__ import annotations

from pathlib import Path

from model.adapters import BASE, SHARED, AdapterSpec, route
from model.drafter import DraftRequest, ModelDrafter
from model.guards import stop_at_labels
from model.loader import load_model
from model.prompts import template_for
from model.retrieval import CaseIndex, RetrievalDrafter


def _index() -> CaseIndex:
    index = CaseIndex()
    index.add("XIHE", "1", "左肺上叶见磨玻璃结节影，大小约8mm。", "左肺上叶磨玻璃结节")
    index.add("XIHE", "2", "胆囊内见结节状高密度影。", "胆囊结石")
    index.add("LAKE", "3", "There is a small left pleural effusion.", "Small left pleural effusion")
    index.add("LAKE", "4", "A 5 mm calcified stone in the gallbladder.", "Cholelithiasis")
    return index


def test_bm25_finds_the_similar_case_of_the_same_institution() -> None:
    index = _index()
    assert [c.key for c in index.similar("XIHE", "右肺上叶见磨玻璃结节影。", 1)] == ["1"]
    assert [c.key for c in index.similar("LAKE", "Stone in the gallbladder.", 1)] == ["4"]
    assert index.similar("NANHU", "胆囊结石", 3) == []  # never another institution's reports
    assert [c.key for c in index.similar("XIHE", "左肺上叶见磨玻璃结节影", 2, exclude="1")] == ["2"]
    [draft] = RetrievalDrafter(index).draft([DraftRequest("LAKE", "9", "Right pleural effusion, small.", "en")])
    assert draft.text == "Small left pleural effusion" and draft.model_id == "retrieval-bm25"


def test_stop_at_labels() -> None:
    labels = ["你是一名放射科医生。", "所见：", "诊断："]
    assert stop_at_labels("诊断：左肺结节。\n所见：双肺", labels) == ("左肺结节。", True)
    assert stop_at_labels("左肺结节。", labels) == ("左肺结节。", False)


def test_routing_prefers_the_institution_then_shared() -> None:
    a = AdapterSpec("XIHE", "v0001", Path("x"), "1")
    s = AdapterSpec(SHARED, "v0002", Path("s"), "2")
    assert route("XIHE", {"XIHE": a, SHARED: s}) is a
    assert route("NANHU", {"XIHE": a, SHARED: s}) is s
    assert route("NANHU", {"XIHE": a}) is None
    assert a.slot.isidentifier() and a.label == "XIHE/v0001"


def test_empty_output_falls_back_to_retrieval_and_is_flagged(tiny_model: Path) -> None:
    drafter = ModelDrafter(load_model(tiny_model), max_new_tokens=1, retrieval=_index())
    drafter._generate = lambda prompts, slots, sample: ["" for _ in prompts]  # a model that says nothing
    [draft] = drafter.draft([DraftRequest("XIHE", "9", "左肺上叶见磨玻璃结节影。", "zh")])
    assert (draft.text, draft.guard) == ("左肺上叶磨玻璃结节", "retrieval")


def test_long_findings_are_cut_but_the_prompt_keeps_its_label(tiny_model: Path) -> None:
    drafter = ModelDrafter(load_model(tiny_model), max_new_tokens=4, max_input_tokens=64)
    request = DraftRequest("LAKEVIEW", "1", "The lungs are clear. " * 80, "en", adapter=BASE)
    prompt, truncated, _system = drafter._prompt(template_for("en"), request, None)
    assert truncated and prompt.endswith("Impression: ") and prompt.startswith("You are a radiologist.")
    assert len(drafter.loaded.tokenizer.encode(prompt, add_special_tokens=False)) < 64
    [draft] = drafter.draft([request])
    assert draft.guard != "" and draft.adapter_version == ""  # altered text is always flagged


_SCORES_UNDER_A_HASH_SEED = """
import random
from model.retrieval import BM25
from model.cases import Case
rng = random.Random(7)
words = [f"w{i}" for i in range(300)]
index = BM25()
for n in range(200):
    index.add(Case(str(n), " ".join(rng.choices(words, k=rng.randint(5, 60))), "x"))
for q in range(40):
    for value, case in index.search(" ".join(rng.sample(words, 40)), 5):
        print(case.key, repr(value))
"""


def test_bm25_scores_do_not_depend_on_the_hash_seed() -> None:
    # a query's terms summed in set order would differ in the last bit from one process to the
    # next, and a tie between two candidates could then go either way from run to run
    import subprocess
    import sys

    root = Path(__file__).resolve().parents[2]
    runs = {subprocess.run([sys.executable, "-c", _SCORES_UNDER_A_HASH_SEED], cwd=root, check=True, text=True,
                           capture_output=True, env={"PYTHONHASHSEED": seed, "PATH": ""}).stdout
            for seed in ("1", "2", "3")}
    assert len(runs) == 1 and len(next(iter(runs)).splitlines()) == 200
