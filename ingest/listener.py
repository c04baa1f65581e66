"""The ingest pipeline behind the MLLP server: parse, map, clean, store, then acknowledge.

With a journal (ingest.journal, the default of `radflow serve` and `radflow ingest`), AA is sent
only once the message is committed and fsync'd there; the forwarder feeds the broker from it. A
journal that cannot take it (full disk, over its bound) answers AE/CE with an ERR text that says
so. Without a journal, AA is sent only after the broker acknowledged the produce. Input that
cannot be read goes to the dead-letter topic with its raw bytes (AE, or AR when rejected);
ignored message types are acknowledged without being stored. A message seen before (same MSH-4
and MSH-10) and stored is acknowledged again but not stored twice. Enhanced acknowledgement mode
(MSH-15 present) answers CA/CE/CR under the sender's AL/NE/ER/SU condition.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections import OrderedDict
from dataclasses import dataclass

from ingest.ack import ACCEPT, ERROR, REJECT, build_ack
from ingest.batch import batch_response, is_batch, split_batch
from ingest.events import DeadLetter, ReportEvent
from ingest.hl7 import HL7Message, parse
from ingest.journal import Entry, Journal, JournalError, JournalFull
from ingest.mapping import DEFAULT_MAPPING, FieldMapping
from ingest.reports import classify, to_order_event, to_report_event
from ingest.sink import EventSink
from kernel.codes import COMMIT_OF, AckCode
from kernel.errors import HL7ParseError, UnsupportedMessage
from kernel.metrics import Registry

log = logging.getLogger(__name__)

_COMMIT = COMMIT_OF  # enhanced mode (MSH-15 set): commit accept, error, reject
DEFAULT_DEDUP_WINDOW = 100_000


@dataclass(frozen=True)
class IngestTopics:
    reports: str
    dead_letter: str
    orders: str = ""


@dataclass
class IngestStats:
    accepted: int = 0
    ignored: int = 0
    duplicates: int = 0
    dead_lettered: int = 0
    errors: int = 0


class Listener:
    def __init__(
        self,
        sink: EventSink,
        topics: IngestTopics,
        mappings: dict[str, FieldMapping] | None = None,
        dedup_window: int = DEFAULT_DEDUP_WINDOW,
        dead_letter_failures: bool = True,
        journal: Journal | None = None,
    ) -> None:
        self.sink = sink
        self.journal = journal
        self._last_journal_warning = 0.0
        self.topics = topics
        self.mappings = mappings or {}
        self.stats = IngestStats()
        self.dedup_window = dedup_window
        self.dead_letter_failures = dead_letter_failures  # False when replaying the dead letters
        self._stored: OrderedDict[tuple[str, str], None] = OrderedDict()
        self.metrics = Registry()
        self.metrics.counter("radflow_ingest_messages_total", "Messages by outcome.",
                             lambda: [({"outcome": k}, v) for k, v in dataclasses.asdict(self.stats).items()])
        self.ack_seconds = self.metrics.histogram("radflow_ingest_ack_seconds",
                                                  "Seconds from a frame's arrival to its acknowledgement.")

    async def handle(self, raw: bytes, peer: str) -> bytes:
        """The response to one MLLP frame (empty when the sender asked for no acknowledgement)."""
        started = time.perf_counter()
        try:
            return await self._handle_frame(raw, peer)
        finally:
            self.ack_seconds.observe(time.perf_counter() - started)

    async def _handle_frame(self, raw: bytes, peer: str) -> bytes:
        if is_batch(raw):
            messages, stray = split_batch(raw)
            if messages:
                acks = [await self._handle_message(m, peer) for m in messages]
                if stray:  # keep what stood outside any message, with the whole batch for context
                    error = HL7ParseError(f"{len(stray)} segments outside any message in a batch")
                    acks.append(await self._dead_letter(raw, None, peer, error, ERROR, error.code))
                return batch_response(acks)
        return await self._handle_message(raw, peer)

    async def _handle_message(self, raw: bytes, peer: str) -> bytes:
        msg: HL7Message | None = None
        try:
            msg = parse(raw)
            kind = classify(msg)
            dedup_key = (msg.text(msg.msh, 4, 1), msg.control_id)
            if dedup_key[1] and dedup_key in self._stored:
                self.stats.duplicates += 1
                log.info("duplicate message from %s acknowledged without reprocessing", peer)
                return _answer(msg, ACCEPT)
            mapping = self.mappings.get(msg.text(msg.msh, 4, 1), DEFAULT_MAPPING)
            if kind == "result":
                event = to_report_event(msg, mapping)
                topic = self.topics.reports
            elif kind == "order" and self.topics.orders:
                event = to_order_event(msg, mapping)  # type: ignore[assignment]
                topic = self.topics.orders
            else:
                self.stats.ignored += 1
                log.debug("acknowledged %s message without processing", msg.message_type[0])
                return _answer(msg, ACCEPT)
        except UnsupportedMessage as exc:
            return await self._dead_letter(raw, msg, peer, exc, REJECT, exc.code)
        except HL7ParseError as exc:
            return await self._dead_letter(raw, msg, peer, exc, ERROR, exc.code)
        except Exception as exc:  # a mapping bug must not lose the message either
            log.exception("unexpected error reading a message from %s", peer)
            return await self._dead_letter(raw, msg, peer, exc, ERROR, "207")
        status = event.status if isinstance(event, ReportEvent) else "order"
        refusal = await self._store(Entry(event.message_id, topic, event.key, event.to_json(), raw, status,
                                          event.institution, event.accession, time.time()))
        if refusal is not None:
            return _answer(msg, ERROR, "207", refusal)
        self._remember(dedup_key)
        self.stats.accepted += 1
        return _answer(msg, ACCEPT)

    def _remember(self, key: tuple[str, str]) -> None:
        if not key[1]:
            return
        self._stored[key] = None
        if len(self._stored) > self.dedup_window:
            self._stored.popitem(last=False)

    async def _dead_letter(
        self, raw: bytes, msg: HL7Message | None, peer: str, exc: Exception, code: str, error_code: str
    ) -> bytes:
        # The error text names the problem, never the content: it may reach logs and the sender.
        reason = f"{type(exc).__name__}: {exc}"
        if not self.dead_letter_failures:
            return _answer(msg, code, error_code, reason)
        letter = DeadLetter(raw=raw, error=reason, peer=peer, received_at=time.time())
        refusal = await self._store(Entry("", self.topics.dead_letter, peer, letter.to_json(), raw,
                                          received_at=letter.received_at))  # status "": nothing downstream waits
        if refusal is not None:
            return _answer(msg, ERROR, "207", refusal)
        self.stats.dead_lettered += 1
        log.info("dead-lettered a message from %s: %s", peer, type(exc).__name__)
        return _answer(msg, code, error_code, reason)

    async def _store(self, entry: Entry) -> str | None:
        """None once ``entry`` is stored (in the journal; without one, in the broker), else the
        ERR text for the sender."""
        if self.journal is not None:
            return await self._journal(entry)
        try:
            await self.sink.publish(entry.topic, entry.key, entry.value)
            return None
        except Exception as exc:
            self.stats.errors += 1
            log.warning("produce failed, answering AE: %s", type(exc).__name__)
            return "not stored: broker unavailable, retry later"

    async def _journal(self, entry: Entry) -> str | None:
        """None once ``entry`` is on disk; else the ERR text for the sender (and an ERROR line
        that says what to do, at most every 10 s; no message content)."""
        assert self.journal is not None
        try:
            await self.journal.append(entry)
            return None
        except JournalError as exc:
            self.stats.errors += 1
            full = isinstance(exc, JournalFull)
            if time.monotonic() - self._last_journal_warning > 10:
                self._last_journal_warning = time.monotonic()
                log.error("answering AE: %s. %s", exc,
                          "Downstream is behind or stopped: check the worker and `radflow journal`, or raise "
                          "RADFLOW_JOURNAL_MAX_BYTES" if full else
                          f"Free disk space under {self.journal.path.parent} (or fix the file system); senders retry")
            return "not stored: receiver journal full, retry later" if full else \
                "not stored: receiver cannot write its journal (disk full?), retry later"


def _answer(msg: HL7Message | None, code: str, error_code: str = "", error_text: str = "") -> bytes:
    """Original mode: AA/AE/AR always. Enhanced mode (MSH-15 set): CA/CE/CR when the sender's
    condition (AL always, NE never, ER on error, SU on success) asks for one, else nothing."""
    condition = msg.field(msg.msh, 15).upper() if msg is not None else ""
    if not condition:
        return build_ack(msg, code, error_code, error_text)
    ok = code == ACCEPT
    if condition == "NE" or (condition == "ER" and ok) or (condition == "SU" and not ok):
        return b""
    return build_ack(msg, _COMMIT[AckCode(code)], error_code, error_text)
