"""Signed cases as the drafter sees them: what a retrieval index must offer.

``model.retrieval.CaseIndex`` implements ``CaseSource``; the drafter and the draft agent know only
this protocol, so model.drafter and model.retrieval no longer import each other.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol


@dataclass(frozen=True)
class Case:
    key: str  # accession, so a report never retrieves itself
    findings: str
    impression: str


class CaseSource(Protocol):
    def add(self, institution: str, accession: str, findings: str, impression: str) -> None: ...

    def similar(self, institution: str, findings: str, k: int, exclude: str = "") -> list[Case]: ...
