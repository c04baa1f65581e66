"""Serving cost of the drafters that choose among retrieved signed impressions, on this CPU, in one run.

The three public report sets (../shared/corpora/reports), split as ``radflow eval`` splits them:
the train split is the case index (BM25 per institution), the test split is drafted in batches
of ``--batch`` by ``retrieval`` (BM25 top-1), ``consensus`` (top k=10, mean R-L agreement) and
``ranker`` (LightGBM lambdarank over the top k, as trained by training/ranker_train.py; here fit
once on the train split with the setting validation chose on the default split unless
``--ranker DIR`` loads a saved one). For the ranker the time of a report is split into its parts:
the BM25 search, the features (agreement among the candidates is the ROUGE-heavy part) and the
booster's prediction, in microseconds. No language model runs in any of them: the model's share
of the serving cost is zero.

Usage: python bench/ranker.py [--batch 16] [--reports 397] [--ranker DIR] [--corpora DIR]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from evaluation.inputs import read_reports  # noqa: E402
from model.consensus import ConsensusDrafter  # noqa: E402
from model.drafter import DraftRequest  # noqa: E402
from model.ranker import Ranker, RankerDrafter, load_ranker  # noqa: E402
from model.ranker_features import candidates  # noqa: E402
from model.retrieval import RetrievalDrafter  # noqa: E402
from model.scoring import rouge  # noqa: E402
from training import dataset as ds  # noqa: E402
from training import ranker_train as rt  # noqa: E402

REPORTS = ROOT.parent / "shared" / "corpora" / "reports"
CHOSEN = {"k": 15, "leaves": 15, "trees": 400}  # validation's choice on the default split (docs/evaluation.md)


def per_report_us(drafter: object, requests: list[DraftRequest], batch: int) -> list[float]:
    """Wall time per report, in microseconds, drafting in batches."""
    out = []
    for start in range(0, len(requests), batch):
        chunk = requests[start : start + batch]
        began = time.perf_counter()
        drafter.draft(chunk)  # type: ignore[attr-defined]
        out += [(time.perf_counter() - began) * 1e6 / len(chunk)] * len(chunk)
    return out


def ranker_parts(ranker: Ranker, index: rt.CaseIndex, requests: list[DraftRequest]) -> dict[str, list[float]]:
    """The ranker's time per report split into search, features and prediction (microseconds)."""
    parts: dict[str, list[float]] = {"BM25 search": [], "features": [], "booster": []}
    for r in requests:
        t0 = time.perf_counter()
        index.scored(r.institution, r.findings, ranker.k)
        t1 = time.perf_counter()
        found = candidates(index, r.institution, r.findings, r.language, ranker.k)
        t2 = time.perf_counter()
        ranker.best(found)
        t3 = time.perf_counter()
        parts["BM25 search"].append((t1 - t0) * 1e6)
        parts["features"].append(((t2 - t1) - (t1 - t0)) * 1e6)  # candidates() searches again
        parts["booster"].append((t3 - t2) * 1e6)
    return parts


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--reports", type=int, default=397, help="test reports drafted (at most the split)")
    parser.add_argument("--ranker", type=Path, help="a saved ranker version directory (default: fit one here)")
    parser.add_argument("--corpora", type=Path, default=REPORTS, help="folder of the report sets (*.jsonl)")
    args = parser.parse_args()
    files = sorted(args.corpora.glob("*.jsonl"))
    if not files:
        parser.error(f"--corpora {args.corpora}: no *.jsonl report sets there")
    data = ds.build(read_reports(files))
    index = rt.index_of(data.train)
    rouge.warm_up()
    began = time.perf_counter()
    if args.ranker:
        ranker, _ = load_ranker(args.ranker)
    else:
        booster = rt.fit(rt.queries(data.train, index, CHOSEN["k"], True), CHOSEN["leaves"], CHOSEN["trees"])
        ranker = Ranker(booster, CHOSEN["k"])
    fit_s = time.perf_counter() - began
    requests = [DraftRequest(e.institution, e.accession, e.findings, e.language) for e in data.test][: args.reports]
    drafters = {"retrieval": RetrievalDrafter(index), "consensus (k=10)": ConsensusDrafter(index, 10),
                f"ranker (k={ranker.k})": RankerDrafter(ranker, index)}
    for drafter in drafters.values():
        drafter.draft(requests[:4])  # caches warm (jieba, stems) before timing
    print(f"{len(requests)} test reports, batch {args.batch}, {len(data.train)} train reports indexed; "
          f"ranker {'loaded' if args.ranker else f'fit in {fit_s:.1f} s'}\n")
    print("| system | mean ms / report | p95 ms | reports / s | model share |")
    print("|---|---:|---:|---:|---:|")
    times = {name: per_report_us(d, requests, args.batch) for name, d in drafters.items()}
    base = statistics.fmean(times["retrieval"])
    for name, us in times.items():
        p95 = sorted(us)[int(0.95 * (len(us) - 1))]
        print(f"| {name} | {statistics.fmean(us) / 1000:.2f} | {p95 / 1000:.2f} | {1e6 / statistics.fmean(us):.0f} | "
              f"0 (no model; {statistics.fmean(us) / base:.1f}x retrieval) |")
    print("\n| ranker part | mean µs / report | median µs |")
    print("|---|---:|---:|")
    for part, us in ranker_parts(ranker, index, requests).items():
        print(f"| {part} | {statistics.fmean(us):.0f} | {statistics.median(us):.0f} |")


if __name__ == "__main__":
    main()
