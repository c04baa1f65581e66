"""The quality dashboard's routes and the radiologists' web worklist, served by the worker's web
server; the HTML is streams/pages.py.

Pages are rendered on the server (no scripts from the internet: hospital networks are closed)
and refresh themselves. Every page and API needs the token when RADFLOW_DASHBOARD_TOKEN is set.
"""

from __future__ import annotations

import asyncio
import hmac
from collections.abc import Awaitable, Callable
from typing import Any

import faust
from faust.web import Request, Response, View

from kernel.metrics import CONTENT_TYPE, Registry
from kernel.settings import Settings
from storage.repository import Repository
from streams.offsets import OffsetGuard
from streams.pages import CHART_WINDOWS, ROLLING_WINDOW, WindowRule, render_overview, render_pairs
from streams.serving_view import name_systems, segment_systems, served_summary

Page = Callable[[View, Request], Awaitable[Response]]


def register_pages(app: faust.App, settings: Settings, repository: Repository, stats: dict[str, int],
                   worklist: Any = None, metrics: Registry | None = None, offsets: OffsetGuard | None = None) -> None:
    access = _Access(settings.dashboard_token)

    @app.page("/healthz")
    async def health(web: View, request: Request) -> Response:
        return web.json({"status": "ok"})

    _register_api(app, access.protected, repository, stats, lambda: journal_figures(settings))
    _register_diagnostics(app, access.protected, metrics, offsets)
    _register_quality_pages(app, access, settings, repository)
    if worklist is not None:
        worklist.register(app, access.protected, access.token_of, settings.dashboard_token)


class _Access:
    """The dashboard token (RADFLOW_DASHBOARD_TOKEN): a Bearer header or a ``token`` query parameter,
    as the pages' links carry it; no token set, every page is open."""

    def __init__(self, token: str) -> None:
        self.token = token

    @staticmethod
    def token_of(request: Request) -> str:
        auth = request.headers.get("Authorization", "")
        return auth.removeprefix("Bearer ") if auth.startswith("Bearer ") else request.query.get("token", "")

    def protected(self, page: Page) -> Page:
        async def guarded(web: View, request: Request) -> Response:
            if self.token and not hmac.compare_digest(self.token_of(request).encode(), self.token.encode()):
                return web.json({"error": "a valid token is required (RADFLOW_DASHBOARD_TOKEN)"}, status=401)
            return await page(web, request)

        return guarded


def journal_figures(settings: Settings) -> dict[str, Any] | None:
    """The listener's journal as this machine's file shows it (read-only: the listener may be
    another process); None when the journal is off or not there (the listener runs elsewhere)."""
    from ingest.journal import read_stats

    if not settings.journal_enabled:
        return None
    found = read_stats(settings.resolved_journal_path, settings.journal_max_bytes)
    return found.to_dict() if found is not None else None


def _register_api(app: faust.App, protected: Callable[[Page], Page], repository: Repository,
                  stats: dict[str, int], journal: Callable[[], dict[str, Any] | None]) -> None:
    """The JSON of the quality overview and the worker's counters."""

    @app.page("/api/summary")
    @protected
    async def summary(web: View, request: Request) -> Response:
        institutions = await asyncio.to_thread(repository.score_summary, ROLLING_WINDOW)
        segments = await asyncio.to_thread(repository.segment_summary, ROLLING_WINDOW)
        alerts = await asyncio.to_thread(repository.alerts, 20)
        served = await asyncio.to_thread(served_summary, repository)  # drafting systems, all-time scores
        segments = name_systems(segments, {(s["institution"], s["body_system"]): s for s in served["systems"]})
        return web.json({"window": ROLLING_WINDOW, "institutions": institutions, "segments": segments,
                         "alerts": [a.model_dump(exclude={"id"}) for a in alerts], **served})

    @app.page("/api/stats")
    @protected
    async def worker_stats(web: View, request: Request) -> Response:
        """Counters since start; halves_from_storage counts pairs completed from the database
        because the table lacked the half (e.g. after a short recovery). ``journal``: the listener's
        journal (bytes, pending, oldest_pending_age_s, max_bytes), null when off or elsewhere."""
        return web.json({**stats, "journal": await asyncio.to_thread(journal)})


def _register_diagnostics(app: faust.App, protected: Callable[[Page], Page], metrics: Registry | None,
                          offsets: OffsetGuard | None) -> None:
    """What an operator asks a running worker: where its tasks wait, and the Prometheus metrics."""

    @app.page("/api/debug/tasks")
    @protected
    async def tasks(web: View, request: Request) -> Response:
        """Where every asyncio task of this worker is waiting: code locations only, no data."""
        out = []
        for task in asyncio.all_tasks():
            out.append({"task": task.get_name(), "awaiting": _await_chain(task.get_coro())})
        return web.json({"tasks": out, "partitions": offsets.state() if offsets is not None else []})

    @app.page("/metrics")
    @protected
    async def prometheus(web: View, request: Request) -> Response:
        body = metrics.render() if metrics is not None else ""
        return web.text(body, content_type=CONTENT_TYPE.split(";")[0])


def _register_quality_pages(app: faust.App, access: _Access, settings: Settings, repository: Repository) -> None:
    """The overview of segments and their drift charts, and one segment's pairs."""

    @app.page("/")
    @access.protected
    async def index(web: View, request: Request) -> Response:
        institution = request.query.get("institution", "")  # one institution's rows (a large site)
        segments = await asyncio.to_thread(repository.segment_summary, ROLLING_WINDOW, institution or None)
        keys = [(s["institution"], s["body_system"]) for s in segments]
        charts = await asyncio.to_thread(repository.chart_windows, keys, CHART_WINDOWS)
        segments = name_systems(segments, await asyncio.to_thread(segment_systems, repository))
        alerts = await asyncio.to_thread(repository.alerts, 20)
        if institution:
            alerts = [a for a in alerts if a.institution == institution]
        windows = WindowRule(settings.drift_chunk, settings.drift_first_chunk, settings.drift_reference_chunks)
        journal = await asyncio.to_thread(journal_figures, settings)
        return web.html(render_overview(segments, charts, alerts, access.token_of(request), windows, journal))

    @app.page("/pairs")
    @access.protected
    async def pairs(web: View, request: Request) -> Response:
        institution = request.query.get("institution", "")
        body_system = request.query.get("body_system") or None
        rows = await asyncio.to_thread(repository.pairs, institution, body_system, 50)
        return web.html(render_pairs(institution, body_system, rows, access.token_of(request)))


def _await_chain(coro: Any, limit: int = 30) -> list[str]:
    """The chain of awaits of a suspended coroutine, outermost first (get_stack shows one frame)."""
    chain: list[str] = []
    while coro is not None and len(chain) < limit:
        frame = getattr(coro, "cr_frame", None) or getattr(coro, "ag_frame", None) or getattr(coro, "gi_frame", None)
        if frame is not None:
            chain.append(f"{frame.f_code.co_filename.rsplit('/', 2)[-1]}:{frame.f_lineno} {frame.f_code.co_name}")
        coro = getattr(coro, "cr_await", None) or getattr(coro, "ag_await", None) or getattr(coro, "gi_yieldfrom", None)
    return chain
