"""The model as a reranker of retrieved cases: a draft that is always a signed impression.

Retrieval copies the impression of the most similar signed case of the same institution (BM25 over
findings). Here the language model chooses among the ``k`` most similar cases instead: each
candidate impression is scored by its log-probability under the model, given the new findings in
the drafting prompt (forward passes only, no generation), and the best one is the draft. This is
RadAlign's grounding taken one step further: the text a radiologist sees was signed by a
radiologist, and the model only decides which one fits these findings.

Scores (``Normalise``):

- ``sum``: the candidate's total log-probability (favours short candidates);
- ``mean``: per token (favours long, predictable candidates);
- ``pmi``: total log-probability given these findings minus given empty findings, so a candidate
  that is likely whatever the findings say (the corpus's commonest impression) gains nothing.

With ``shots`` > 0 (chat style), the prompt also holds the ``shots`` most similar cases as worked
examples (model/fewshot.py), so the model sees which findings led to each candidate before it
scores them against the new findings. The prompt is computed once per report and its key/value
cache shared by all its candidates. Identical candidates (after whitespace and case) are scored
once, at their best BM25 rank.
"""

from __future__ import annotations

import re
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

from kernel.codes import DraftGuard
from model import fewshot
from model.drafter import Draft, DraftRequest
from model.prompts import template_for

if TYPE_CHECKING:
    from model.cases import Case, CaseSource
    from model.loader import LoadedModel

Normalise = Literal["sum", "mean", "pmi"]
NORMALISATIONS: tuple[Normalise, ...] = ("sum", "mean", "pmi")
PromptStyle = Literal["chat", "template"]

#: Candidate impressions longer than this many tokens are scored on their first tokens only.
MAX_CANDIDATE_TOKENS = 128


@dataclass(frozen=True)
class Scored:
    """One candidate impression with its log-probabilities under the model."""

    case: Case
    rank: int  # 0 = BM25's most similar case
    logprob: float  # sum over the candidate's tokens and the end-of-impression token, given the findings
    tokens: int  # how many tokens were scored
    prior: float = 0.0  # the same sum given empty findings (0.0 unless ``pmi`` was asked for)

    def score(self, how: Normalise) -> float:
        if how == "sum":
            return self.logprob
        if how == "mean":
            return self.logprob / max(1, self.tokens)
        return self.logprob - self.prior


def best(scored: Sequence[Scored], how: Normalise, k: int | None = None) -> Scored | None:
    """The best of the first ``k`` candidates (by BM25 rank) under ``how``; ties go to BM25's order."""
    pool = [s for s in scored if k is None or s.rank < k]
    if not pool:
        return None
    return max(pool, key=lambda s: (s.score(how), -s.rank))


def same_text(text: str) -> str:
    """The key under which two impressions count as the same (whitespace and case aside)."""
    return re.sub(r"\s+", " ", text).strip().lower()


def candidate_logprobs(model: Any, prompt_ids: Sequence[int], candidates: Sequence[Sequence[int]],
                       pad_id: int) -> list[float]:
    """Sum of log p(candidate tokens | prompt) for each candidate: one forward pass over the
    prompt, whose key/value cache is then shared by one batched pass over all candidates."""
    import torch

    if not candidates:
        return []
    if any(not c for c in candidates):
        raise ValueError("a candidate has no tokens")
    device = next(model.parameters()).device
    with torch.inference_mode():
        out = model(input_ids=torch.tensor([list(prompt_ids)], device=device), use_cache=True)
        first = torch.log_softmax(out.logits[0, -1].float(), dim=-1)  # predicts each candidate's first token
        cache = out.past_key_values
        k, width = len(candidates), max(len(c) for c in candidates)
        totals = [float(first[c[0]]) for c in candidates]
        if width == 1:
            return totals
        cache.batch_repeat_interleave(k)
        ids = torch.full((k, width - 1), pad_id, dtype=torch.long, device=device)
        for i, c in enumerate(candidates):
            ids[i, : len(c) - 1] = torch.tensor(list(c[:-1]), device=device)
        # right padding: a padded position comes after every real one, so no real token sees it
        mask = torch.ones((k, len(prompt_ids) + width - 1), dtype=torch.long, device=device)
        logits = model(input_ids=ids, attention_mask=mask, past_key_values=cache, use_cache=True).logits
        logp = torch.log_softmax(logits.float(), dim=-1)  # (k, width - 1, vocab): position j predicts token j + 1
        for i, c in enumerate(candidates):
            if len(c) > 1:
                targets = torch.tensor(list(c[1:]), device=device)
                totals[i] += float(logp[i, torch.arange(len(c) - 1, device=device), targets].sum())
    return totals


class Reranker:
    """Scores the ``k`` most similar signed cases of a report's institution under a causal LM.

    ``style``: ``chat`` renders the findings in the tokenizer's chat template with the drafting
    instruction (an instruct base, no adapter); ``template`` uses the plain prompt an adapter was
    trained on (model/prompts.py, ``family``), with the end token the refit appends. ``shots``:
    worked examples in the chat prompt (the PMI prior then depends on the report and is not
    offered)."""

    def __init__(self, loaded: LoadedModel, cases: CaseSource, *, model: Any = None, style: PromptStyle = "chat",
                 family: str | None = None, max_input_tokens: int = 448, pmi: bool = True, shots: int = 0) -> None:
        if style == "chat" and not fewshot.has_chat_template(loaded.tokenizer):
            raise ValueError("the chat style needs a tokenizer with a chat template")
        if shots and (style != "chat" or pmi):
            raise ValueError("worked examples need the chat style and pmi=False")
        self.shots = shots
        self.loaded = loaded
        self.cases = cases
        self.model = model if model is not None else loaded.model
        self.style = style
        self.family = family
        self.max_input_tokens = max_input_tokens
        self.pmi = pmi
        self._priors: dict[tuple[str, str], float] = {}  # (language, candidate) -> log p given empty findings
        self._end = self._end_ids()

    def _end_ids(self) -> list[int]:
        tok = self.loaded.tokenizer
        if self.style == "template":
            return [tok.eos_token_id] if tok.eos_token_id is not None else []
        # what the chat template writes after an assistant turn's content (its end-of-turn token)
        probe = [{"role": "user", "content": "x"}, {"role": "assistant", "content": "\x00"}]
        text = tok.apply_chat_template(probe, tokenize=False)
        after = text.split("\x00", 1)[1] if "\x00" in text else ""
        ids = tok.encode(after, add_special_tokens=False) if after else []
        return ids[:1] or ([tok.eos_token_id] if tok.eos_token_id is not None else [])

    def prompt_ids(self, findings: str, language: str, examples: Sequence[Case] = ()) -> list[int]:
        tok = self.loaded.tokenizer
        template = template_for(language, self.family)
        if self.style == "chat":
            text = fewshot.render(tok, template, findings, list(examples), self.max_input_tokens).text
            return list(tok.encode(text, add_special_tokens=False))
        ids = [tok.bos_token_id] + tok.encode(template.render(findings), add_special_tokens=False)
        return ids[-self.max_input_tokens:]  # a long prompt loses its start, as the refit does

    def _candidate_ids(self, impression: str) -> list[int]:
        ids = list(self.loaded.tokenizer.encode(impression, add_special_tokens=False))[:MAX_CANDIDATE_TOKENS]
        return ids + self._end

    def score(self, request: DraftRequest, k: int) -> list[Scored]:
        """The ``k`` most similar cases (identical impressions once), each with its scores."""
        found = self.cases.similar(request.institution, request.findings, max(k, self.shots),
                                   exclude=request.accession)
        examples, found = found[: self.shots], found[:k]
        unique: list[tuple[int, Case]] = []
        seen: set[str] = set()
        for rank, case in enumerate(found):
            key = same_text(case.impression)
            if key and key not in seen:
                seen.add(key)
                unique.append((rank, case))
        if not unique:
            return []
        ids = [self._candidate_ids(c.impression) for _, c in unique]
        pad = self.loaded.tokenizer.pad_token_id or 0
        prompt = self.prompt_ids(request.findings, request.language, examples)
        totals = candidate_logprobs(self.model, prompt, ids, pad)
        priors = [0.0] * len(unique)
        if self.pmi:
            missing = [i for i, (_, c) in enumerate(unique) if (request.language, c.impression) not in self._priors]
            if missing:
                empty = self.prompt_ids("", request.language)
                for i, value in zip(missing, candidate_logprobs(self.model, empty, [ids[i] for i in missing], pad)):
                    self._priors[(request.language, unique[i][1].impression)] = value
            priors = [self._priors[(request.language, c.impression)] for _, c in unique]
        return [Scored(case, rank, total, len(tid), prior)
                for (rank, case), total, tid, prior in zip(unique, totals, ids, priors)]


class RerankDrafter:
    """A drafter (model.drafter.Drafter) whose draft is the signed impression, among the ``k``
    most similar cases, that the model scores best under ``normalise``."""

    def __init__(self, reranker: Reranker, k: int = 5, normalise: Normalise = "mean", label: str = "") -> None:
        if k < 1:
            raise ValueError("k must be at least 1")
        if normalise == "pmi" and not reranker.pmi:
            raise ValueError("normalise='pmi' needs a Reranker made with pmi=True")
        self.reranker, self.k, self.normalise = reranker, k, normalise
        self.label = label or system_label(k, normalise, reranker.shots)
        self.model_id = reranker.loaded.model_id

    def draft(self, requests: list[DraftRequest]) -> list[Draft]:
        out = []
        for r in requests:
            started = time.perf_counter()
            chosen = best(self.reranker.score(r, self.k), self.normalise)
            ms = (time.perf_counter() - started) * 1000
            text, guard = (chosen.case.impression, DraftGuard.NONE) if chosen is not None else ("", DraftGuard.EMPTY)
            out.append(Draft(text, guard, ms, self.model_id, f"rerank-{self.reranker.style}", self.label))
        return out


def system_label(k: int, normalise: Normalise, shots: int = 0) -> str:
    """What a draft records as the system that drafted it."""
    return f"base+rerank-k{k}-{normalise}" + (f"-shots{shots}" if shots else "")
