"""radflow's ROUGE equals the reference libraries (rouge_chinese on jieba; rouge-score)."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest
from rouge_chinese import Rouge as ChineseRouge
from rouge_score import rouge_scorer

from model.scoring.rouge import ZERO, lcs_length, score, segment_zh
from radflow.demodata import generate_reports

REPORTS = Path(__file__).resolve().parents[3] / "shared" / "corpora" / "reports"


def _pairs(language: str, n: int) -> list[tuple[str, str]]:
    """Draft-like texts against references: shuffled, truncated and cross-paired impressions."""
    texts = [r.impression for r in generate_reports(8, seed=4) if r.language == language]
    texts += [r.findings for r in generate_reports(2, seed=5) if r.language == language]
    corpus = REPORTS / ("covctr_zh.jsonl" if language == "zh" else "iu_xray_en.jsonl")
    if corpus.is_file():
        rows = [json.loads(line) for line in corpus.read_text(encoding="utf-8").splitlines()[:400]]
        texts += [r["impression"] for r in rows] + [r["findings"][:200] for r in rows[:100]]
    rng = random.Random(11)
    pairs = []
    for _ in range(n):
        ref, hyp = rng.choice(texts), rng.choice(texts)
        if rng.random() < 0.3:
            hyp = ref[: rng.randrange(1, len(ref) + 1)]
        pairs.append((hyp, ref))
    return pairs


def _reference_zh(hyp: str, ref: str) -> tuple[float, float, float]:
    s = ChineseRouge().get_scores(segment_zh(hyp), segment_zh(ref))[0]
    return s["rouge-1"]["f"], s["rouge-2"]["f"], s["rouge-l"]["f"]


def test_chinese_equals_jieba_plus_rouge_chinese() -> None:
    pairs = _pairs("zh", 300)
    for hyp, ref in pairs:
        ours = score(hyp, ref, "zh")
        assert (ours.rouge1, ours.rouge2, ours.rougeL) == pytest.approx(_reference_zh(hyp, ref), abs=1e-12), (hyp, ref)


def test_english_equals_rouge_score_with_stemming() -> None:
    scorer = rouge_scorer.RougeScorer(["rouge1", "rouge2", "rougeL"], use_stemmer=True)
    for hyp, ref in _pairs("en", 300):
        ours = score(hyp, ref, "en")
        s = scorer.score(ref, hyp)
        expected = (s["rouge1"].fmeasure, s["rouge2"].fmeasure, s["rougeL"].fmeasure)
        assert (ours.rouge1, ours.rouge2, ours.rougeL) == pytest.approx(expected, abs=1e-12), (hyp, ref)


def test_empty_scores_zero_never_raises() -> None:
    for hyp, ref, lang in (("", "左肺结节。", "zh"), ("左肺结节。", "", "zh"), ("   ", "x", "en"), ("。", "", "zh")):
        assert score(hyp, ref, lang) == ZERO


def test_lcs() -> None:
    assert lcs_length(list("ABCBDAB"), list("BDCABA")) == 4
    assert lcs_length([], ["a"]) == 0
