"""The synthetic reports as HL7 v2 ORU^R01 messages, and a feed that interleaves P and F results."""

from __future__ import annotations

import random
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta

from ingest.hl7 import escape, segment
from kernel.codes import AckCode, ResultStatus
from radflow.demodata.reports import INSTITUTIONS, DemoReport


def to_hl7(report: DemoReport, status: str, control_id: str, when: datetime) -> bytes:
    """An ORU^R01 for one report: status P carries findings only, F adds impression and signer."""
    style = next(s for s in INSTITUTIONS if s.code == report.institution)
    ts = when.strftime("%Y%m%d%H%M%S")
    msh = {3: "RIS", 4: style.code, 5: "RADFLOW", 6: "RADFLOW", 7: ts, 9: "ORU^R01^ORU_R01", 10: control_id,
           11: "P", 12: "2.5.1"}
    if style.enhanced_ack:
        msh.update({15: "AL", 16: "NE"})
    if style.charset:
        msh[18] = style.charset
    segs = [segment("MSH", msh)]
    segs.append(segment("PID", {1: "1", 3: f"SYN{zlib.crc32(report.accession.encode()) % 10**7:07d}^^^{style.code}^MR",
                                5: "DEMO^PATIENT"}))
    obr = {1: "1", 2: f"PL{report.accession}", 3: report.accession, 4: f"{report.exam_code}^{escape(report.exam)}^L",
           7: ts, 24: report.modality, 25: status}
    if status != ResultStatus.PRELIMINARY:
        obr[32] = report.signer
    segs.append(segment("OBR", obr))
    obx = []
    if style.layout == "narrative":
        lines = report.findings_raw.replace(style.findings_title, style.findings_title + "\n").split("\n")
        if status != ResultStatus.PRELIMINARY:
            lines += [""] + report.impression_raw.replace(style.impression_title, style.impression_title + "\n").split("\n")
        for line in lines:
            obx.append((style.findings_id, line))
    else:
        obx.append((style.findings_id, report.findings_raw))
        if status != ResultStatus.PRELIMINARY:
            obx.append((style.impression_id, report.impression_raw))
    for n, (ident, value) in enumerate(obx, start=1):
        segs.append(segment("OBX", {1: str(n), 2: "TX", 3: ident, 5: escape(value), 11: status}))
    return ("\r".join(segs) + "\r").encode(style.codec)


@dataclass(frozen=True)
class FeedItem:
    report: DemoReport
    status: str
    message: bytes


def expected_ack(report: DemoReport) -> str:
    """The acknowledgement code a stored message of this report's institution gets."""
    style = next(s for s in INSTITUTIONS if s.code == report.institution)
    return AckCode.COMMIT_ACCEPT if style.enhanced_ack else AckCode.ACCEPT


def feed(reports: list[DemoReport], seed: int = 7, max_lag: int = 12, control_prefix: str = "") -> Iterator[FeedItem]:
    """Preliminary results first, each signed result some messages later (sometimes before the
    draft is ready, so the scorer sees both orders)."""
    rng = random.Random(seed)
    start = datetime(2026, 1, 5, 8, 0, 0)
    events: list[tuple[float, int, DemoReport, str]] = []
    for pos, report in enumerate(reports):
        events.append((pos, 0, report, ResultStatus.PRELIMINARY))
        events.append((pos + rng.uniform(0.5, max_lag), 1, report, ResultStatus.FINAL))
    events.sort(key=lambda e: (e[0], e[1]))
    for n, (t, _, report, status) in enumerate(events):
        when = start + timedelta(minutes=t)
        yield FeedItem(report, status, to_hl7(report, status, f"{control_prefix}{report.institution}{n:07d}", when))
