"""The coded values radflow reads and writes, each spelled once.

Every code is a ``StrEnum``: a member equals its HL7 or stored string (``ResultStatus.FINAL ==
"F"``), so rows, JSON and HL7 fields keep plain strings while code compares against names.
This module imports nothing of radflow, so any layer may use it; the lower layers (ingest/,
model/, storage/) take their settings as arguments from the composition root (radflow/cli,
streams/worker.py) rather than read them.
"""

from __future__ import annotations

import re
from enum import StrEnum


class ResultStatus(StrEnum):
    """OBR-25, the result status of a radiology report (HL7 v2 table 0123, the values radflow acts on)."""

    PRELIMINARY = "P"
    FINAL = "F"
    CORRECTED = "C"
    CANCELLED = "X"


#: A radiologist has signed these: they are the reference a draft is scored against.
SIGNED_STATUSES = frozenset({ResultStatus.FINAL, ResultStatus.CORRECTED})


class AckCode(StrEnum):
    """MSA-1 (HL7 v2 table 0008): original mode A*, enhanced mode (commit accept) C*."""

    ACCEPT = "AA"
    ERROR = "AE"
    REJECT = "AR"
    COMMIT_ACCEPT = "CA"
    COMMIT_ERROR = "CE"
    COMMIT_REJECT = "CR"


#: The receiver has the message (original or enhanced mode).
DELIVERED_ACKS = frozenset({AckCode.ACCEPT, AckCode.COMMIT_ACCEPT})
#: The receiver refuses the message; sending it again will not help.
REJECTED_ACKS = frozenset({AckCode.REJECT, AckCode.COMMIT_REJECT})
#: The enhanced-mode answer to give where original mode would answer the key.
COMMIT_OF = {AckCode.ACCEPT: AckCode.COMMIT_ACCEPT, AckCode.ERROR: AckCode.COMMIT_ERROR,
             AckCode.REJECT: AckCode.COMMIT_REJECT}


class Delivery(StrEnum):
    """Outcomes of sending a draft to a RIS besides the ACK code it answered."""

    UNROUTED = "unrouted"
    FAILED = "failed"


class AdapterStatus(StrEnum):
    """The life of a trained LoRA adapter version; ``CHAMPION`` is the one that serves."""

    CANDIDATE = "candidate"
    CHAMPION = "champion"
    RETIRED = "retired"  # was champion, replaced by a later one; a rollback may bring it back
    REJECTED = "rejected"  # lost the gate, or was rolled back: never chosen again


class DraftStatus(StrEnum):
    DRAFT = "draft"  # on the worklist until its signed report arrives
    SIGNED = "signed"  # its signed report arrived (storage.pending)
    RETRACTED = "retracted"  # the exam was cancelled (OBR-25 X)


class DraftGuard(StrEnum):
    """Why a draft's text is not the model's text as generated (stored and sent as ``guard``)."""

    NONE = ""  # used as generated
    RETRIED_EMPTY = "retried-empty"  # empty at first: generated again with sampling
    TRUNCATED_INPUT = "truncated-input"  # the findings were cut to fit the input limit
    STOPPED = "stopped"  # cut where the model began another report's labels
    REPETITION = "repetition"  # repeated words or sentences cut
    RETRIEVAL = "retrieval"  # still empty: the impression of the most similar signed case
    EMPTY = "empty"  # still empty, and no similar case to take


class AdapterChange(StrEnum):
    """What an adapters-topic event says happened to an adapter version."""

    PROMOTED = "promoted"
    ROLLED_BACK = "rolled-back"


class WorkerRole(StrEnum):
    """RADFLOW_WORKER_ROLE: which agents a worker runs."""

    ALL = "all"
    DRAFT = "draft"  # the model: drafting and adapter swaps
    QUALITY = "quality"  # pairing, scoring, drift, orders, worklist, dashboard

    @property
    def drafts(self) -> bool:
        return self in (WorkerRole.ALL, WorkerRole.DRAFT)

    @property
    def scores(self) -> bool:
        return self in (WorkerRole.ALL, WorkerRole.QUALITY)


class BodySystem(StrEnum):
    """The one body-system vocabulary: segments, mappings, the demo feed and evaluation use it."""

    CHEST = "chest"
    ABDOMEN = "abdomen"
    MUSCULOSKELETAL = "musculoskeletal"
    HEAD = "head"
    MAXILLOFACIAL_NECK = "maxillofacial_neck"
    OTHER = "other"  # the exam named no system radflow recognises


#: Every body system, as strings (mapping files name them).
BODY_SYSTEMS: tuple[str, ...] = tuple(BodySystem)
#: The systems an exam name can be classified into (all but OTHER).
CLASSIFIED_BODY_SYSTEMS: tuple[str, ...] = tuple(s for s in BodySystem if s is not BodySystem.OTHER)


class Language(StrEnum):
    ZH = "zh"
    EN = "en"


#: CJK Unified Ideographs: one of them makes a text Chinese.
CJK = re.compile(r"[\u4e00-\u9fff]")


def language_of(text: str) -> str:
    """``zh`` when the text holds a Chinese character, else ``en``."""
    return Language.ZH.value if CJK.search(text) else Language.EN.value
