"""Quality end to end: drafts reach the RIS worklist over MLLP, a radiologist signs on the web
worklist, windows of scores form a reference band, a drop in quality raises a drift alert, and
the dashboard shows it all behind its token."""

from __future__ import annotations

import dataclasses
import json
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import AsyncIterator

import pytest

from ingest.hl7 import parse
from ingest.mllp import MLLPClient, ack_code
from ingest.outbound import DRAFT_OBSERVATION
from radflow.demodata import feed, generate_reports
from storage.repository import Repository
from storage.tables import AlertRow, DraftRow, ScoreRow, SignedReportRow
from streams.pages import SERIES_COLOURS
from streams.topics import TopicNames
from tests.fake_ris import FakeRIS, fake_ris
from tests.integration.browser import chromium_or_skip, count_colour, rendered_dom, screenshot
from tests.integration.conftest import wait_for

TOKEN = "s3cret-token"


@pytest.fixture
async def ris() -> AsyncIterator[FakeRIS]:
    async with fake_ris() as server:
        yield server


def _get(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=10) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()


async def test_worklist_drift_and_dashboard(settings, start_worker, broker, ris, tmp_path) -> None:
    # no warm-up windows here: this test counts full windows (tests/unit/test_drift.py covers warm-up)
    settings = dataclasses.replace(settings, dashboard_token=TOKEN, drift_chunk=4, drift_reference_chunks=2,
                                   drift_first_chunk=0, worklist_routes=f"*=127.0.0.1:{ris.port}")
    worker = start_worker(settings)
    names = TopicNames(settings.topic_prefix)
    repo = Repository(settings.resolved_database_url)
    reports = [r for r in generate_reports(12, seed=8) if r.institution == "XIHE" and r.body_system == "chest"]
    items = {(i.report.accession, i.status): i.message for i in feed(reports, seed=8)}

    from ingest.service import start_ingest
    service = await start_ingest("127.0.0.1", 0, names.ingest(), bootstrap_servers=broker.bootstrap_servers)
    client = await MLLPClient.connect("127.0.0.1", service.server.port)
    try:
        for r in reports:
            assert ack_code(await client.send(items[(r.accession, "P")])) == "AA"
        keys = {(r.institution, r.accession) for r in reports}
        await wait_for(lambda: repo.count(DraftRow, keys) == len(keys), 90, "drafts")

        # the RIS received each draft as a preliminary ORU^R01 marked as a machine draft
        await wait_for(lambda: len(ris.received) >= len(reports), 60, "drafts delivered to the RIS")
        first = parse(ris.received[0])
        assert first.field(first.segment("OBR"), 25) == "P"
        obx = first.segment("OBX")
        assert first.field(obx, 3) == DRAFT_OBSERVATION and first.field(obx, 11) == "P"
        await wait_for(lambda: all(repo.get(DraftRow, *k).delivery == "AA" for k in keys), 30, "delivery recorded")

        # the web worklist lists them, and requires the token
        status, _ = _get(f"{worker.url}/worklist")
        assert status == 401
        status, body = _get(f"{worker.url}/worklist?token={TOKEN}")
        assert status == 200 and body.count("class=pending") == len(reports)

        # reference period: a radiologist accepts 8 drafts as they are (ROUGE 1.0, a tight band)
        for r in reports[:8]:
            draft = repo.get(DraftRow, r.institution, r.accession)
            form = urllib.parse.urlencode({"institution": r.institution, "accession": r.accession,
                                           "impression": draft.draft or "未见异常。", "token": TOKEN}).encode()
            with urllib.request.urlopen(f"{worker.url}/worklist/sign", data=form, timeout=10) as response:
                assert json.loads(response.read())["status"] in ("accepted", "edited")
        # then signed reports that disagree with the drafts arrive from the RIS
        for r in reports[8:]:
            wrong = dataclasses.replace(r, impression_raw="左侧股骨颈骨折。")
            from datetime import datetime

            from radflow.demodata import to_hl7
            assert ack_code(await client.send(to_hl7(wrong, "F", f"W{r.accession}", datetime(2026, 1, 7)))) == "AA"
    finally:
        await client.close()
        await service.stop()

    await wait_for(lambda: repo.count(ScoreRow, keys) == len(keys), 60, "all scored")
    assert repo.get(SignedReportRow, reports[0].institution, reports[0].accession).signer.startswith("worklist:")
    await wait_for(lambda: len(repo.alerts()) > 0, 60, "a drift alert")
    alert: AlertRow = repo.alerts()[0]
    assert (alert.institution, alert.body_system, alert.chunk) == ("XIHE", "chest", 2)
    chunks = repo.drift_chunks("XIHE", "chest")
    assert [c.reference for c in chunks] == [True, True, False] and chunks[-1].alert

    summary = json.loads(_get(f"{worker.url}/api/summary?token={TOKEN}")[1])
    assert summary["segments"][0]["body_system"] == "chest" and summary["alerts"]
    assert _get(f"{worker.url}/api/summary")[0] == 401

    # what a person sees, rendered by a real browser
    chromium = chromium_or_skip()
    overview = rendered_dom(chromium, f"{worker.url}/?token={TOKEN}")
    assert "class=\"segment\"" in overview and "<svg" in overview and "class=\"band\"" in overview
    assert "class=\"alert\"" in overview and "XIHE" in overview
    # on screen, the segment's R-L line is drawn across its chart (the legend's "R-L" alone is a few pixels)
    drawn = count_colour(screenshot(chromium, f"{worker.url}/?token={TOKEN}", tmp_path / "overview.png"),
                         SERIES_COLOURS["rougeL"])
    assert drawn > 150, drawn
    detail = rendered_dom(chromium, f"{worker.url}/pairs?institution=XIHE&body_system=chest&token={TOKEN}")
    assert "<del>" in detail and "class=\"pair\"" in detail
