"""HL7 that radflow sends: a machine draft back to the RIS worklist as a preliminary ORU^R01."""

from __future__ import annotations

import hashlib
import itertools
import time
from datetime import UTC, datetime

from ingest.hl7 import escape, segment

DRAFT_OBSERVATION = "RADFLOW-DRAFT^Machine draft impression^L"
DRAFT_METHOD = "RADFLOW^Machine-generated draft, not reviewed^L"
SYSTEM_NOTE = "Drafting system: "  # NTE-3 prefix of the note naming the serving system
_counter = itertools.count(1)


def draft_control_id(institution: str, accession: str, impression: str, created_at: float) -> str:
    """MSH-10 of a draft's ORU: the same on every send of one draft, so a RIS can tell a re-send
    (after a lost ACK, or a restart) from a new draft. 20 characters, MSH-10's length in v2.5."""
    digest = hashlib.sha256(f"{institution}|{accession}|{created_at!r}|{impression}".encode()).hexdigest()
    return "RFD" + digest[:17].upper()


def draft_oru(institution: str, accession: str, impression: str, model_id: str, charset: str = "UNICODE UTF-8",
              control_id: str = "", system: str = "") -> bytes:
    """OBR-25 = P; the impression in an OBX whose identifier and method (OBX-17) mark it as a
    machine draft, status P, so no RIS can mistake it for a signed result. ``control_id``: MSH-10
    (``draft_control_id``); a fresh one when empty. A second NTE names the serving system that
    drafted it (model.systems), so the RIS can show or audit it."""
    now = datetime.now(UTC).strftime("%Y%m%d%H%M%S")
    control = control_id or f"RFD{int(time.time() * 1000)}{next(_counter) % 10000:04d}"
    segments = [
        segment("MSH", {3: "RADFLOW", 4: "RADFLOW", 5: "RIS", 6: escape(institution), 7: now, 9: "ORU^R01^ORU_R01",
                        10: control, 11: "P", 12: "2.5.1", 18: charset}),
        segment("OBR", {1: "1", 3: escape(accession), 4: "RADFLOW^Draft impression^L", 7: now, 25: "P"}),
        segment("OBX", {1: "1", 2: "TX", 3: DRAFT_OBSERVATION, 5: escape(impression), 11: "P", 14: now,
                        17: DRAFT_METHOD}),
        segment("NTE", {1: "1", 3: escape(f"Draft by {model_id}; requires radiologist review")}),
    ]
    if system:
        segments.append(segment("NTE", {1: "2", 3: escape(f"{SYSTEM_NOTE}{system}")}))
    codec = "gb18030" if charset.upper().startswith("GB") else "utf-8"
    return ("\r".join(segments) + "\r").encode(codec)
