"""Offline scoring of a pairs file (`radflow score`), optionally across processes.

Same metrics as the score agent. A line missing its draft or reference is reported on stderr and
skipped, never fatal. jieba dominates Chinese scoring, so ``workers`` processes split the lines.
"""

from __future__ import annotations

import json
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any, TextIO

from model.scoring.aggregate import means
from model.scoring.pair import PairScore, score_pair, warm_up

CHUNK = 500


def _score_lines(lines: list[tuple[int, str]], draft_field: str, reference_field: str) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for line_no, line in lines:
        try:
            row = json.loads(line)
        except json.JSONDecodeError:
            out.append({"line": line_no, "error": "not JSON"})
            continue
        draft, reference = row.get(draft_field), row.get(reference_field)
        if not isinstance(draft, str) or not isinstance(reference, str):
            out.append({"line": line_no, "error": f"missing {draft_field!r} or {reference_field!r}"})
            continue
        s = score_pair(draft, reference, row.get("language") or None)
        out.append({"id": row.get("id", line_no), "rouge1": s.rouge1, "rouge2": s.rouge2, "rougeL": s.rougeL,
                    "missed": list(s.missed_concepts), "over": list(s.over_concepts)})
    return out


def _init_worker() -> None:
    warm_up()


def score_jsonl(path: Path, draft_field: str, reference_field: str, workers: int, out: TextIO, err: TextIO) -> int:
    lines = [(n, line) for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1) if line.strip()]
    chunks = [lines[i : i + CHUNK] for i in range(0, len(lines), CHUNK)]
    if workers > 1:
        with ProcessPoolExecutor(workers, initializer=_init_worker) as pool:
            results = pool.map(_score_lines, chunks, [draft_field] * len(chunks), [reference_field] * len(chunks))
            scored = [item for chunk in results for item in chunk]
    else:
        scored = [item for chunk in chunks for item in _score_lines(chunk, draft_field, reference_field)]
    kept: list[PairScore] = []
    for item in scored:
        if "error" in item:
            print(f"line {item['line']}: {item['error']}; skipped", file=err)
            continue
        kept.append(PairScore(item["rouge1"], item["rouge2"], item["rougeL"], len(item["missed"]), len(item["over"])))
        print(json.dumps(item, ensure_ascii=False), file=out)
    if kept:
        m = means(kept)
        print(f"\n{'n':>6} {'R-1':>6} {'R-2':>6} {'R-L':>6} {'missed':>7} {'over':>6}", file=err)
        print(f"{len(kept):>6} {m['rouge1']:>6.3f} {m['rouge2']:>6.3f} {m['rougeL']:>6.3f} "
              f"{m['missed_rate']:>7.1%} {m['over_rate']:>6.1%}", file=err)
    return 0 if kept else 1
