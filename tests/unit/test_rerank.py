"""The model as a reranker of retrieved cases (model/rerank.py) and its selection on validation
(evaluation/rerank.py), on the session's tiny model."""

from __future__ import annotations

from pathlib import Path

import pytest

from evaluation import rerank as rerank_eval
from model.cases import Case
from model.drafter import DraftRequest
from model.loader import LoadedModel, load_model
from model.rerank import RerankDrafter, Reranker, Scored, best, candidate_logprobs
from model.retrieval import CaseIndex
from training import dataset as ds

CASES = [Case("a1", "右肺上叶见磨玻璃影，边缘模糊。", "右肺上叶炎症"),
         Case("a2", "右肺上叶见磨玻璃影，边缘清楚。", "右肺上叶炎症"),  # the same impression again
         Case("a3", "左肺下叶见结节影，直径约5mm。", "左肺下叶小结节"),
         Case("a4", "右肺上叶见片状影。", "右肺上叶肺炎，建议复查")]


@pytest.fixture(scope="module")
def loaded(tiny_model: Path) -> LoadedModel:
    return load_model(tiny_model, "cpu")


@pytest.fixture(scope="module")
def chat_loaded(tiny_chat_model: Path) -> LoadedModel:
    return load_model(tiny_chat_model, "cpu")


def _index() -> CaseIndex:
    index = CaseIndex()
    for c in CASES:
        index.add("XIHE", c.key, c.findings, c.impression)
    index.add("NANHU", "b1", CASES[0].findings, "OTHER-SITE-IMPRESSION")
    return index


def _naive(model: object, prompt: list[int], candidate: list[int]) -> float:
    import torch

    with torch.inference_mode():
        logits = model(input_ids=torch.tensor([prompt + candidate])).logits[0]  # type: ignore[operator]
        logp = torch.log_softmax(logits.float(), dim=-1)
    return sum(float(logp[len(prompt) - 1 + j, t]) for j, t in enumerate(candidate))


def test_cached_prompt_scores_equal_full_sequence_scores(loaded: LoadedModel) -> None:
    tok = loaded.tokenizer
    prompt = [tok.bos_token_id] + tok.encode("所见：右肺上叶见磨玻璃影。\n诊断：", add_special_tokens=False)
    candidates = [tok.encode(t, add_special_tokens=False) for t in ("右肺上叶炎症", "左肺下叶小结节，建议复查", "炎")]
    candidates[2] = candidates[2][:1]  # a one-token candidate
    fast = candidate_logprobs(loaded.model, prompt, candidates, tok.pad_token_id)
    for value, candidate in zip(fast, candidates):
        assert value == pytest.approx(_naive(loaded.model, prompt, candidate), abs=1e-3)
    assert candidate_logprobs(loaded.model, prompt, [], tok.pad_token_id) == []
    with pytest.raises(ValueError):
        candidate_logprobs(loaded.model, prompt, [[]], tok.pad_token_id)


def test_candidates_are_the_institutions_cases_once_each_with_the_refits_end_token(loaded: LoadedModel) -> None:
    reranker = Reranker(loaded, _index(), style="template", pmi=True)
    request = DraftRequest("XIHE", "q1", "右肺上叶见磨玻璃影，边缘模糊。", "zh")
    scored = reranker.score(request, 4)
    impressions = [s.case.impression for s in scored]
    assert "OTHER-SITE-IMPRESSION" not in impressions  # another institution's case never competes
    assert len(impressions) == len(set(impressions)) == 3  # "右肺上叶炎症" twice: scored once, at its best rank
    assert [s.rank for s in scored] == sorted(s.rank for s in scored) and scored[0].rank == 0
    tok = loaded.tokenizer
    first = scored[0]
    ids = tok.encode(first.case.impression, add_special_tokens=False) + [tok.eos_token_id]
    assert first.tokens == len(ids)
    assert first.logprob == pytest.approx(_naive(loaded.model, reranker.prompt_ids(request.findings, "zh"), ids),
                                          abs=1e-3)
    assert first.prior == pytest.approx(_naive(loaded.model, reranker.prompt_ids("", "zh"), ids), abs=1e-3)
    # a report never retrieves itself
    assert all(s.case.key != "a1" for s in reranker.score(DraftRequest("XIHE", "a1", CASES[0].findings, "zh"), 4))


def test_chat_style_scores_the_end_of_turn(chat_loaded: LoadedModel) -> None:
    reranker = Reranker(chat_loaded, _index(), style="chat", pmi=False)
    prompt = chat_loaded.tokenizer.decode(reranker.prompt_ids("右肺上叶见片状影。", "zh"))
    assert prompt.endswith("assistant\n") and "右肺上叶见片状影。" in prompt
    scored = reranker.score(DraftRequest("XIHE", "q2", "右肺上叶见片状影。", "zh"), 3)
    assert scored and all(s.prior == 0.0 for s in scored)
    with pytest.raises(ValueError):
        Reranker(load_model_without_chat(chat_loaded), _index(), style="chat")


def load_model_without_chat(loaded: LoadedModel) -> LoadedModel:
    import copy

    tok = copy.copy(loaded.tokenizer)
    tok.chat_template = None
    return LoadedModel(loaded.model, tok, loaded.model_id, loaded.template_family, loaded.device, False)


def test_normalisations_and_ties() -> None:
    a = Scored(Case("a", "", "short"), 0, -6.0, 2, -5.0)  # sum -6, mean -3, pmi -1
    b = Scored(Case("b", "", "a longer one"), 1, -8.0, 8, -2.0)  # sum -8, mean -1, pmi -6
    c = Scored(Case("c", "", "tie"), 2, -6.0, 2, -5.0)
    assert best([a, b, c], "sum") is a  # a tie goes to BM25's order
    assert best([a, b, c], "mean") is b
    assert best([a, b, c], "pmi") is a
    assert best([a, b, c], "mean", k=1) is a  # only the first k by BM25 rank compete
    assert best([], "sum") is None


def test_drafter_drafts_a_signed_impression_and_says_so(loaded: LoadedModel) -> None:
    drafter = RerankDrafter(Reranker(loaded, _index(), style="template", pmi=False), k=3, normalise="mean")
    drafts = drafter.draft([DraftRequest("XIHE", "q1", "右肺上叶见磨玻璃影。", "zh"),
                            DraftRequest("NOWHERE", "q2", "右肺上叶见磨玻璃影。", "zh")])
    assert drafts[0].text in {c.impression for c in CASES} and drafts[0].guard == ""
    assert drafts[0].adapter_version == "base+rerank-k3-mean"
    assert drafts[1].text == "" and drafts[1].guard == "empty"  # no signed case to choose from
    with pytest.raises(ValueError):
        RerankDrafter(Reranker(loaded, _index(), style="template", pmi=False), k=3, normalise="pmi")


def _example(accession: str, findings: str, impression: str) -> ds.Example:
    return ds.Example("XIHE", accession, "chest", "zh", findings, impression)


def test_selection_on_validation_falls_back_to_retrieval_when_ranking_does_not_pay() -> None:
    index = _index()
    val = [_example("v1", "右肺上叶见磨玻璃影，边缘模糊。", "右肺上叶炎症"),
           _example("v2", "左肺下叶见结节影。", "左肺下叶小结节")]
    top = {e.accession: index.similar("XIHE", e.findings, 3, exclude=e.accession) for e in val}

    def scored(prefer_rank: int) -> dict[str, list[Scored]]:  # the model always prefers one BM25 rank
        return {acc: [Scored(c, r, 0.0 if r == prefer_rank else -10.0, 3) for r, c in enumerate(cases)]
                for acc, cases in top.items()}

    assert top["v1"][0].impression == "右肺上叶炎症"  # BM25's first is right for both reports...
    assert top["v2"][0].impression == "左肺下叶小结节"
    choice = rerank_eval.choose(val, scored(prefer_rank=2), index, ks=(1, 2, 3))
    assert choice.k == 1  # ...so a model that prefers the third candidate is not used
    assert choice.validation["k1-sum"]["all"] == pytest.approx(1.0)
    assert {"vote-k3", "shortest-k2", "k3-pmi"} <= set(choice.validation)
    assert choice.key() == {"rerank_k": 1, "rerank_normalise": "sum"}
    assert "| **k1-sum** |" in rerank_eval.validation_table(choice)


def test_validation_scores_are_saved_and_reused(loaded: LoadedModel, tmp_path: Path) -> None:
    reranker = Reranker(loaded, _index(), style="template", pmi=True)
    val = [_example("v1", "右肺上叶见磨玻璃影。", "右肺上叶炎症"), _example("v2", "左肺下叶见结节影。", "左肺下叶小结节")]
    path = tmp_path / "rerank" / "scores.json"
    first = rerank_eval.score_split(reranker, val, 3, path, every=1, progress=False)
    calls = []
    reranker.score = lambda request, k: calls.append(request) or []  # type: ignore[method-assign]
    again = rerank_eval.score_split(reranker, val, 3, path, progress=False)
    assert not calls  # nothing scored twice
    assert {acc: [(s.case.impression, s.rank, round(s.logprob, 4)) for s in items] for acc, items in again.items()} == \
        {acc: [(s.case.impression, s.rank, round(s.logprob, 4)) for s in items] for acc, items in first.items()}


def test_worked_examples_in_the_scoring_prompt(chat_loaded: LoadedModel) -> None:
    reranker = Reranker(chat_loaded, _index(), style="chat", pmi=False, shots=2)
    request = DraftRequest("XIHE", "q3", "右肺上叶见磨玻璃影，边缘模糊。", "zh")
    found = _index().similar("XIHE", request.findings, 2, exclude="q3")
    prompt = chat_loaded.tokenizer.decode(reranker.prompt_ids(request.findings, "zh", found))
    assert all(c.impression in prompt for c in found) and "OTHER-SITE-IMPRESSION" not in prompt
    scored = reranker.score(request, 1)  # two examples in the prompt, one candidate competing
    assert [s.rank for s in scored] == [0]
    assert RerankDrafter(reranker, k=1, normalise="sum").label == "base+rerank-k1-sum-shots2"
    with pytest.raises(ValueError):
        Reranker(chat_loaded, _index(), style="chat", pmi=True, shots=2)  # the prior would depend on the report
