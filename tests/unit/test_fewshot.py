"""Day-0 few-shot drafting on a real tiny model given a chat template, and the refit gate that
compares a new adapter with it."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from model import fewshot
from model.drafter import DraftRequest, ModelDrafter
from model.loader import load_model
from model.prompts import template_for
from model.retrieval import Case, CaseIndex
from radflow.demodata import generate_reports
from storage.repository import Repository
from storage.tables import SignedReportRow
from training.recipe import Recipe
from training.refit import Refitter

SAME = [Case("a1", "右肺上叶见磨玻璃影，边缘模糊。", "右肺上叶炎症"),
        Case("a2", "左肺下叶见结节影，直径约5mm。", "左肺下叶小结节")]
OTHER = Case("b1", "右肺上叶见磨玻璃影，边缘模糊。", "OTHER-SITE-IMPRESSION")


@pytest.fixture(scope="module")
def chat_model(tiny_chat_model: Path) -> Path:
    return tiny_chat_model


def _index() -> CaseIndex:
    index = CaseIndex()
    for c in SAME:
        index.add("XIHE", c.key, c.findings, c.impression)
    index.add("NANHU", OTHER.key, OTHER.findings, OTHER.impression)
    return index


def test_fewshot_prompt_holds_same_institution_cases_in_the_chat_template(chat_model: Path) -> None:
    drafter = ModelDrafter(load_model(chat_model), max_new_tokens=8, retrieval=_index(), fewshot_k=3)
    assert drafter.fewshot_active()
    request = DraftRequest("XIHE", "q1", "右肺上叶见磨玻璃影。", "zh")
    prompt, truncated, system = drafter._prompt(template_for("zh"), request, None)
    assert system == "base+fewshot-k3" and not truncated
    assert prompt.startswith("<|im_start|>system\n你是一名放射科医生。") and prompt.endswith("<|im_start|>assistant\n")
    assert "右肺上叶炎症<|im_end|>" in prompt and "左肺下叶小结节<|im_end|>" in prompt
    assert "OTHER-SITE-IMPRESSION" not in prompt  # another institution's case never shows
    # the most similar case sits nearest the query; the query comes last with its labels
    assert prompt.index("左肺下叶小结节") < prompt.index("右肺上叶炎症")
    assert prompt.rstrip().endswith("所见：右肺上叶见磨玻璃影。\n诊断：<|im_end|>\n<|im_start|>assistant")


def test_fewshot_prompt_is_bounded_and_keeps_the_query_and_its_label(chat_model: Path) -> None:
    tok = load_model(chat_model).tokenizer
    long_cases = [Case(f"c{i}", "双肺纹理增多，" * 40, f"印象{i}") for i in range(3)]
    query = "右肺中叶见条索影。"
    n = lambda text: len(tok.encode(text, add_special_tokens=False))  # noqa: E731
    full = fewshot.render(tok, template_for("zh"), query, long_cases, 10_000)
    for budget in (n(full.text) // 2, 120):
        shot = fewshot.render(tok, template_for("zh"), query, long_cases, budget)
        assert n(shot.text) <= budget < n(full.text)
        assert not shot.truncated and f"所见：{query}\n诊断：" in shot.text  # examples gave way first
        assert shot.examples >= 1 or budget == 120
    # a budget below even the bare query cuts the query's end, never its labels or the instruction
    bare = n(fewshot.render(tok, template_for("zh"), "右", [], 10_000).text)  # instruction + labels
    tiny = fewshot.render(tok, template_for("zh"), query * 20, long_cases, bare + 12)
    assert tiny.truncated and tiny.examples == 0 and n(tiny.text) <= bare + 12
    assert f"所见：{query[:3]}" in tiny.text  # the query keeps its start
    assert "根据影像所见写出诊断意见。" in tiny.text and tiny.text.rstrip().endswith("诊断：<|im_end|>\n<|im_start|>assistant")


def test_drafts_record_the_system_that_drafted_them(chat_model: Path, tiny_model: Path) -> None:
    request = [DraftRequest("XIHE", "q1", "右肺上叶见磨玻璃影。", "zh")]
    [draft] = ModelDrafter(load_model(chat_model), max_new_tokens=8, retrieval=_index(), fewshot_k=2).draft(request)
    assert draft.adapter_version == "base+fewshot-k2" and (draft.text or draft.guard == "empty")
    # a base without a chat template is not an instruct model: plain prompt, as before
    plain = ModelDrafter(load_model(tiny_model), max_new_tokens=8, retrieval=_index(), fewshot_k=2)
    assert not plain.fewshot_active() and plain.draft(request)[0].adapter_version == ""


def test_gate_compares_a_new_adapter_with_the_day0_fewshot_drafter(chat_model: Path, tmp_path: Path) -> None:
    repo = Repository(f"sqlite:///{tmp_path / 'radflow.sqlite'}")
    for r in generate_reports(8, seed=5):
        repo.upsert(SignedReportRow(institution=r.institution, accession=r.accession, status="F",
                                    body_system=r.body_system, language=r.language, findings=r.findings,
                                    impression=r.impression))
    recipe = Recipe.load("embedded").replace(templates=("1",), epochs=1, effective_batch=8, micro_batch=8,
                                             max_new_tokens=12, permutations=200)
    refitter = Refitter(repo, chat_model, tmp_path / "adapters", recipe, progress=False, fewshot_k=2)
    outcome = refitter.refit("shared")
    assert outcome.decision in ("promoted", "rejected")
    evals = repo.evals(outcome.run_id)
    # no adapter served yet: the champion is the instruct base drafting few-shot
    assert {e.adapter for e in evals if e.role == "champion"} == {"base+fewshot-k2"}
    assert {e.adapter for e in evals if e.role == "challenger"} == {f"shared/{outcome.version}"}
    metrics = json.loads(repo.runs("shared")[0].metrics)
    assert metrics["champion"]["n"] == metrics["challenger"]["n"] > 0
    # the cases come from the train split only: no held-out report can be retrieved for itself
    data = refitter.dataset(repo.runs("shared")[0].window_end)
    index = refitter._eval_drafter().retrieval
    assert index is not None and len(index) == len(data.train) and data.test
