"""Pairs a draft with its signed impression, whichever arrives first, and scores the pair.

The pending pair lives in a Faust table (fast, partition-local) as the JSON of ``PendingPair``.
The table is a cache, not the truth: Tansu's ListOffsets can lag the high-watermark, so a table
recovered after a restart may miss its newest entries. On a miss the score agent looks the half
up in storage, where both are written, and hands it in here like any other half.

Everything here is pure: halves in, a pair and (once both halves are known) its score out. A pair
remembers the digest of the texts it was scored from (``inputs``), so a replayed half that brings
the same texts again is recognised (``unchanged``) and not scored twice.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from dataclasses import dataclass
from typing import Any, Self

from ingest.events import ReportEvent
from model.scoring.pair import score_pair
from storage.tables import DraftRow, SignedReportRow
from streams.records import DraftRecord, ScoreRecord


@dataclass(frozen=True)
class DraftHalf:
    """What pairing keeps of a draft."""

    draft: str
    adapter_version: str = ""
    guard: str = ""
    system: str = ""  # the serving system that drafted it (model.systems); not part of the digest

    @classmethod
    def of(cls, row: DraftRecord | DraftRow) -> Self:
        """From the draft's record or, after a short recovery, its row."""
        return cls(row.draft, row.adapter_version, row.guard, row.system)


@dataclass(frozen=True)
class SignedHalf:
    """What pairing keeps of a signed report."""

    institution: str
    accession: str
    impression: str
    status: str
    body_system: str
    language: str

    @classmethod
    def of(cls, report: ReportEvent | SignedReportRow) -> Self:
        """From the report's event or its stored row."""
        return cls(report.institution, report.accession, report.impression, report.status, report.body_system,
                   report.language)


def inputs_of(draft: DraftHalf, signed: SignedHalf) -> str:
    """A digest of what a score depends on: the same pair scored again gives the same score.
    Stored with the score (``ScoreRow.inputs``), so keep its parts and their order."""
    parts = [draft.draft, draft.adapter_version, signed.impression, signed.status, signed.language,
             signed.body_system]
    return hashlib.sha256(json.dumps(parts, ensure_ascii=False).encode()).hexdigest()[:32]


@dataclass(frozen=True)
class PendingPair:
    """A pair in the table: either half may still be missing; ``scored_at`` and ``inputs`` (the
    digest of the texts scored) once scored."""

    draft: DraftHalf | None = None
    signed: SignedHalf | None = None
    scored_at: float | None = None
    inputs: str | None = None

    @property
    def complete(self) -> bool:
        return self.draft is not None and self.signed is not None

    @property
    def digest(self) -> str | None:
        """``inputs_of`` the halves held (None until both are known)."""
        return inputs_of(self.draft, self.signed) if self.draft is not None and self.signed is not None else None

    def unchanged(self, stored_inputs: str | None = None) -> bool:
        """Complete and already scored from these texts: by this pair, or (``stored_inputs``) by
        the score storage holds. A replay, not a new score."""
        digest = self.digest
        return digest is not None and digest in (self.inputs, stored_inputs)

    def with_halves(self, draft: DraftHalf | None = None, signed: SignedHalf | None = None) -> PendingPair:
        """The pair with the given halves in place of the ones it holds."""
        return dataclasses.replace(self, draft=draft or self.draft, signed=signed or self.signed)

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        if self.draft is not None:
            out["draft"] = dataclasses.asdict(self.draft)
        if self.signed is not None:
            out["signed"] = dataclasses.asdict(self.signed)
        if self.scored_at is not None:
            out["scored_at"] = self.scored_at
        if self.inputs is not None:
            out["inputs"] = self.inputs
        return out

    @classmethod
    def from_dict(cls, entry: dict[str, Any] | None) -> PendingPair:
        """A table value (None: no entry); fields a half does not know are ignored."""
        entry = entry or {}
        return cls(_half(DraftHalf, entry.get("draft")), _half(SignedHalf, entry.get("signed")), entry.get("scored_at"),
                   entry.get("inputs"))


def _half(kind: type[Any], data: dict[str, Any] | None) -> Any:
    if data is None:
        return None
    names = {f.name for f in dataclasses.fields(kind)}
    return kind(**{k: v for k, v in data.items() if k in names})


def score(pair: PendingPair, at: float) -> tuple[PendingPair, ScoreRecord]:
    """Score a complete pair: the pair marked scored at ``at`` from its texts' digest, and its score record."""
    draft, signed = pair.draft, pair.signed
    if draft is None or signed is None:
        raise ValueError("a pair is scored once both halves are known")
    r = score_pair(draft.draft, signed.impression, signed.language)
    record = ScoreRecord(
        institution=signed.institution, accession=signed.accession, body_system=signed.body_system,
        language=signed.language, rouge1=r.rouge1, rouge2=r.rouge2, rougeL=r.rougeL, missed=r.missed, over=r.over,
        missed_concepts=r.missed_concepts, over_concepts=r.over_concepts,
        adapter_version=draft.adapter_version, signed_status=signed.status, created_at=at, system=draft.system,
    )
    return dataclasses.replace(pair, scored_at=at, inputs=inputs_of(draft, signed)), record
