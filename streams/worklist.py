"""The radiologist's worklist: drafts sent back to the RIS over MLLP, and a web worklist where a
radiologist accepts or edits a draft, which then flows in like any signed report."""

from __future__ import annotations

import asyncio
import hmac
import html
import logging
import time
from dataclasses import dataclass
from typing import Any

import faust
from faust.web import Request, Response, View

from ingest.events import FINAL, ReportEvent
from ingest.mllp import MLLPClient, ack_code
from kernel.codes import DELIVERED_ACKS, REJECTED_ACKS, Delivery
from kernel.errors import FramingError
from storage.repository import Repository
from storage.tables import DraftRow

log = logging.getLogger(__name__)

DELIVERED = DELIVERED_ACKS
REJECTED = REJECTED_ACKS


@dataclass
class WorklistSender:
    """Delivers draft ORU^R01 to each institution's RIS route, retrying errors with backoff."""

    routes: dict[str, tuple[str, int]]
    retries: int = 3
    backoff: float = 0.5
    timeout: float = 10.0

    def route(self, institution: str) -> tuple[str, int] | None:
        return self.routes.get(institution) or self.routes.get("*")

    async def send(self, institution: str, message: bytes) -> str:
        """The outcome: AA/CA delivered, AR/CR rejected (not retried), "unrouted" or "failed"."""
        route = self.route(institution)
        if route is None:
            return Delivery.UNROUTED
        for attempt in range(self.retries):
            try:
                client = await MLLPClient.connect(*route, timeout=self.timeout)
                try:
                    code = ack_code(await client.send(message))
                finally:
                    await client.close()
                if code in DELIVERED or code in REJECTED:
                    return code
                log.warning("RIS answered %s to a draft (attempt %d)", code, attempt + 1)
            except (TimeoutError, OSError, FramingError) as exc:
                log.warning("RIS route unreachable (attempt %d): %s", attempt + 1, type(exc).__name__)
            await asyncio.sleep(self.backoff * 2**attempt)
        return Delivery.FAILED


class WebWorklist:
    """Pending drafts as a page; accepting or editing one produces the signed report."""

    def __init__(self, repository: Repository, reports_topic: Any) -> None:
        self.repository = repository
        self.reports_topic = reports_topic

    def register(self, app: faust.App, protected: Any, token_of: Any, token: str) -> None:
        """``token``: RADFLOW_DASHBOARD_TOKEN; a browser form sends it in its body."""
        worklist = self

        @app.page("/worklist")
        @protected
        async def pending(web: View, request: Request) -> Response:
            rows = await asyncio.to_thread(worklist.repository.pending_drafts, 100)
            return web.html(render_worklist(rows, token_of(request)))

        class Sign(View):
            async def post(self, request: Request, **kwargs: Any) -> Response:
                form = await request.post()
                if token and not hmac.compare_digest((form.get("token") or token_of(request)).encode(), token.encode()):
                    return self.json({"error": "a valid token is required (RADFLOW_DASHBOARD_TOKEN)"}, status=401)
                return await worklist.sign(self, form)

        app.page("/worklist/sign")(Sign)

    async def sign(self, web: View, form: Any) -> Response:
        institution, accession = form.get("institution", ""), form.get("accession", "")
        impression = (form.get("impression") or "").strip()
        draft = await asyncio.to_thread(self.repository.get, DraftRow, institution, accession)
        if draft is None:
            return web.json({"error": "no such draft"}, status=404)
        if not impression:
            return web.json({"error": "the impression is empty"}, status=400)
        action = "accepted" if impression == draft.draft else "edited"
        event = ReportEvent(
            institution=institution, accession=accession, status=FINAL, exam="", exam_code="",
            body_system=draft.body_system, modality="", findings=draft.findings, impression=impression,
            language=draft.language, signer=f"worklist:{action}", received_at=time.time(),
            findings_raw=draft.findings, impression_raw=impression,
        )
        await self.reports_topic.send(key=event.key.encode(), value=event.to_json())
        log.info("worklist draft %s by a radiologist", action)
        return web.json({"status": action, "institution": institution, "accession": accession})


def render_worklist(rows: list[DraftRow], token: str) -> str:
    from streams.pages import page

    hidden_token = f"<input type=hidden name=token value='{html.escape(token)}'>" if token else ""
    items = "".join(
        f"<tr class=pending><td>{html.escape(r.institution)}<br>{html.escape(r.accession)}<br>"
        f"<span class=muted>{html.escape(r.body_system)}</span></td><td>{html.escape(r.findings)}</td>"
        f"<td><form method=post action='/worklist/sign'>{hidden_token}"
        f"<input type=hidden name=institution value='{html.escape(r.institution)}'>"
        f"<input type=hidden name=accession value='{html.escape(r.accession)}'>"
        f"<textarea name=impression rows=3 cols=40>{html.escape(r.draft)}</textarea><br>"
        f"<button type=submit>Sign (accept or edited)</button></form></td></tr>"
        for r in rows
    ) or "<tr><td colspan=3 class=muted>No drafts waiting.</td></tr>"
    return page("radflow: worklist", f"""<p>Machine drafts waiting for a radiologist. Edit the text if needed and sign:
the signed impression is stored and scored like one from the RIS.</p>
<table id=worklist><tr><th>exam</th><th>findings</th><th>draft impression</th></tr>{items}</table>""", token, refresh=False)

