"""Property-based tests of the HL7 reader and the listener (hypothesis)."""

from __future__ import annotations

import asyncio

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ingest.hl7 import escape, parse, segment, unescape
from ingest.listener import IngestTopics, Listener
from ingest.mllp import ack_code
from ingest.sink import ListSink
from kernel.errors import HL7ParseError

TEXT = st.text(alphabet=st.characters(blacklist_categories=("Cs",), blacklist_characters="\r\n\x0b\x1c"), max_size=60)


@given(st.binary(max_size=400))
def test_arbitrary_bytes_parse_or_raise_parse_error(raw: bytes) -> None:
    try:
        parse(raw)
    except HL7ParseError:
        pass


@given(st.binary(max_size=300))
def test_arbitrary_bytes_after_msh_header(tail: bytes) -> None:
    try:
        parse(b"MSH|^~\\&|A|B|C|D|1||ORU^R01|1|P|2.5\r" + tail)
    except HL7ParseError:
        pass


@given(TEXT)
def test_escape_round_trip(text: str) -> None:
    assert unescape(escape(text)) == text


@given(findings=TEXT, exam=TEXT, accession=st.text(alphabet="ABC0123456789", min_size=1, max_size=12))
def test_field_values_survive_a_message_round_trip(findings: str, exam: str, accession: str) -> None:
    raw = "\r".join([
        segment("MSH", {3: "RIS", 4: "X", 9: "ORU^R01", 10: "1", 12: "2.5", 18: "UNICODE UTF-8"}),
        segment("OBR", {3: accession, 4: f"C^{escape(exam)}", 25: "F"}),
        segment("OBX", {1: "1", 2: "TX", 3: "18782-3", 5: escape(findings)}),
    ]).encode()
    msg = parse(raw)
    assert msg.text(msg.segment("OBR"), 4, 2) == exam
    assert msg.text(msg.segment("OBX"), 5) == findings
    assert msg.text(msg.segment("OBR"), 3) == accession


@settings(max_examples=150, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=300) | TEXT.map(lambda t: ("MSH|^~\\&|A|B|C|D|1||ORU^R01|1|P|2.5\rOBR|1||" + t).encode()))
def test_listener_always_answers_and_loses_nothing(raw: bytes) -> None:
    sink = ListSink()
    listener = Listener(sink, IngestTopics("r", "dlq"))
    answer = asyncio.run(listener.handle(raw, "peer"))
    assert ack_code(answer) in {"AA", "AE", "AR"}
    stats = listener.stats
    assert stats.accepted + stats.ignored + stats.dead_lettered == 1  # produced, ignored or dead-lettered
    assert len(sink.records) == stats.accepted + stats.dead_lettered


@given(st.lists(st.sampled_from([b"BHS|^~\\&", b"FHS|^~\\&", b"BTS|1", b"JUNK|1",
                                 b"MSH|^~\\&|A|B|C|D|1||ADT^A01|7|P|2.5", b"PID|1"]), max_size=8))
def test_batches_lose_nothing(segments: list[bytes]) -> None:
    raw = b"BHS|^~\\&\r" + b"\r".join(segments)
    sink = ListSink()
    listener = Listener(sink, IngestTopics("r", "dlq"))
    answer = asyncio.run(listener.handle(raw, "peer"))
    assert answer
    stats = listener.stats
    handled = stats.accepted + stats.ignored + stats.dead_lettered + stats.duplicates
    assert handled >= 1 and len(sink.records) == stats.accepted + stats.dead_lettered
    if any(s.startswith(b"JUNK") for s in segments) and not any(s.startswith(b"MSH") for s in segments):
        assert stats.dead_lettered == 1
