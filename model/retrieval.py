"""Retrieval of similar signed cases (RadAlign's idea): BM25 over findings, per institution.

Used three ways: similar findings → impression pairs put into the prompt (optional), a
retrieval-only drafter (a baseline for evaluation), and the fallback when the model's output
stays empty after a retry. Tokens are jieba words for Chinese and lower-cased words for English,
punctuation dropped, so the index matches wording rather than layout.
"""

from __future__ import annotations

import logging
import math
import re
import threading
from collections import Counter, defaultdict
from functools import lru_cache

from kernel.codes import CJK, DraftGuard
from model.cases import Case
from model.drafter import Draft, DraftRequest
from model.rerank import same_text

_WORD = re.compile(r"[\w\u4e00-\u9fff]+")


@lru_cache(maxsize=1)
def _jieba():
    import jieba

    jieba.setLogLevel(logging.WARNING)
    return jieba


def tokens(text: str) -> list[str]:
    """Words for matching: jieba for Chinese, lower-cased words otherwise; no punctuation."""
    if CJK.search(text):
        return [w for w in _jieba().lcut(text) if _WORD.fullmatch(w)]
    return _WORD.findall(text.lower())


class BM25:
    """Okapi BM25 (k1=1.5, b=0.75) with an inverted index; documents can be added any time."""

    def __init__(self, k1: float = 1.5, b: float = 0.75) -> None:
        self.k1, self.b = k1, b
        self.docs: list[Case] = []
        self.lengths: list[int] = []
        self.postings: dict[str, list[tuple[int, int]]] = defaultdict(list)  # term -> [(doc, tf)]
        self.keys: dict[str, int] = {}
        self.total_length = 0

    def add(self, case: Case) -> None:
        if case.key in self.keys:  # a correction replaces the earlier impression, keeps the slot
            self.docs[self.keys[case.key]] = Case(case.key, self.docs[self.keys[case.key]].findings, case.impression)
            return
        doc = len(self.docs)
        words = tokens(case.findings)
        self.docs.append(case)
        self.keys[case.key] = doc
        self.lengths.append(len(words))
        self.total_length += len(words)
        for term, tf in Counter(words).items():
            self.postings[term].append((doc, tf))

    def search(self, query: str, k: int, exclude: str = "") -> list[tuple[float, Case]]:
        if not self.docs:
            return []
        n = len(self.docs)
        mean_length = self.total_length / n or 1.0
        scores: dict[int, float] = defaultdict(float)
        for term in sorted(set(tokens(query))):  # a fixed order, so scores match to the last bit run to run
            posting = self.postings.get(term)
            if not posting:
                continue
            idf = math.log(1 + (n - len(posting) + 0.5) / (len(posting) + 0.5))
            for doc, tf in posting:
                norm = self.k1 * (1 - self.b + self.b * self.lengths[doc] / mean_length)
                scores[doc] += idf * tf * (self.k1 + 1) / (tf + norm)
        ranked = sorted(scores.items(), key=lambda item: (-item[1], item[0]))
        out = []
        for doc, value in ranked:
            if self.docs[doc].key != exclude:
                out.append((value, self.docs[doc]))
            if len(out) == k:
                break
        return out


class CaseIndex:
    """One BM25 index per institution, safe to add to from the event loop while the model
    thread searches."""

    def __init__(self) -> None:
        self._indexes: dict[str, BM25] = defaultdict(BM25)
        self._impressions: dict[str, Counter[str]] = defaultdict(Counter)  # institution -> same_key -> count
        self._lock = threading.Lock()

    def add(self, institution: str, accession: str, findings: str, impression: str) -> None:
        if findings and impression:
            with self._lock:
                index = self._indexes[institution]
                if accession in index.keys:  # a correction: the earlier impression no longer counts
                    self._impressions[institution][same_text(index.docs[index.keys[accession]].impression)] -= 1
                index.add(Case(accession, findings, impression))
                self._impressions[institution][same_text(impression)] += 1

    def impression_count(self, institution: str, impression: str) -> int:
        """How many signed cases of the institution have this impression (whitespace and case aside)."""
        with self._lock:
            return self._impressions[institution][same_text(impression)] if institution in self._impressions else 0

    def size(self, institution: str) -> int:
        with self._lock:
            index = self._indexes.get(institution)
            return len(index.docs) if index else 0

    def scored(self, institution: str, findings: str, k: int, exclude: str = "") -> list[tuple[float, Case]]:
        """The ``k`` most similar signed cases with their BM25 scores, best first."""
        with self._lock:
            index = self._indexes.get(institution)
            return index.search(findings, k, exclude) if index else []

    def __len__(self) -> int:
        return sum(len(index.docs) for index in self._indexes.values())

    def count(self, institution: str) -> int:
        """Signed cases of ``institution`` (the cold-start rule of model.systems reads it)."""
        with self._lock:
            index = self._indexes.get(institution)
            return len(index.docs) if index else 0

    def similar(self, institution: str, findings: str, k: int, exclude: str = "") -> list[Case]:
        with self._lock:
            index = self._indexes.get(institution)
            return [case for _, case in index.search(findings, k, exclude)] if index else []


class RetrievalDrafter:
    """The impression of the most similar signed case of the same institution: a baseline and
    the model's fallback."""

    model_id = "retrieval-bm25"

    def __init__(self, index: CaseIndex) -> None:
        self.index = index

    def draft(self, requests: list[DraftRequest]) -> list[Draft]:
        out = []
        for r in requests:
            found = self.index.similar(r.institution, r.findings, 1, exclude=r.accession)
            out.append(Draft(found[0].impression if found else "", DraftGuard.NONE if found else DraftGuard.EMPTY, 0.0,
                             self.model_id, "none"))
        return out
