"""From a parsed ORU^R01 to a :class:`ReportEvent`: which OBX carry findings and impression,
the body system from OBR-4, the status from OBR-25.
"""

from __future__ import annotations

import re
import time

from ingest.clean import clean_text, language_of
from ingest.events import OrderEvent, ReportEvent
from ingest.hl7 import HL7Message
from ingest.mapping import DEFAULT_MAPPING, FieldMapping
from kernel.codes import BodySystem, ResultStatus
from kernel.errors import HL7ParseError, UnsupportedMessage

#: Message types acknowledged without processing (nothing for radflow to draft in them).
IGNORED_TYPES = frozenset({"ADT", "ACK", "SIU", "MDM", "DFT", "BAR", "QRY", "QBP", "RSP", "MFN", "VXU"})
#: Orders: read into an OrderEvent, which registers the accession and its exam before the
#: result arrives (streams/agents/orders.py).
ORDER_TYPES = frozenset({"ORM", "OMI", "OMG", "OML", "ORL", "OMP", "RDE"})
SUPPORTED_VERSIONS = ("2.",)  # an empty MSH-12 is read as v2 too, as Mirth and HAPI do

# Order matters: spine before neck (颈椎 is musculoskeletal, 颈部 is neck).
_BODY_SYSTEM_RULES: tuple[tuple[str, str], ...] = (
    ("musculoskeletal", r"椎|膝|肩|髋|踝|腕|肘|骨|关节|spine|spinal|lumbar|knee|shoulder|hip|ankle|wrist|elbow|bone|joint|msk"),
    ("maxillofacial_neck", r"颌|面|颈|鼻|咽|喉|甲状腺|眼眶|腮腺|neck|sinus|orbit|facial|face|maxill|thyroid|larynx|pharynx"),
    ("head", r"头|颅|脑|head|brain|skull|cranial"),
    ("chest", r"胸|肺|心|纵隔|chest|thorax|thoracic|lung|pulmonary|cardiac"),
    ("abdomen", r"腹|肝|胆|胰|脾|肾|盆|abdomen|abdominal|pelvis|pelvic|liver|pancrea|kidney|renal"),
)
MAX_TEXT = 32_000  # characters of findings or impression; a radiology report is a few thousand
MAX_ID = 64  # characters of an institution or accession identifier
_MODALITIES = ("CT", "MR", "CR", "DX", "US", "XA", "MG", "NM", "PT", "RF")



_FINDINGS_HEAD = re.compile(r"^\s*(?:【(?:检查所见|影像所见|影像表现)】|(?:影像所见|检查所见)\s*[:：]|FINDINGS?\s*:)", re.IGNORECASE)
_IMPRESSION_HEAD = re.compile(
    r"^\s*(?:【(?:诊断意见|影像诊断|印象|结论)】|(?:诊断意见|影像诊断|印象|结论)\s*[:：]|(?:IMPRESSIONS?|CONCLUSIONS?)\s*:)",
    re.IGNORECASE,
)


def classify(msg: HL7Message) -> str:
    """'result', 'order' or 'ignored'. Raises :class:`UnsupportedMessage` for what is rejected (AR)."""
    mtype, _trigger = msg.message_type
    if msg.version and not msg.version.startswith(SUPPORTED_VERSIONS):
        raise UnsupportedMessage(f"unsupported HL7 version {msg.version!r}", code="203")
    if mtype == "ORU":
        return "result"
    if mtype in ORDER_TYPES:
        return "order"
    if mtype in IGNORED_TYPES or mtype.startswith("Z"):
        return "ignored"
    raise UnsupportedMessage(f"unsupported message type {mtype!r}", code="200")


def body_system_of(exam: str) -> str:
    lowered = exam.lower()
    for system, pattern in _BODY_SYSTEM_RULES:
        if re.search(pattern, lowered):
            return system
    return BodySystem.OTHER.value


def modality_of(msg: HL7Message, obr: tuple[str, ...], exam: str) -> str:
    for value in (msg.field(obr, 24), msg.field(obr, 4, 1)):
        head = value.upper()[:2]
        if head in _MODALITIES:
            return head
    for word in re.findall(r"[A-Za-z]+", exam):
        if word.upper()[:2] in _MODALITIES and len(word) <= 3:
            return word.upper()[:2]
    return ""


def to_report_event(msg: HL7Message, mapping: FieldMapping = DEFAULT_MAPPING) -> ReportEvent:
    """The report of an ORU^R01 (its first OBR and the OBX that follow it)."""
    obr = msg.segment("OBR")
    if obr is None:
        raise HL7ParseError("ORU without an OBR segment", code="100")
    institution = msg.text(msg.msh, 4, 1) or msg.text(msg.msh, 3, 1)
    accession = msg.text(obr, 3, 1) or msg.text(obr, 2, 1)
    _check_ids(institution, accession, "OBR-3 and OBR-2 (accession) are empty")
    exam = msg.text(obr, 4, 2) or msg.text(obr, 4, 1)
    findings_parts: list[str] = []
    impression_parts: list[str] = []
    loose: list[str] = []
    statuses: list[str] = []
    for obx in _obx_of_first_obr(msg):
        ident = {msg.text(obx, 3, 1).upper(), msg.text(obx, 3, 2).upper()} - {""}
        value = "\n".join(msg.repetitions(obx, 5))
        statuses.append(msg.field(obx, 11))
        if ident & mapping.findings_ids:
            findings_parts.append(value)
        elif ident & mapping.impression_ids:
            impression_parts.append(value)
        elif msg.field(obx, 2) in ("TX", "FT", "ST", ""):
            loose.append(value)
    if not findings_parts and not impression_parts and loose:
        findings_parts, impression_parts = _split_by_headings("\n".join(loose))
    findings_raw = "\n".join(findings_parts).strip()
    impression_raw = "\n".join(impression_parts).strip()
    if len(findings_raw) > MAX_TEXT or len(impression_raw) > MAX_TEXT:
        raise HL7ParseError(f"findings or impression longer than {MAX_TEXT} characters", code="102")
    status = (msg.field(obr, 25) or next((s for s in statuses if s), "") or ResultStatus.FINAL).upper()[:1]
    return ReportEvent(
        institution=institution,
        accession=accession,
        status=status,
        exam=exam,
        exam_code=msg.text(obr, 4, 1),
        body_system=mapping.body_systems.get(msg.text(obr, 4, 1)) or body_system_of(f"{exam} {msg.text(obr, 4, 1)}"),
        modality=modality_of(msg, obr, exam),
        findings=clean_text(findings_raw, mapping.boilerplate),
        impression=clean_text(impression_raw, mapping.boilerplate),
        language=language_of(findings_raw + impression_raw),
        signer=msg.text(obr, 32, 1),
        message_control_id=msg.control_id,
        sending_application=msg.text(msg.msh, 3, 1),
        observed_at=msg.text(obr, 7),
        findings_raw=findings_raw,
        impression_raw=impression_raw,
        received_at=time.time(),
    )


def _check_ids(institution: str, accession: str, no_accession: str) -> None:
    """Every event is keyed by (institution, accession): both present, both bounded."""
    if not institution:
        raise HL7ParseError("MSH-4 (sending facility) is empty", code="101")
    if not accession:
        raise HL7ParseError(no_accession, code="101")
    if len(institution) > MAX_ID or len(accession) > MAX_ID:
        raise HL7ParseError(f"sending facility or accession longer than {MAX_ID} characters", code="102")


def _obx_of_first_obr(msg: HL7Message) -> list[tuple[str, ...]]:
    out, inside = [], False
    for seg in msg.segments:
        if seg[0] == "OBR":
            if inside:
                break
            inside = True
        elif seg[0] == "OBX" and inside:
            out.append(seg)
    return out


def _split_by_headings(text: str) -> tuple[list[str], list[str]]:
    """One narrative with FINDINGS:/IMPRESSION: (or 【检查所见】/【诊断意见】) headings."""
    findings: list[str] = []
    impression: list[str] = []
    target = findings
    for line in text.split("\n"):
        if _IMPRESSION_HEAD.match(line):
            target = impression
        elif _FINDINGS_HEAD.match(line):
            target = findings
        target.append(line)
    return findings, impression


def to_order_event(msg: HL7Message, mapping: FieldMapping = DEFAULT_MAPPING) -> OrderEvent:
    """An imaging order (ORM^O01 / OMI^O23): registers the accession before any result."""
    obr, orc = msg.segment("OBR"), msg.segment("ORC")
    institution = msg.text(msg.msh, 4, 1) or msg.text(msg.msh, 3, 1)
    accession = (msg.text(obr, 3, 1) or msg.text(orc, 3, 1) or msg.text(obr, 18, 1)
                 or msg.text(obr, 2, 1) or msg.text(orc, 2, 1))
    _check_ids(institution, accession, "order has no filler or placer number (OBR-3, ORC-3, OBR-18, OBR-2, ORC-2)")
    exam = msg.text(obr, 4, 2) or msg.text(obr, 4, 1)
    code = msg.text(obr, 4, 1)
    return OrderEvent(
        institution=institution,
        accession=accession,
        exam=exam,
        exam_code=code,
        body_system=mapping.body_systems.get(code) or body_system_of(f"{exam} {code}"),
        modality=modality_of(msg, obr, exam) if obr else "",
        order_control=msg.text(orc, 1),
        message_control_id=msg.control_id,
        received_at=time.time(),
    )
