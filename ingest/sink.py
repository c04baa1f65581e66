"""Where ingest puts events: Kafka for real, a list for unit tests (same interface)."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any, Protocol

from kernel.errors import BrokerError


class EventSink(Protocol):
    async def start(self) -> None: ...
    async def stop(self) -> None: ...
    async def publish(self, topic: str, key: str, value: bytes) -> None:
        """Return only once the record is durably stored; raise otherwise."""

    async def publish_many(self, records: list[tuple[str, str, bytes]]) -> None:
        """(topic, key, value) records, sent in order; returns once all are stored, raises otherwise."""


class KafkaSink:
    """aiokafka producer with acks=all and no idempotence (the embedded broker lacks it)."""

    def __init__(self, bootstrap_servers: str, timeout: float = 15.0) -> None:
        self.bootstrap_servers = bootstrap_servers
        self.timeout = timeout
        self._producer: Any = None  # an AIOKafkaProducer once started

    async def start(self) -> None:
        from aiokafka import AIOKafkaProducer

        self._producer = AIOKafkaProducer(
            bootstrap_servers=self.bootstrap_servers,
            acks="all",
            enable_idempotence=False,
            request_timeout_ms=int(self.timeout * 1000),
            linger_ms=2,
        )
        try:
            await self._producer.start()
        except Exception as exc:
            raise BrokerError(f"cannot reach the broker at {self.bootstrap_servers}: {exc}") from exc

    async def stop(self) -> None:
        if self._producer is not None:
            try:  # a broker that is gone would hold the flush for the whole request timeout
                await asyncio.wait_for(self._producer.stop(), self.timeout / 3)
            except TimeoutError:
                pass

    async def publish(self, topic: str, key: str, value: bytes) -> None:
        if self._producer is None:
            raise BrokerError("sink is not started")
        future = await self._producer.send(topic, value, key=key.encode())
        await asyncio.wait_for(future, self.timeout)

    async def publish_many(self, records: list[tuple[str, str, bytes]]) -> None:
        # one producer keeps one batch in flight per partition, so the order per key is the order sent
        if self._producer is None:
            raise BrokerError("sink is not started")
        futures = [await self._producer.send(topic, value, key=key.encode()) for topic, key, value in records]
        await asyncio.wait_for(asyncio.gather(*futures), self.timeout)


@dataclass
class ListSink:
    """Keeps records in memory; ``fail`` makes publish raise, as a broker outage would."""

    records: list[tuple[str, str, bytes]] = field(default_factory=list)
    fail: bool = False

    async def start(self) -> None:
        return None

    async def stop(self) -> None:
        return None

    async def publish(self, topic: str, key: str, value: bytes) -> None:
        if self.fail:
            raise BrokerError("broker unavailable")
        self.records.append((topic, key, value))

    async def publish_many(self, records: list[tuple[str, str, bytes]]) -> None:
        for record in records:
            await self.publish(*record)
