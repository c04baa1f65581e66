"""The reports ``radflow eval`` reads (JSONL or CSV, columns named by flags), and the order and
share of them that are drafted and trained on."""

from __future__ import annotations

import csv
import io
import json
import random
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO

from kernel.codes import language_of
from kernel.errors import TrainingError
from training import dataset as ds


@dataclass(frozen=True)
class Fields:
    """Column names of the input (JSONL keys or CSV headers); "a,b" means a, else b."""

    findings: str = "findings"
    impression: str = "impression"
    institution: str = "institution"
    body: str = "body_part,body_system"
    id: str = "id,accession"
    language: str = "language"
    split: str = ""  # the corpus's own train/validation/test column (--split-field); "": the hash split


def _get(row: dict, names: str) -> str:
    for name in names.split(","):
        value = row.get(name.strip())
        if value not in (None, ""):
            return str(value).strip()
    return ""


def read_reports(paths: Sequence[Path], fields: Fields = Fields(), limit: int | None = None,
                 err: TextIO | None = None) -> list[ds.Example]:
    """Rows of JSONL or CSV files. A file without an institution column is one institution, named
    after the file. Rows missing findings or impression are reported on ``err`` and skipped."""
    out: list[ds.Example] = []
    for path in paths:
        path = Path(path)
        try:
            text = path.read_text(encoding="utf-8-sig")
        except OSError as exc:
            raise TrainingError(f"cannot read --data {path}: {exc.strerror}") from exc
        if path.suffix.lower() == ".csv":
            rows = list(enumerate(csv.DictReader(io.StringIO(text)), start=2))
        else:
            rows = []
            for n, line in enumerate(text.splitlines(), start=1):
                if line.strip():
                    try:
                        rows.append((n, json.loads(line)))
                    except json.JSONDecodeError as exc:
                        _report(err, f"{path.name}:{n}: not JSON ({exc.msg}); skipped")
        skipped = 0
        taken = 0
        for n, row in rows:
            findings, impression = _get(row, fields.findings), _get(row, fields.impression)
            if not findings or not impression:
                skipped += 1
                _report(err, f"{path.name}:{n}: no {fields.findings if not findings else fields.impression}; skipped")
                continue
            institution = _get(row, fields.institution) or path.stem
            language = _get(row, fields.language) or language_of(findings + impression)
            body = _get(row, fields.body) or "other"
            out.append(ds.Example(institution, _get(row, fields.id) or f"{path.stem}-{n}", body,
                                  "zh" if language.startswith("zh") else "en", findings, impression,
                                  _own_split(row, fields.split, f"{path.name}:{n}")))
            taken += 1
            if limit and taken >= limit:
                break
        if skipped:
            _report(err, f"{path.name}: {skipped} rows skipped, {taken} read")
    if not out:
        raise TrainingError("no usable rows: every row lacks findings or impression (see --findings-field)")
    return out


def as_ingested(examples: list[ds.Example]) -> list[ds.Example]:
    """The reports with findings and impression cleaned as ingest cleans an HL7 result
    (ingest/clean.py): what `radflow serve` stores, drafts from and scores against."""
    import dataclasses

    from ingest.clean import clean_text

    out = [dataclasses.replace(e, findings=clean_text(e.findings), impression=clean_text(e.impression)) for e in examples]
    return [e for e in out if e.findings and e.impression]


def _own_split(row: dict, field: str, where: str) -> str:
    """The row's own split under ``--split-field`` ("" when the hash split is asked for)."""
    if not field:
        return ""
    value = _get(row, field)
    if value.lower() not in ds.SPLIT_NAMES:
        found = f"{value!r} is not one of {', '.join(sorted(ds.SPLIT_NAMES))}" if value else "it has none"
        raise TrainingError(f"--split-field {field}: {where}: {found}; drop --split-field to split by the "
                            f"accession hash (--split-salt moves it)")
    return value


def _report(err: TextIO | None, message: str) -> None:
    if err is not None:
        print(message, file=err)


def subsample(train: list[ds.Example], per_institution: int | None, seed: int) -> list[ds.Example]:
    """At most ``per_institution`` train reports of each institution, a seeded random choice in
    the original order; all of them when None. Only adapters train on it (retrieval keeps all)."""
    if not per_institution:
        return train
    by_institution: dict[str, list[int]] = defaultdict(list)
    for i, e in enumerate(train):
        by_institution[e.institution].append(i)
    keep: set[int] = set()
    for institution, index in sorted(by_institution.items()):
        keep.update(random.Random(f"{seed}|{institution}").sample(index, min(per_institution, len(index))))
    return [e for i, e in enumerate(train) if i in keep]


def drafting_order(test: list[ds.Example], batch: int, seed: int) -> list[ds.Example]:
    """The test split in the order it is drafted: each institution's reports shuffled (seeded),
    then whole batches taken from the institution least done so far. Batches stay of one
    institution (similar prompt lengths pad little) and any prefix is a proportional random
    sample of the split, which is what a partial run reports."""
    queues: dict[str, list[ds.Example]] = defaultdict(list)
    for e in test:
        queues[e.institution].append(e)
    for institution, queue in queues.items():
        random.Random(f"{seed}|{institution}").shuffle(queue)
    taken = dict.fromkeys(queues, 0)
    out: list[ds.Example] = []
    while len(out) < len(test):
        institution = min((i for i in queues if taken[i] < len(queues[i])),
                          key=lambda i: (taken[i] / len(queues[i]), i))
        out += queues[institution][taken[institution] : taken[institution] + batch]
        taken[institution] += batch
    return out


def write_pairs(examples: list[ds.Example], path: Path) -> None:
    """Findings/impression JSONL, as the bootstrap model trains on."""
    with path.open("w", encoding="utf-8") as f:
        for e in examples:
            f.write(json.dumps({"findings": e.findings, "impression": e.impression, "language": e.language},
                               ensure_ascii=False) + "\n")
