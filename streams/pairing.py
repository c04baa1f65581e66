"""Pairs a draft with its signed impression, whichever arrives first, and scores the pair.

The pending half lives in a Faust table (fast, partition-local). The table is a cache, not the
truth: Tansu's ListOffsets can lag the high-watermark, so a table recovered after a restart may
miss its newest entries. On a miss the half is looked up in storage, where both are written.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from ingest.events import ReportEvent
from model.scoring.pair import score_pair
from storage.tables import DraftRow, SignedReportRow
from streams.records import DraftRecord, ScoreRecord

Lookup = Callable[[str, str], dict[str, Any] | None]


@dataclass(frozen=True)
class PairUpdate:
    entry: dict[str, Any]  # the new table value
    score: ScoreRecord | None  # set when the pair is complete and (re)scored


def draft_half(row: DraftRecord | DraftRow) -> dict[str, Any]:
    """What pairing keeps of a draft, from its record or, after a short recovery, its row."""
    return {"draft": row.draft, "adapter_version": row.adapter_version, "guard": row.guard, "system": row.system}


def signed_half(institution: str, accession: str, impression: str, status: str, body_system: str, language: str) -> dict[str, Any]:
    return {
        "institution": institution,
        "accession": accession,
        "impression": impression,
        "status": status,
        "body_system": body_system,
        "language": language,
    }


def signed_from_event(event: ReportEvent) -> dict[str, Any]:
    return signed_half(event.institution, event.accession, event.impression, event.status, event.body_system, event.language)


def signed_from_row(row: SignedReportRow) -> dict[str, Any]:
    return signed_half(row.institution, row.accession, row.impression, row.status, row.body_system, row.language)


def update(
    entry: dict[str, Any] | None,
    institution: str,
    accession: str,
    *,
    draft: dict[str, Any] | None = None,
    signed: dict[str, Any] | None = None,
    find_draft: Lookup,
    find_signed: Lookup,
) -> PairUpdate:
    """Merge a new half into the pending entry; score when both halves are known."""
    entry = dict(entry or {})
    if draft is not None:
        entry["draft"] = draft
    if signed is not None:
        entry["signed"] = signed
    if "draft" not in entry and (found := find_draft(institution, accession)) is not None:
        entry["draft"] = found
    if "signed" not in entry and (found := find_signed(institution, accession)) is not None:
        entry["signed"] = found
    if "draft" not in entry or "signed" not in entry:
        return PairUpdate(entry, None)
    s, d = entry["signed"], entry["draft"]
    r = score_pair(d["draft"], s["impression"], s["language"])
    record = ScoreRecord(
        institution=institution, accession=accession, body_system=s["body_system"], language=s["language"],
        rouge1=r.rouge1, rouge2=r.rouge2, rougeL=r.rougeL, missed=r.missed, over=r.over,
        missed_concepts=r.missed_concepts, over_concepts=r.over_concepts,
        adapter_version=d.get("adapter_version", ""), signed_status=s["status"], created_at=time.time(),
        system=d.get("system", ""),
    )
    entry["scored_at"] = record.created_at
    return PairUpdate(entry, record)
