"""The order agent: imaging orders (ORM/OMI) registered in storage before their result arrives."""

from __future__ import annotations

import asyncio
import dataclasses
import json
from dataclasses import dataclass
from typing import Any

import faust

from ingest.events import OrderEvent
from storage.processed import ORDER, processed
from storage.repository import Repository
from storage.tables import OrderRow
from streams.agents import one_at_a_time


@dataclass(frozen=True)
class OrderDeps:
    repository: Repository


def order_row(order: OrderEvent) -> OrderRow:
    fields = OrderRow.model_fields
    return OrderRow(**{k: v for k, v in dataclasses.asdict(order).items() if k in fields and k != "id"})


async def register_one(deps: OrderDeps, value: bytes | str) -> OrderRow:
    """Upsert the order (a replay writes the same row again), done in the same transaction."""
    order = OrderEvent.from_dict(json.loads(value))
    done = processed(order.message_id, order.institution, order.accession, ORDER, "orders")
    row = order_row(order)
    await asyncio.to_thread(deps.repository.upsert, row, [done])
    return row


def order_agent(app: faust.App, orders: Any, deps: OrderDeps) -> Any:
    return one_at_a_time(app, orders, "radflow.orders", register_one, deps)
