"""Scoring benchmark: radflow's ROUGE against the reference libraries, in one run.

Rows: the reference (jieba + rouge_chinese; rouge-score); radflow with every clause new (caches
cleared before each pair, so jieba runs on everything); radflow with every text new but caches
kept (a new impression is mostly clauses seen before); and radflow on a stream where impressions
recur as they do in practice (COV-CTR has 201 distinct impressions in 726 reports). Uses ../shared/corpora/reports
when present, generated reports otherwise.

Usage: python bench/score.py [--pairs 10000]
"""

from __future__ import annotations

import argparse
import functools
import json
import random
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from model.scoring import rouge  # noqa: E402
from radflow.demodata import generate_reports  # noqa: E402

REPORTS = ROOT.parent / "shared" / "corpora" / "reports"


def load(language: str) -> list[tuple[str, str]]:
    path = REPORTS / ("covctr_zh.jsonl" if language == "zh" else "iu_xray_en.jsonl")
    if path.is_file():
        rows = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]
        return [(r["findings"], r["impression"]) for r in rows]
    return [(r.findings, r.impression) for r in generate_reports(60, seed=3) if r.language == language]


def stream(pairs: list[tuple[str, str]], n: int, seed: int) -> list[tuple[str, str]]:
    """(draft, reference) pairs: each reference against another report's impression as the draft."""
    rng = random.Random(seed)
    return [(rng.choice(pairs)[1], rng.choice(pairs)[1]) for _ in range(n)]


def clear_caches() -> None:
    rouge.segment_zh.cache_clear()
    rouge._cut_block.cache_clear()
    rouge.tokens_en.cache_clear()


def score_in(language: str, hyp: str, ref: str) -> None:
    rouge.score(hyp, ref, language)


def uncached(language: str, hyp: str, ref: str) -> None:
    clear_caches()
    rouge.score(hyp, ref, language)


def rate(fn, pairs) -> float:
    started = time.perf_counter()
    for hyp, ref in pairs:
        fn(hyp, ref)
    return len(pairs) / (time.perf_counter() - started)


def files_rate(pairs: list[tuple[str, str]], workers: int) -> float:
    """Pairs/s of the offline command on a JSONL file, fresh processes (cold caches)."""
    import io
    import tempfile

    from streams.scoring_batch import score_jsonl

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "pairs.jsonl"
        path.write_text("\n".join(json.dumps({"draft": h, "impression": r}, ensure_ascii=False) for h, r in pairs),
                        encoding="utf-8")
        started = time.perf_counter()
        score_jsonl(path, "draft", "impression", workers, io.StringIO(), io.StringIO())
        return len(pairs) / (time.perf_counter() - started)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--pairs", type=int, default=10_000)
    args = parser.parse_args()
    rouge.warm_up()
    from rouge_chinese import Rouge as ChineseRouge
    from rouge_score import rouge_scorer

    zh_ref, en_ref = ChineseRouge(), rouge_scorer.RougeScorer(["rouge1", "rouge2", "rougeL"], use_stemmer=True)

    def reference_zh(h: str, r: str) -> None:
        zh_ref.get_scores(" ".join(rouge._jieba().cut(h)), " ".join(rouge._jieba().cut(r)))

    def reference_en(h: str, r: str) -> None:
        en_ref.score(r, h)

    print(f"# scoring benchmark ({args.pairs} pairs a row)\n")
    print("| language | scorer | pairs/s | vs reference |\n|---|---|---:|---:|")
    for language, reference in (("zh", reference_zh), ("en", reference_en)):
        pairs = stream(load(language), args.pairs, seed=1)
        ref_rate = rate(reference, pairs[: max(500, args.pairs // 10)])
        # cold: make every text unique, so no cache can help
        cold_pairs = [(h + f" {i}", r + f" {i}") for i, (h, r) in enumerate(pairs)]
        ours = functools.partial(score_in, language)

        nothing_cached = rate(functools.partial(uncached, language), cold_pairs[: max(1000, args.pairs // 5)])
        clear_caches()
        cold = rate(ours, cold_pairs)
        clear_caches()
        warm = rate(ours, pairs)
        print(f"| {language} | reference library | {ref_rate:,.0f} | 1.0x |")
        print(f"| {language} | radflow, every clause new (no cache) | {nothing_cached:,.0f} | "
              f"{nothing_cached / ref_rate:.1f}x |")
        print(f"| {language} | radflow, every text new | {cold:,.0f} | {cold / ref_rate:.1f}x |")
        print(f"| {language} | radflow, recurring impressions | {warm:,.0f} | {warm / ref_rate:.1f}x |")
        two = files_rate(cold_pairs, workers=2)
        print(f"| {language} | `radflow score --workers 2`, every text new (file in, JSON out) | {two:,.0f} | "
              f"{two / ref_rate:.1f}x |")
    print("\nTarget: 10,000 pairs/s.")


if __name__ == "__main__":
    main()
