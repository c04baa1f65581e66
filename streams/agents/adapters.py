"""Adapter hot swap: every draft worker serves the champions in storage, and swaps when the
adapters topic announces a promotion or a rollback (of an adapter, or of a segment's drafting
system: model.systems, whose events name ``systems``).

A task, not an agent: an agent reads in the worker's consumer group, so only one drafter would
hear each promotion. This reads with no group, from the latest offset, and on any event asks
storage what serves (the record says what changed; storage says what serves).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Mapping
from concurrent.futures import Executor
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

import faust

from model.adapters import AdapterSpec, serving_specs
from storage.repository import Repository
from streams.records import AdapterEvent
from streams.stats import Stats

log = logging.getLogger(__name__)
RETRY_SECONDS = 5.0


@runtime_checkable
class SwappingDrafter(Protocol):
    """A drafter that serves LoRA adapters (ModelDrafter); the others serve none."""

    def set_adapters(self, wanted: Mapping[str, AdapterSpec]) -> list[str]: ...


@dataclass(frozen=True)
class AdapterDeps:
    drafter: SwappingDrafter
    repository: Repository
    model_thread: Executor  # the drafter's own thread: a swap lands between two batches
    stats: Stats
    bootstrap_servers: str = ""
    topic: str = ""
    consumer: Callable[[], Any] | None = None  # AIOKafkaConsumer factory; tests pass their own


@runtime_checkable
class ChoosingDrafter(Protocol):
    """A drafter that serves a system per segment (model.systems.SegmentRouter)."""

    def set_champions(self, champions: Mapping[tuple[str, str], str]) -> list[str]: ...


async def swap(deps: AdapterDeps, reason: str) -> list[str]:
    """Serve the champions in storage (adapters, and each segment's system); returns what changed."""
    wanted = await asyncio.to_thread(lambda: serving_specs(deps.repository.champions()))  # database and files
    loop = asyncio.get_running_loop()
    changes = await loop.run_in_executor(deps.model_thread, deps.drafter.set_adapters, wanted)
    if isinstance(deps.drafter, ChoosingDrafter):  # the gate announces its choices on the same topic
        systems = await asyncio.to_thread(deps.repository.system_champions)
        changes += await loop.run_in_executor(deps.model_thread, deps.drafter.set_champions, systems)
    deps.stats["adapter_swaps"] += len(changes)
    log.info("adapters checked (%s): %d changed", reason, len(changes))
    return changes


def _consumer(deps: AdapterDeps) -> Any:
    if deps.consumer is not None:
        return deps.consumer()
    from aiokafka import AIOKafkaConsumer

    return AIOKafkaConsumer(deps.topic, bootstrap_servers=deps.bootstrap_servers, group_id=None,
                            auto_offset_reset="latest", enable_auto_commit=False)


async def watch(deps: AdapterDeps, should_stop: Callable[[], bool]) -> None:
    """Swap at start, then on every adapter event until ``should_stop``."""
    await swap(deps, "start")
    while not should_stop():
        consumer = _consumer(deps)
        try:
            await consumer.start()
            while not should_stop():
                found = await consumer.getmany(timeout_ms=1000)
                messages = [m for ms in found.values() for m in ms]
                if messages:  # whatever an event says, storage says what serves
                    await swap(deps, _describe(messages))
        except Exception as exc:  # the broker went away: keep serving, watch again shortly
            log.warning("adapter events unreadable (%s); retrying in %.0f s", type(exc).__name__, RETRY_SECONDS)
            await asyncio.sleep(RETRY_SECONDS)
        finally:
            await consumer.stop()


def _describe(messages: list[Any]) -> str:
    try:
        return ", ".join(f"{e.name}/{e.version} {e.event}" for e in (AdapterEvent.from_json(m.value) for m in messages))
    except (ValueError, TypeError, KeyError):
        return "adapter event"


def adapter_task(app: faust.App, deps: AdapterDeps) -> Any:
    async def watch_adapters() -> None:
        await watch(deps, lambda: bool(app.should_stop))

    return app.task(watch_adapters)
