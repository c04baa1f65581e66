"""Served against evaluated: the R-L that `radflow serve` scored per institution (``/api/summary``
after `radflow replay` of a split) beside the offline figure of the same systems on the same
reports (``evaluation.run.run_eval``, the function behind `radflow eval`).

Each test report is counted under the system that served its segment (the champions in storage,
as `radflow systems list` shows them), so an institution whose segments are served by different
systems is compared with the same mix offline. Retrieval's offline figure is printed beside.

    python bench/served_vs_eval.py --summary summary.json --database sqlite:///home/radflow.sqlite \
        --data a.jsonl --data b.jsonl --out eval-dir [--model DIR]
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # bench/ingest.py must not shadow the ingest package

from evaluation.inputs import Fields, read_reports  # noqa: E402
from evaluation.run import run_eval  # noqa: E402
from model.scoring.aggregate import means  # noqa: E402
from model.systems import CASE_SYSTEMS, is_ranker  # noqa: E402
from radflow.archive import served  # noqa: E402
from storage.repository import Repository  # noqa: E402
from training.dataset import Example  # noqa: E402
from training.gate import ReportScore  # noqa: E402
from training.recipe import Recipe  # noqa: E402


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--summary", required=True, help="/api/summary JSON saved after the replay")
    p.add_argument("--database", required=True, help="the served database URL (its champions)")
    p.add_argument("--data", required=True, action="append")
    p.add_argument("--out", required=True, help="radflow eval's output directory (drafts are reused there)")
    p.add_argument("--model", help="the served model directory (needed when a model system served)")
    p.add_argument("--as-ingested", action=argparse.BooleanOptionalAction, default=True)
    p.add_argument("--consensus-k", type=int, default=5, help="the served RADFLOW_CONSENSUS_K")
    p.add_argument("--rankers", help="the served ranker versions (default: $RADFLOW_HOME/rankers/ranker)")
    args = p.parse_args()
    champions = Repository(args.database).system_champions()
    summary = json.loads(Path(args.summary).read_text())
    examples = read_reports([Path(d) for d in args.data], Fields())
    # the case systems on every institution; a model system only on the institutions it serves (the
    # split is per institution, so their test reports are the same ones)
    case_systems = sorted({s for s in champions.values() if s in CASE_SYSTEMS} | {"retrieval"})
    runs = [(case_systems, examples, Path(args.out))]
    rankers = sorted({s for s in champions.values() if is_ranker(s)})
    for system in sorted(set(champions.values()) - set(case_systems) - set(rankers)):
        served_by = {i for (i, _), s in champions.items() if s == system}
        runs.append(([system], [e for e in examples if e.institution in served_by], Path(args.out) / system))
    scores: dict[tuple[str, str, str], ReportScore] = {}  # (system, institution, accession)
    test: list[Example] = []
    for systems, subset, out in runs:
        result = run_eval(subset, out, Recipe.load("paper"), systems=systems, progress=False,
                          model_path=Path(args.model) if args.model else None, as_ingested=args.as_ingested,
                          consensus_k=args.consensus_k)
        test = test or result.test
        for system, per_report in result.scores.items():
            for e, score in zip(result.test, per_report, strict=True):
                scores[(system, e.institution, e.accession)] = score
    for system in rankers:  # the served version itself, drafting the test split from the train split
        scores |= _ranker_scores(system, examples, Path(args.rankers) if args.rankers else None, args.as_ingested)
    mix: dict[str, list] = defaultdict(list)
    retrieval: dict[str, list] = defaultdict(list)
    used: dict[str, set[str]] = defaultdict(set)
    for e in test:
        system = champions.get((e.institution, served(e).body_system), "retrieval")
        mix[e.institution].append(scores[(system, e.institution, e.accession)])
        retrieval[e.institution].append(scores[("retrieval", e.institution, e.accession)])
        used[e.institution].add(system)
    live = {row["institution"]: row for row in summary["served"]}
    print("| institution | n served | n eval | systems | served R-L | eval R-L (same systems) | difference | "
          "eval R-L retrieval |")
    print("|---|---:|---:|---|---:|---:|---:|---:|")
    for institution in sorted(mix):
        row = live.get(institution, {"n": 0, "rougeL": float("nan")})
        offline = means(mix[institution])["rougeL"]
        print(f"| {institution} | {row['n']} | {len(mix[institution])} | {', '.join(sorted(used[institution]))} | "
              f"{row['rougeL']:.4f} | {offline:.4f} | {row['rougeL'] - offline:+.4f} | "
              f"{means(retrieval[institution])['rougeL']:.4f} |")


def _ranker_scores(system: str, examples: list[Example], rankers: Path | None,
                   as_ingested: bool) -> dict[tuple[str, str, str], ReportScore]:
    """A served ranker version's scores on the test split, its cases the train split (as run_eval's)."""
    from evaluation.inputs import as_ingested as clean
    from kernel.settings import Settings
    from model.ranker import RankerDrafter
    from model.systems import Loaded, ranker_version
    from training import dataset as ds
    from training.gate import score_drafts
    from training.ranker_train import index_of
    from training.systems_gate import draft_all

    data = ds.build(examples)
    train, test = (clean(data.train), clean(data.test)) if as_ingested else (data.train, data.test)
    index = index_of(train)
    path = ranker_version(Loaded(index, rankers=rankers or Settings.from_env().resolved_ranker_dir), system)
    if path is None:
        raise SystemExit(f"{system}: no such ranker version (--rankers)")
    drafts = draft_all(RankerDrafter.load(path, index), test)
    return {(system, e.institution, e.accession): s for e, s in zip(test, score_drafts(test, drafts), strict=True)}


if __name__ == "__main__":
    main()
