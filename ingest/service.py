"""The MLLP listener as a service: Kafka sink + listener pipeline + MLLP server."""

from __future__ import annotations

from dataclasses import dataclass

from ingest.listener import IngestTopics, Listener
from ingest.mllp import DEFAULT_MAX_FRAME, MLLPServer
from ingest.sink import EventSink, KafkaSink


@dataclass
class IngestService:
    server: MLLPServer
    listener: Listener
    sink: EventSink

    async def stop(self) -> None:
        await self.server.stop()
        await self.sink.stop()


async def start_ingest(
    host: str,
    port: int,
    topics: IngestTopics,
    bootstrap_servers: str | None = None,
    sink: EventSink | None = None,
    max_frame: int = DEFAULT_MAX_FRAME,
) -> IngestService:
    """Start the producer first: the listener accepts connections only once it can store."""
    if sink is None:
        if bootstrap_servers is None:
            raise ValueError("give bootstrap_servers or a sink")
        sink = KafkaSink(bootstrap_servers)
    await sink.start()
    listener = Listener(sink, topics)
    server = MLLPServer(listener.handle, host, port, max_frame=max_frame)
    await server.start()
    return IngestService(server, listener, sink)
