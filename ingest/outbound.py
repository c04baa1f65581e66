"""HL7 that radflow sends: a machine draft back to the RIS worklist as a preliminary ORU^R01."""

from __future__ import annotations

import itertools
import time
from datetime import UTC, datetime

from ingest.hl7 import escape, segment

DRAFT_OBSERVATION = "RADFLOW-DRAFT^Machine draft impression^L"
DRAFT_METHOD = "RADFLOW^Machine-generated draft, not reviewed^L"
SYSTEM_NOTE = "Drafting system: "  # NTE-3 prefix of the note naming the serving system
_counter = itertools.count(1)


def draft_oru(institution: str, accession: str, impression: str, model_id: str, charset: str = "UNICODE UTF-8",
              system: str = "") -> bytes:
    """OBR-25 = P; the impression in an OBX whose identifier and method (OBX-17) mark it as a
    machine draft, status P, so no RIS can mistake it for a signed result. A second NTE names
    the serving system that drafted it (model.systems), so the RIS can show or audit it."""
    now = datetime.now(UTC).strftime("%Y%m%d%H%M%S")
    control = f"RFD{int(time.time() * 1000)}{next(_counter) % 10000:04d}"
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
