"""The ingest pipeline behind the MLLP server: parse, map, clean, produce, then acknowledge.

AA is sent only after the broker acknowledged the produce. Input that cannot be read goes to the
dead-letter topic with its raw bytes (AE, or AR when rejected); ignored message types are
acknowledged without being produced.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass

from ingest.ack import ACCEPT, ERROR, REJECT, build_ack
from ingest.events import DeadLetter
from ingest.hl7 import HL7Message, parse
from ingest.reports import DEFAULT_MAPPING, FieldMapping, classify, to_report_event
from ingest.sink import EventSink
from radflow.errors import HL7ParseError, UnsupportedMessage

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class IngestTopics:
    reports: str
    dead_letter: str


@dataclass
class IngestStats:
    accepted: int = 0
    ignored: int = 0
    dead_lettered: int = 0
    errors: int = 0


class Listener:
    def __init__(
        self, sink: EventSink, topics: IngestTopics, mappings: dict[str, FieldMapping] | None = None
    ) -> None:
        self.sink = sink
        self.topics = topics
        self.mappings = mappings or {}
        self.stats = IngestStats()

    async def handle(self, raw: bytes, peer: str) -> bytes:
        msg: HL7Message | None = None
        try:
            msg = parse(raw)
            kind = classify(msg)
            if kind != "result":
                self.stats.ignored += 1
                log.debug("acknowledged %s message without processing", msg.message_type[0])
                return build_ack(msg, ACCEPT)
            institution = msg.text(msg.msh, 4, 1)
            event = to_report_event(msg, self.mappings.get(institution, DEFAULT_MAPPING))
        except UnsupportedMessage as exc:
            return await self._dead_letter(raw, msg, peer, exc, REJECT, exc.code)
        except HL7ParseError as exc:
            return await self._dead_letter(raw, msg, peer, exc, ERROR, exc.code)
        except Exception as exc:  # a mapping bug must not lose the message either
            log.exception("unexpected error reading a message from %s", peer)
            return await self._dead_letter(raw, msg, peer, exc, ERROR, "207")
        try:
            await self.sink.publish(self.topics.reports, event.key, event.to_json())
        except Exception as exc:
            self.stats.errors += 1
            log.warning("produce failed, answering AE: %s", type(exc).__name__)
            return build_ack(msg, ERROR, "207", "not stored: broker unavailable, retry later")
        self.stats.accepted += 1
        return build_ack(msg, ACCEPT)

    async def _dead_letter(
        self, raw: bytes, msg: HL7Message | None, peer: str, exc: Exception, code: str, error_code: str
    ) -> bytes:
        # The error text names the problem, never the content: it may reach logs and the sender.
        reason = f"{type(exc).__name__}: {exc}"
        letter = DeadLetter(raw=raw, error=reason, peer=peer, received_at=time.time())
        try:
            await self.sink.publish(self.topics.dead_letter, peer, letter.to_json())
        except Exception:
            self.stats.errors += 1
            log.warning("dead-letter produce failed; answering AE so the sender retries")
            return build_ack(msg, ERROR, "207", "not stored: broker unavailable, retry later")
        self.stats.dead_lettered += 1
        log.info("dead-lettered a message from %s: %s", peer, type(exc).__name__)
        return build_ack(msg, code, error_code, reason)
