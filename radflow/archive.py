"""An archive of signed reports as radflow sees them: read with ``radflow eval``'s readers, split
by the same accession hash, and stored as ingest would have stored each report.

``radflow import`` loads it into storage before go-live (the draft worker builds its case index
from storage when it starts), and ``radflow replay`` sends a split of it as HL7. Both put a
report in the segment that live traffic would: the body system is what ingest derives from the
exam text (``ingest.reports.body_system_of``), and the text is cleaned as ingest cleans it.
"""

from __future__ import annotations

import hashlib
import re
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO

from evaluation.inputs import Fields, read_reports
from ingest.clean import DEFAULT_BOILERPLATE, clean_text
from ingest.reports import MAX_ID, body_system_of
from kernel.codes import ResultStatus
from kernel.errors import TrainingError
from storage.tables import SignedReportRow
from training import dataset as ds

SPLIT_NAMES = {"train": "train", "validation": "val", "test": "test"}
_HL7_UNSAFE = re.compile(r"[|^~\\&\s]")


def accession_for(report_id: str) -> str:
    """The accession a report travels under: its id, or a stable digest of it when the id is
    longer than ingest accepts (MSH/OBR identifiers: 64 characters) or holds HL7 delimiters."""
    if report_id and len(report_id) <= MAX_ID and not _HL7_UNSAFE.search(report_id):
        return report_id
    return "H" + hashlib.sha256(report_id.encode()).hexdigest()[:24]


def read_split(paths: Sequence[Path], fields: Fields, split: str | None, limit: int | None = None,
               err: TextIO | None = None, salt: str = "") -> tuple[list[ds.Example], int]:
    """The reports of ``split`` (train, validation, test; None: all), deduplicated and split as
    ``radflow eval`` does (training/dataset.py; ``salt`` as its ``--split-salt``); and how many
    duplicates were dropped."""
    if split is not None and split not in SPLIT_NAMES:
        raise TrainingError(f"--split {split!r} is not one of {', '.join(SPLIT_NAMES)}")
    data = ds.build(read_reports(list(paths), fields, limit, err), salt=salt)
    if split is None:
        return data.train + data.val + data.test, data.duplicates
    return data.split(SPLIT_NAMES[split]), data.duplicates


@dataclass(frozen=True)
class Served:
    """A report as live traffic carries it: the accession, the served body system, the exam text."""

    accession: str
    body_system: str
    exam: str


#: An exam text that ingest classifies as each body system, for archives that name the system itself.
EXAM_OF = {"chest": "chest", "abdomen": "abdomen", "musculoskeletal": "MSK", "head": "head",
           "maxillofacial_neck": "neck", "other": ""}


def served(e: ds.Example) -> Served:
    """An archive's body field is either radflow's body system, or free exam text that ingest
    classifies (``body_system_of``); either way the replayed exam lands in the same segment."""
    exam = EXAM_OF.get(e.body_system, e.body_system)
    return Served(accession_for(e.accession), body_system_of(f"{exam} "), exam)


def signed_rows(examples: Iterable[ds.Example], boilerplate: Iterable[str] = DEFAULT_BOILERPLATE) -> list[SignedReportRow]:
    """Storage rows of signed reports, as the score agent stores a final result."""
    now = time.time()
    words = tuple(boilerplate)
    rows = []
    for e in examples:
        s = served(e)
        rows.append(SignedReportRow(
            institution=e.institution, accession=s.accession, status=ResultStatus.FINAL, exam=s.exam,
            body_system=s.body_system, language=e.language, findings=clean_text(e.findings, words),
            impression=clean_text(e.impression, words), findings_raw=e.findings, impression_raw=e.impression,
            signer="import", received_at=now))
    return [r for r in rows if r.findings and r.impression]
