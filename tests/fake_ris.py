"""A fake RIS for the worklist tests: a real MLLP server on loopback that answers every message
with an ACK and keeps what it received, so a test can read the ORU^R01 drafts the RIS got."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field

from ingest.ack import ACCEPT, build_ack
from ingest.hl7 import parse
from ingest.mllp import MLLPServer

#: ERR-3 code for an AE / AR answer: 207 "application internal error" (HL7 table 0357).
BUSY_ERROR_CODE = "207"


@dataclass
class FakeRIS:
    """The server and the messages it received, in order."""

    server: MLLPServer
    received: list[bytes] = field(default_factory=list)

    @property
    def port(self) -> int:
        return self.server.port


@contextlib.asynccontextmanager
async def fake_ris(codes: Sequence[str] = (ACCEPT,), port: int = 0) -> AsyncIterator[FakeRIS]:
    """A RIS on a loopback port (a free one by default) answering ``codes`` in turn (the last one
    repeats; AA by default); an AE or AR carries ERR 207 "busy". Stopped when the block ends."""
    received: list[bytes] = []

    async def handle(message: bytes, peer: str) -> bytes:
        received.append(message)
        code = codes[min(len(received), len(codes)) - 1]
        if code == ACCEPT:
            return build_ack(parse(message), code)
        return build_ack(parse(message), code, BUSY_ERROR_CODE, "busy")

    server = MLLPServer(handle, "127.0.0.1", port)
    await server.start()
    try:
        yield FakeRIS(server, received)
    finally:
        await server.stop()


def control_ids(messages: Sequence[bytes]) -> list[str]:
    """MSH-10 of each message a fake RIS received."""
    return [parse(m).control_id for m in messages]
