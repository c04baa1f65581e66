"""The worker's agents, one per module, each built from a small dependencies object.

- ``draft``: reports -> the model -> drafts topic and storage (draft role)
- ``adapters``: adapters topic -> hot swap of the served LoRA adapters (a task; draft role)
- ``score``: reports + drafts -> pairs table -> scores topic and storage (quality role)
- ``drift``: scores -> drift windows per segment -> alerts topic and storage (quality role)
- ``orders``: orders -> storage (quality role)
- ``worklist``: drafts -> the RIS over MLLP (quality role)

``streams.app`` wires them; a unit test drives each through Faust's ``agent.test_context()``
with fakes for what it sends, and a real SQLite repository.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import faust

#: How an agent sends a record on: (key, record) -> sent. The app passes a topic's send.
Send = Callable[[str, Any], Awaitable[None]]


def one_at_a_time(app: faust.App, channel: Any, name: str, step: Callable[[Any, Any], Awaitable[Any]], deps: Any,
                  concurrency: int = 1) -> Any:
    """Registers an agent that runs ``step(deps, value)`` for each value of ``channel``.

    It yields each step's result: nothing in the worker reads it, while a test reads it from
    ``agent.results`` once ``put`` returns (for an agent that yields, Faust's test wrapper waits
    until the value has been processed)."""

    async def agent(stream: faust.StreamT) -> AsyncIterator[Any]:
        async for value in stream:
            yield await step(deps, value)

    return app.agent(channel, name=name, concurrency=concurrency)(agent)
