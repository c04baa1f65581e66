"""HL7 batch and file envelopes (FHS/BHS … BTS/FTS): split into messages, answer with a batch."""

from __future__ import annotations

from datetime import UTC, datetime

_ENVELOPE = (b"FHS", b"BHS")
_TRAILER = (b"BTS", b"FTS", b"BHS", b"FHS")


def is_batch(raw: bytes) -> bool:
    return raw.lstrip(b"\xef\xbb\xbf\r\n ").startswith(_ENVELOPE)


def split_batch(raw: bytes) -> tuple[list[bytes], list[bytes]]:
    """(messages, stray segments) of a batch: each message runs from its MSH up to the next MSH
    or trailer; stray segments stand outside any message and must not vanish silently."""
    text = raw.replace(b"\r\n", b"\r").replace(b"\n", b"\r")
    messages: list[list[bytes]] = []
    stray: list[bytes] = []
    current: list[bytes] | None = None
    for seg in text.lstrip(b"\xef\xbb\xbf").split(b"\r"):
        if seg.startswith(b"MSH"):
            current = [seg]
            messages.append(current)
        elif seg.startswith(_TRAILER):
            current = None
        elif current is not None and seg:
            current.append(seg)
        elif seg.strip():
            stray.append(seg)
    return [b"\r".join(m) + b"\r" for m in messages], stray


def batch_response(acks: list[bytes], codec: str = "utf-8") -> bytes:
    """A batch of acknowledgements: BHS, one ACK per message that asked for one, BTS."""
    now = datetime.now(UTC).strftime("%Y%m%d%H%M%S")
    header = f"BHS|^~\\&|RADFLOW|RADFLOW|||{now}\r".encode(codec)
    body = b"".join(a if a.endswith(b"\r") else a + b"\r" for a in acks if a)
    return header + body + f"BTS|{sum(1 for a in acks if a)}\r".encode(codec)
