"""The MLLP listener as a service: Kafka sink + listener pipeline + MLLP server."""

from __future__ import annotations

import ssl
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ingest.forwarder import DoneCheck, Forwarder
from ingest.journal import Journal
from ingest.listener import IngestTopics, Listener
from ingest.mapping import FieldMapping
from ingest.mllp import DEFAULT_IDLE_TIMEOUT, DEFAULT_MAX_FRAME, MLLPServer
from ingest.sink import EventSink, KafkaSink
from kernel.errors import IngestError


@dataclass
class IngestService:
    server: MLLPServer
    listener: Listener
    sink: EventSink
    metrics_runner: Any = None
    forwarder: Forwarder | None = None

    async def serve_metrics(self, host: str, port: int) -> int:
        """Prometheus metrics at http://host:port/metrics (RADFLOW_INGEST_METRICS_PORT)."""
        from aiohttp import web

        from kernel.metrics import CONTENT_TYPE

        async def metrics(request: web.Request) -> web.Response:
            connections = f"# HELP radflow_ingest_connections Open MLLP connections.\n" \
                          f"# TYPE radflow_ingest_connections gauge\nradflow_ingest_connections {self.server.connections}\n"
            return web.Response(body=(self.listener.metrics.render() + connections).encode(),
                                headers={"Content-Type": CONTENT_TYPE})

        app = web.Application()
        app.router.add_get("/metrics", metrics)
        self.metrics_runner = web.AppRunner(app)
        await self.metrics_runner.setup()
        site = web.TCPSite(self.metrics_runner, host, port)
        await site.start()
        return int(self.metrics_runner.addresses[0][1])  # the bound port (port 0: the system chose)

    async def stop(self) -> None:
        """No new frames first; what the journal holds and the broker lacks is sent at the next start."""
        await self.server.stop()
        if self.metrics_runner is not None:
            await self.metrics_runner.cleanup()
        if self.forwarder is not None:
            await self.forwarder.stop()
        await self.sink.stop()
        if self.forwarder is not None:
            self.forwarder.journal.close()


async def start_ingest(
    host: str,
    port: int,
    topics: IngestTopics,
    bootstrap_servers: str | None = None,
    sink: EventSink | None = None,
    max_frame: int = DEFAULT_MAX_FRAME,
    mappings: dict[str, FieldMapping] | None = None,
    ssl_context: ssl.SSLContext | None = None,
    idle_timeout: float = DEFAULT_IDLE_TIMEOUT,
    journal: Journal | None = None,
    done: DoneCheck | None = None,
) -> IngestService:
    """Start the producer first: the listener accepts connections only once it can store. With a
    journal (opened), the forwarder sends on what an earlier run left in it before any new frame."""
    if sink is None:
        if bootstrap_servers is None:
            raise ValueError("give bootstrap_servers or a sink")
        sink = KafkaSink(bootstrap_servers)
    await sink.start()
    forwarder = None
    try:
        if journal is not None:
            forwarder = Forwarder(journal, sink, done)
            await forwarder.start()
        listener = Listener(sink, topics, mappings, journal=journal)
        if forwarder is not None:
            _journal_metrics(listener, forwarder)
        server = MLLPServer(
            listener.handle, host, port, max_frame=max_frame, idle_timeout=idle_timeout, ssl_context=ssl_context
        )
        await server.start()
    except BaseException:  # e.g. the port taken: stop what started; the journal keeps every entry
        if forwarder is not None:
            await forwarder.stop()
        await sink.stop()
        raise
    return IngestService(server, listener, sink, forwarder=forwarder)


def _journal_metrics(listener: Listener, forwarder: Forwarder) -> None:
    """The journal on /metrics: entries produced and released, and what it holds (read on scrape)."""
    from ingest.journal import read_stats

    stats, journal = forwarder.stats, forwarder.journal

    def held() -> list[tuple[dict[str, str], float]]:
        found = read_stats(journal.path, journal.max_bytes)
        if found is None:
            return []
        return [({"figure": "pending"}, found.pending), ({"figure": "oldest_pending_age_seconds"},
                found.oldest_pending_age), ({"figure": "live_bytes"}, found.live_bytes)]

    listener.metrics.counter("radflow_ingest_forwarded_total", "Journal entries produced to the broker, "
                             "and released once done downstream.",
                             lambda: [({"step": "produced"}, stats.produced), ({"step": "released"}, stats.released)])
    listener.metrics.gauge("radflow_ingest_journal", "The journal: entries acknowledged but not yet done "
                           "downstream, the oldest one's age, bytes in use.", held)


def tls_context(cert: str, key: str) -> ssl.SSLContext | None:
    """A server TLS context from PEM files (RADFLOW_MLLP_TLS_CERT / _KEY), or None when unset."""
    if not cert:
        return None
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    try:
        context.load_cert_chain(Path(cert), Path(key))
    except (OSError, ssl.SSLError) as exc:
        raise IngestError(f"RADFLOW_MLLP_TLS_CERT/RADFLOW_MLLP_TLS_KEY cannot be loaded: {exc}") from exc
    return context
