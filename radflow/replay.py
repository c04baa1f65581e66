"""``radflow replay``: a corpus of signed reports sent as HL7 ORU^R01 over MLLP, as a RIS would.

Each report is one exam (one accession): a preliminary result (OBR-25 ``P``) with the findings,
then the final one (``F``) with findings and impression. When the final goes out:

- ``after-draft``: once that exam's draft is back. The replay then plays the RIS end of the
  worklist too: it listens on ``watch_port`` (point ``RADFLOW_WORKLIST_ROUTES`` at it) and
  takes each draft ORU^R01 radflow sends there as the sign that the draft is ready. Without a
  watch port, the final follows its preliminary after ``delay`` seconds;
- ``at-end``: every preliminary first, then (once every draft is back, or after ``delay``) every
  final: each exam is drafted from the cases signed before the replay began, exactly what
  ``radflow eval`` measures on the same split;
- ``none``: preliminaries only.

``connections`` MLLP connections send at once (one exam at a time each). MSH-18 is
``UNICODE UTF-8`` for text beyond ASCII (Chinese reports), empty otherwise. Works against any
MLLP listener; the ACK codes are tallied.
"""

from __future__ import annotations

import asyncio
import time
import zlib
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Literal

from ingest.ack import ACCEPT, build_ack
from ingest.hl7 import escape, parse, segment
from ingest.mllp import MLLPClient, MLLPServer, ack_code
from kernel.codes import ResultStatus
from radflow.archive import served
from training import dataset as ds

Finals = Literal["after-draft", "at-end", "none"]
FINDINGS_ID = "18782-3^Findings^LN"
IMPRESSION_ID = "19005-8^Impression^LN"


def to_oru(e: ds.Example, status: str, control_id: str, when: datetime | None = None) -> bytes:
    """One report as an ORU^R01: findings always, the impression and signer once final."""
    s = served(e)
    ts = (when or datetime.now(UTC)).strftime("%Y%m%d%H%M%S")
    final = status != ResultStatus.PRELIMINARY
    text = e.findings + (e.impression if final else "")
    msh = {3: "REPLAY", 4: escape(e.institution), 5: "RADFLOW", 6: "RADFLOW", 7: ts, 9: "ORU^R01^ORU_R01",
           10: control_id, 11: "P", 12: "2.5.1"}
    if not text.isascii():
        msh[18] = "UNICODE UTF-8"
    obr = {1: "1", 2: f"PL{s.accession}", 3: s.accession, 4: f"^{escape(s.exam)}" if s.exam else "", 7: ts, 25: status}
    if final:
        obr[32] = "REPLAY^SIGNER"
    segs = [segment("MSH", msh), segment("PID", {1: "1", 3: f"R{zlib.crc32(s.accession.encode()):010d}^^^REPLAY^MR"}),
            segment("OBR", obr), segment("OBX", {1: "1", 2: "TX", 3: FINDINGS_ID, 5: escape(e.findings), 11: status})]
    if final:
        segs.append(segment("OBX", {1: "2", 2: "TX", 3: IMPRESSION_ID, 5: escape(e.impression), 11: status}))
    return ("\r".join(segs) + "\r").encode("utf-8")


class DraftWatch:
    """The RIS end of the worklist: an MLLP server that acknowledges each draft radflow sends and
    marks its exam's draft as back."""

    def __init__(self, host: str, port: int) -> None:
        self.server = MLLPServer(self._handle, host, port)
        self.back: dict[tuple[str, str], float] = {}
        self._events: dict[tuple[str, str], asyncio.Event] = {}
        self.systems: Counter[str] = Counter()  # the serving system each draft names (its NTE)

    def event(self, institution: str, accession: str) -> asyncio.Event:
        return self._events.setdefault((institution, accession), asyncio.Event())

    async def _handle(self, message: bytes, peer: str) -> bytes:
        msg = parse(message)
        obr = msg.segment("OBR")
        key = (msg.text(msg.msh, 6, 1), msg.text(obr, 3, 1))  # draft_oru: MSH-6 is the institution
        for nte in msg.all("NTE"):
            note = msg.text(nte, 3)
            if note.startswith("Drafting system: "):
                self.systems[note.removeprefix("Drafting system: ")] += 1
        self.back.setdefault(key, time.monotonic())
        self.event(*key).set()
        return build_ack(msg, ACCEPT)


@dataclass
class Tally:
    acks: Counter[tuple[str, str]] = field(default_factory=Counter)  # (status, ACK code) -> count
    errors: int = 0
    drafts_back: int = 0
    waited_out: int = 0  # finals sent after the delay because no draft came back in time
    seconds: float = 0.0
    first_sent: float = 0.0
    last_draft: float = 0.0

    def line(self) -> str:
        acks = ", ".join(f"{status} {code}: {n}" for (status, code), n in sorted(self.acks.items()))
        rate = ""
        if self.drafts_back and self.last_draft > self.first_sent:
            rate = f"; {self.drafts_back / (self.last_draft - self.first_sent):.2f} drafts/s"
        return (f"ACKs {acks or 'none'}; {self.errors} send errors; {self.drafts_back} drafts back, "
                f"{self.waited_out} finals sent without their draft; {self.seconds:.1f} s{rate}")


@dataclass
class Replay:
    host: str
    port: int
    connections: int = 4
    finals: Finals = "after-draft"
    delay: float = 2.0  # seconds: finals without a watch, or the longest wait for a draft with one
    watch: DraftWatch | None = None
    timeout: float = 30.0
    progress: bool = True
    tally: Tally = field(default_factory=Tally)

    async def run(self, examples: Sequence[ds.Example]) -> Tally:
        from tqdm.auto import tqdm

        started = time.monotonic()
        self.tally.first_sent = started
        bars = {"P": tqdm(total=len(examples), desc="preliminary", unit="msg", disable=not self.progress),
                "F": tqdm(total=0 if self.finals == "none" else len(examples), desc="final", unit="msg",
                          disable=not self.progress)}
        try:
            if self.finals == "at-end":
                await self._each(examples, lambda e, c: self._send(c, e, ResultStatus.PRELIMINARY, bars))
                await asyncio.gather(*(self._wait_draft(e, self.delay) for e in examples))
                await self._each(examples, lambda e, c: self._send(c, e, ResultStatus.FINAL, bars))
            else:
                await self._each(examples, lambda e, c: self._exam(c, e, bars))
        finally:
            for bar in bars.values():
                bar.close()
        self.tally.seconds = time.monotonic() - started
        if self.watch is not None:
            self.tally.drafts_back = len(self.watch.back)
            self.tally.last_draft = max(self.watch.back.values(), default=0.0)
        return self.tally

    async def _each(self, examples: Sequence[ds.Example], step) -> None:  # noqa: ANN001
        queue: asyncio.Queue[ds.Example] = asyncio.Queue()
        for e in examples:
            queue.put_nowait(e)

        async def connection() -> None:
            client = await MLLPClient.connect(self.host, self.port, self.timeout)
            try:
                while not queue.empty():
                    await step(queue.get_nowait(), client)
            finally:
                await client.close()

        await asyncio.gather(*(connection() for _ in range(max(1, min(self.connections, len(examples))))))

    async def _exam(self, client: MLLPClient, e: ds.Example, bars: dict) -> None:
        await self._send(client, e, ResultStatus.PRELIMINARY, bars)
        if self.finals == "none":
            return
        if self.watch is None:
            await asyncio.sleep(self.delay)
        else:
            await self._wait_draft(e, self.delay)
        await self._send(client, e, ResultStatus.FINAL, bars)

    async def _wait_draft(self, e: ds.Example, limit: float) -> None:
        if self.watch is None:
            await asyncio.sleep(limit)
            return
        try:
            await asyncio.wait_for(self.watch.event(e.institution, served(e).accession).wait(), limit)
        except TimeoutError:
            self.tally.waited_out += 1

    async def _send(self, client: MLLPClient, e: ds.Example, status: str, bars: dict) -> None:
        control = f"RP{status}{time.time_ns() % 10**12:012d}{id(e) % 1000:03d}"
        try:
            code = ack_code(await client.send(to_oru(e, status, control)))
        except (OSError, TimeoutError) as exc:
            self.tally.errors += 1
            code = type(exc).__name__
        self.tally.acks[(status, code)] += 1
        bars[status].update(1)
