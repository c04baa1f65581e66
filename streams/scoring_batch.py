"""Offline scoring of a pairs file (`radflow score`), optionally across processes.

Same metrics as the score agent. A line missing its draft or reference is reported on stderr and
skipped, never fatal. jieba dominates Chinese scoring, so ``workers`` processes split the lines.
"""

from __future__ import annotations

import json
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any, TextIO

from streams.clinical import compare
from streams.rouge import language_of, score, warm_up

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
        language = row.get("language") or language_of(reference + draft)
        r = score(draft, reference, language)
        diff = compare(draft, reference, language)
        out.append({"id": row.get("id", line_no), "rouge1": r.rouge1, "rouge2": r.rouge2, "rougeL": r.rougeL,
                    "missed": list(diff.missed), "over": list(diff.over)})
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
    totals = {"rouge1": 0.0, "rouge2": 0.0, "rougeL": 0.0, "missed": 0, "over": 0}
    n = 0
    for item in scored:
        if "error" in item:
            print(f"line {item['line']}: {item['error']}; skipped", file=err)
            continue
        n += 1
        for metric in ("rouge1", "rouge2", "rougeL"):
            totals[metric] += item[metric]
        totals["missed"] += bool(item["missed"])
        totals["over"] += bool(item["over"])
        print(json.dumps(item, ensure_ascii=False), file=out)
    if n:
        print(f"\n{'n':>6} {'R-1':>6} {'R-2':>6} {'R-L':>6} {'missed':>7} {'over':>6}", file=err)
        print(f"{n:>6} {totals['rouge1'] / n:>6.3f} {totals['rouge2'] / n:>6.3f} {totals['rougeL'] / n:>6.3f} "
              f"{totals['missed'] / n:>7.1%} {totals['over'] / n:>6.1%}", file=err)
    return 0 if n else 1
