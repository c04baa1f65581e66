"""The quality dashboard, served by the worker's web server: rolling ROUGE per institution."""

from __future__ import annotations

import asyncio
import hmac
import html
from typing import Any

import faust
from faust.web import Request, Response, View

from radflow.settings import Settings
from storage.repository import Repository

ROLLING_WINDOW = 50  # signed reports per institution in the rolling mean


def register_pages(app: faust.App, settings: Settings, repository: Repository, stats: dict[str, int]) -> None:
    def allowed(request: Request) -> bool:
        if not settings.dashboard_token:
            return True
        supplied = request.query.get("token", "")
        auth = request.headers.get("Authorization", "")
        if auth.startswith("Bearer "):
            supplied = auth.removeprefix("Bearer ")
        return hmac.compare_digest(supplied.encode(), settings.dashboard_token.encode())

    def denied(web: View) -> Response:
        return web.json({"error": "a valid token is required (RADFLOW_DASHBOARD_TOKEN)"}, status=401)

    @app.page("/api/summary")
    async def summary(web: View, request: Request) -> Response:
        if not allowed(request):
            return denied(web)
        rows = await asyncio.to_thread(repository.score_summary, ROLLING_WINDOW)
        return web.json({"window": ROLLING_WINDOW, "institutions": rows})

    @app.page("/api/stats")
    async def worker_stats(web: View, request: Request) -> Response:
        """This worker's counters since it started (halves_from_storage: pairs completed from the
        database because the table did not have the half, e.g. after a short recovery)."""
        if not allowed(request):
            return denied(web)
        return web.json(stats)

    @app.page("/healthz")
    async def health(web: View, request: Request) -> Response:
        return web.json({"status": "ok"})

    @app.page("/")
    async def index(web: View, request: Request) -> Response:
        if not allowed(request):
            return denied(web)
        rows = await asyncio.to_thread(repository.score_summary, ROLLING_WINDOW)
        return web.html(render(rows))


def render(rows: list[dict[str, Any]]) -> str:
    if rows:
        body = "".join(
            "<tr><td>{}</td><td>{}</td><td>{:.3f}</td><td>{:.3f}</td><td>{:.3f}</td><td>{}</td>"
            "<td><div class=bar style='width:{:.0f}px'></div></td></tr>".format(
                html.escape(r["institution"]), r["n"], r["rouge1"], r["rouge2"], r["rougeL"],
                html.escape(", ".join(r["body_systems"])), r["rougeL"] * 200,
            )
            for r in rows
        )
    else:
        body = "<tr><td colspan=7>No scored reports yet: drafts are scored when the signed report arrives.</td></tr>"
    return f"""<!doctype html><html><head><meta charset=utf-8><meta http-equiv=refresh content=5>
<title>radflow quality</title><style>
body{{font-family:sans-serif;margin:2em}} table{{border-collapse:collapse}}
td,th{{padding:.3em .8em;border-bottom:1px solid #ddd;text-align:left}} .bar{{height:10px;background:#3a7}}
</style></head><body><h1>radflow: draft quality</h1>
<p>Rolling ROUGE F1 over the last {ROLLING_WINDOW} signed reports per institution (refreshes every 5 s).</p>
<table id=summary><tr><th>institution</th><th>n</th><th>R-1</th><th>R-2</th><th>R-L</th><th>body systems</th><th>R-L</th></tr>
{body}</table></body></html>"""
