"""MLLP transport (HL7 v2 Minimal Lower Layer Protocol, release 2): framing and an asyncio server.

A frame is START_BLOCK, the message, END_BLOCK, CARRIAGE_RETURN. Each connection is served in
order: the next frame is read only after the ACK of the last one is written, so a slow broker
slows the sender instead of filling memory.
"""

from __future__ import annotations

import asyncio
import logging
import ssl
from collections.abc import Awaitable, Callable

from kernel.errors import FramingError

START_BLOCK = b"\x0b"
END_BLOCK = b"\x1c"
CARRIAGE_RETURN = b"\x0d"
FRAME_END = END_BLOCK + CARRIAGE_RETURN

DEFAULT_MAX_FRAME = 1 << 20  # 1 MiB: radiology text is small; larger frames are refused
DEFAULT_IDLE_TIMEOUT = 300.0

log = logging.getLogger(__name__)

Handler = Callable[[bytes, str], Awaitable[bytes]]


def frame(message: bytes) -> bytes:
    return START_BLOCK + message + FRAME_END


async def read_frame(reader: asyncio.StreamReader) -> bytes | None:
    """The next message on the stream, or None at a clean end of stream.

    The reader's ``limit`` bounds the frame size; a longer frame raises :class:`FramingError`.
    """
    try:
        data = await reader.readuntil(FRAME_END)
    except asyncio.IncompleteReadError as exc:
        if exc.partial.strip():
            raise FramingError(f"connection closed inside a frame ({len(exc.partial)} bytes)") from None
        return None
    except asyncio.LimitOverrunError:
        raise FramingError("frame exceeds the size limit") from None
    start = data.find(START_BLOCK)
    if start < 0 or data[:start].strip():
        raise FramingError("bytes before the MLLP start block")
    return data[start + 1 : -len(FRAME_END)]


class MLLPServer:
    """Serves MLLP connections, handing each message to ``handler`` and writing back its ACK."""

    def __init__(
        self,
        handler: Handler,
        host: str,
        port: int,
        *,
        max_frame: int = DEFAULT_MAX_FRAME,
        idle_timeout: float = DEFAULT_IDLE_TIMEOUT,
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        self.handler = handler
        self.host, self.port = host, port
        self.max_frame = max_frame
        self.idle_timeout = idle_timeout
        self.ssl_context = ssl_context
        self._server: asyncio.base_events.Server | None = None
        self.connections = 0
        self._writers: set[asyncio.StreamWriter] = set()

    async def start(self) -> None:
        self._server = await asyncio.start_server(
            self._serve, self.host, self.port, limit=self.max_frame, ssl=self.ssl_context
        )
        sock = self._server.sockets[0]
        self.port = sock.getsockname()[1]
        log.info("MLLP listener on %s:%s", self.host, self.port)

    async def stop(self) -> None:
        """No new connections, and the open ones closed: a frame not yet acknowledged is sent again
        by its sender, never answered by a listener that is half stopped."""
        if self._server is not None:
            self._server.close()
            for writer in list(self._writers):
                writer.close()
            await self._server.wait_closed()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        peername = writer.get_extra_info("peername")
        peer = f"{peername[0]}:{peername[1]}" if peername else "unknown"
        self.connections += 1
        self._writers.add(writer)
        try:
            while True:
                try:
                    message = await asyncio.wait_for(read_frame(reader), self.idle_timeout)
                except TimeoutError:
                    log.info("closing idle MLLP connection from %s", peer)
                    return
                except FramingError as exc:
                    log.warning("closing MLLP connection from %s: %s", peer, exc)
                    return
                if message is None:
                    return
                ack = await self.handler(message, peer)
                if ack:  # enhanced mode may ask for no acknowledgement
                    writer.write(frame(ack))
                    await writer.drain()
        except (ConnectionError, asyncio.CancelledError):
            pass
        finally:
            self.connections -= 1
            self._writers.discard(writer)
            writer.close()


class MLLPClient:
    """A minimal MLLP client: one connection, one message at a time, each answered by an ACK."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, timeout: float) -> None:
        self.reader, self.writer, self.timeout = reader, writer, timeout

    @classmethod
    async def connect(cls, host: str, port: int, timeout: float = 30.0) -> MLLPClient:
        reader, writer = await asyncio.open_connection(host, port, limit=DEFAULT_MAX_FRAME)
        return cls(reader, writer, timeout)

    async def send(self, message: bytes) -> bytes:
        self.writer.write(frame(message))
        await self.writer.drain()
        ack = await asyncio.wait_for(read_frame(self.reader), self.timeout)
        if ack is None:
            raise FramingError("server closed the connection before acknowledging")
        return ack

    async def close(self) -> None:
        self.writer.close()


async def send_messages(host: str, port: int, messages: list[bytes], timeout: float = 30.0) -> list[bytes]:
    """Send each message in turn on one connection; return the ACKs."""
    client = await MLLPClient.connect(host, port, timeout)
    try:
        return [await client.send(m) for m in messages]
    finally:
        await client.close()


def ack_code(ack: bytes) -> str:
    """MSA-1 of an ACK ("AA", "AE", "AR"), or "??" when there is no MSA segment."""
    for segment in ack.replace(b"\n", b"\r").split(b"\r"):
        if segment.startswith(b"MSA"):
            return segment[4:6].decode("ascii", "replace")
    return "??"
