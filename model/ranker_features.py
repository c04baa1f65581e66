"""What the trained ranker (model/ranker.py) knows about each candidate impression.

A report's candidates are the distinct impressions among its ``k`` most similar signed cases of
the institution (BM25 over findings), each at its best rank. Every feature is computed from the
new report's findings and the signed cases alone, so the same code serves training (a train
report against the other train reports, itself left out), validation and a live draft:

- retrieval: the BM25 score, the score relative to the top one, the rank;
- agreement: the consensus score (model/consensus.py: mean R-L against the other candidates),
  its gap to the best, the same weighted by the other candidates' BM25 scores, and how many of
  the ``k`` cases signed it;
- history: how often the institution has signed this impression (log, and as a share);
- length: the impression's words, relative to the findings and to the other candidates;
- a second view of similarity: character-bigram cosine between the findings (catches Chinese
  wording that jieba cuts differently), and how many of the impression's words occur in the new
  findings against in the candidate's own findings;
- the findings lexicon (model/scoring/clinical.py, the missed-finding proxy's): how many findings
  asserted in the new findings the impression does not name, how many it names that the new
  findings do not assert, and the first count against the candidate's own findings;
- the language;
- the ROUGE-L of the candidate case's findings against the new findings (the scorer's own view of
  how alike the two exams read);
- each candidate against the rest of its pool: the findings R-L, the character-bigram cosine and
  the words in the findings over the pool's highest, the cosine's and the agreement's rank, the
  unnamed findings less the pool's fewest and the history less the pool's most (trees split on
  absolute values, and what is "similar" differs from one report to the next).

A ranker records the features it was trained on, by name, and reads those columns only
(model/ranker.py), so an artifact trained before a feature was added keeps serving.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from model.cases import Case
from model.consensus import vote
from model.rerank import same_text
from model.retrieval import tokens
from model.scoring.clinical import compare
from model.scoring.rouge import score

FEATURES = (
    "bm25", "bm25_rel", "rank", "agreement", "agreement_gap", "agreement_weighted", "count_share",
    "history_log", "history_share", "length", "length_to_findings", "length_to_pool", "zh",
    "char_cosine", "words_in_findings", "words_in_own_findings", "words_gain", "pool_size",
    "concepts_unnamed", "concepts_unsupported", "concepts_unnamed_own",
    # added with ranker v3 (2026-12-07); older artifacts do not read them
    "findings_rougeL", "findings_rougeL_rel", "char_cosine_rel", "char_cosine_rank", "words_in_findings_rel",
    "concepts_unnamed_rel", "agreement_rank", "history_rel",
)


class ScoredCases(Protocol):
    """What the features need of the signed cases (model.retrieval.CaseIndex implements it)."""

    def scored(self, institution: str, findings: str, k: int, exclude: str = "") -> list[tuple[float, Case]]: ...

    def impression_count(self, institution: str, impression: str) -> int: ...

    def size(self, institution: str) -> int: ...


@dataclass(frozen=True)
class Candidate:
    case: Case  # the nearest case that signed this impression
    rank: int
    features: tuple[float, ...]  # in the order of FEATURES


def _bigrams(text: str) -> Counter[str]:
    compact = "".join(text.lower().split())
    return Counter(compact[i : i + 2] for i in range(len(compact) - 1))


def _cosine(a: Counter[str], b: Counter[str]) -> float:
    if not a or not b:
        return 0.0
    dot = sum(v * b[t] for t, v in a.items() if t in b)
    return dot / math.sqrt(sum(v * v for v in a.values()) * sum(v * v for v in b.values()))


def _share_in(words: Sequence[str], text_words: set[str]) -> float:
    return sum(w in text_words for w in words) / len(words) if words else 0.0


def candidates(cases: ScoredCases, institution: str, findings: str, language: str, k: int,
               exclude: str = "", own_impression: str = "") -> list[Candidate]:
    """The distinct impressions among the ``k`` most similar cases, with their features.
    ``exclude`` and ``own_impression``: a train report scored against its own institution's
    history leaves itself out of the neighbours and of the impression counts."""
    found = cases.scored(institution, findings, k, exclude)
    if not found:
        return []
    voted = vote([case for _, case in found], language or None)
    scores = [s for s, _ in found]
    top = scores[0] or 1.0
    best_agreement = max(v.agreement for v in voted)
    size = max(1, cases.size(institution) - (1 if own_impression else 0))
    own = same_text(own_impression) if own_impression else None
    query_words, query_bigrams = set(tokens(findings)), _bigrams(findings)
    lengths = {v.case.impression: len(tokens(v.case.impression)) for v in voted}
    mean_length = sum(lengths.values()) / len(lengths) or 1.0
    rows = []
    for v in voted:
        key = same_text(v.case.impression)
        history = cases.impression_count(institution, v.case.impression) - (1 if own == key else 0)
        weighted = _weighted_agreement(v.case.impression, found, language)
        words = tokens(v.case.impression)
        in_new, in_own = _share_in(words, query_words), _share_in(words, set(tokens(v.case.findings)))
        length = lengths[v.case.impression]
        unnamed = compare(v.case.impression, findings, language)
        unnamed_own = len(compare(v.case.impression, v.case.findings, language).missed)
        rows.append((
            scores[v.rank], scores[v.rank] / top, float(v.rank), v.agreement, best_agreement - v.agreement, weighted,
            v.count / len(found), math.log1p(max(0, history)), max(0, history) / size, float(length),
            length / max(1, len(query_words)), length / mean_length, 1.0 if language == "zh" else 0.0,
            _cosine(query_bigrams, _bigrams(v.case.findings)), in_new, in_own, in_new - in_own, float(len(voted)),
            float(len(unnamed.missed)), float(len(unnamed.over)), float(unnamed_own),
            score(v.case.findings, findings, language or None).rougeL))
    return [Candidate(v.case, v.rank, row + pooled) for v, row, pooled in zip(voted, rows, _against_pool(rows))]


_COLUMN = {name: i for i, name in enumerate(FEATURES)}


def _against_pool(rows: Sequence[tuple[float, ...]]) -> list[tuple[float, ...]]:
    """Each candidate's values relative to its pool (the v3 features after ``findings_rougeL``),
    the pool's extremes taken once."""
    def col(name: str) -> list[float]:
        return [r[_COLUMN[name]] for r in rows]

    def rank(values: list[float], i: int) -> float:  # 0 for the pool's highest
        return float(sum(x > values[i] for x in values))

    fr, cc, wf = col("findings_rougeL"), col("char_cosine"), col("words_in_findings")
    unnamed, agreement, history = col("concepts_unnamed"), col("agreement"), col("history_log")
    top_fr, top_cc, top_wf = max(fr) or 1.0, max(cc) or 1.0, max(wf) or 1.0
    fewest_unnamed, most_history = min(unnamed), max(history)
    return [(fr[i] / top_fr, cc[i] / top_cc, rank(cc, i), wf[i] / top_wf, unnamed[i] - fewest_unnamed,
             rank(agreement, i), history[i] - most_history) for i in range(len(rows))]


def _weighted_agreement(text: str, found: Sequence[tuple[float, Case]], language: str) -> float:
    """Mean R-L against the other cases, each weighted by its BM25 score (nearer cases count more)."""
    total = weight = 0.0
    seen_self = False
    for value, case in found:
        if case.impression == text and not seen_self:
            seen_self = True  # the candidate's own case does not vote for itself
            continue
        agreement = 1.0 if case.impression == text else score(text, case.impression, language or None).rougeL
        total += value * agreement
        weight += value
    return total / weight if weight else 1.0
