"""The HTML of the quality dashboard: the overview of segments with their drift charts (inline
SVG), a segment's draft/signed pairs with their differences marked, and the page frame the web
worklist shares. Plain strings, no scripts: hospital networks are closed."""

from __future__ import annotations

import difflib
import html
import json
import urllib.parse
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from kernel.codes import Language, language_of
from model.scoring.rouge import segment_zh
from storage.summaries import ChartWindows

ROLLING_WINDOW = 50  # signed reports per segment in the rolling means
CHART_WINDOWS = 50  # drift windows per chart, the latest: a year holds thousands, the chart is 220 px wide

STYLE = """body{font-family:system-ui,"Noto Sans CJK SC","PingFang SC","Microsoft YaHei",sans-serif;margin:1.5em;color:#222} table{border-collapse:collapse;margin-bottom:1.5em}
td,th{padding:.3em .7em;border-bottom:1px solid #ddd;text-align:left;vertical-align:top}
.alert{color:#b00} del{background:#fdd;text-decoration:line-through} ins{background:#dfd;text-decoration:none}
nav a{margin-right:1em} .muted{color:#777} .note{font-size:.8em;max-width:220px}"""


def page(title: str, body: str, token: str, refresh: bool = True) -> str:
    meta = "<meta http-equiv=refresh content=5>" if refresh else ""
    nav = f"<nav><a href='{_link('/', token)}'>quality</a><a href='{_link('/worklist', token)}'>worklist</a></nav>"
    return (f"<!doctype html><html><head><meta charset=utf-8>{meta}<title>{html.escape(title)}</title>"
            f"<style>{STYLE}</style></head><body>{nav}<h1>{html.escape(title)}</h1>{body}</body></html>")


def _link(path: str, token: str, **params: str) -> str:
    if token:
        params["token"] = token
    query = urllib.parse.urlencode({k: v for k, v in params.items() if v})
    return html.escape(f"{path}?{query}" if query else path)


SERIES_COLOURS = {"rouge1": "#8bc", "rouge2": "#c9a", "rougeL": "#2a6", "missed_rate": "#c33", "over_rate": "#e90"}
PAD = 4  # px inside the chart's edges, so a first point is drawn whole


@dataclass(frozen=True)
class WindowRule:
    """The drift window settings, to say on each chart what comes next."""

    chunk: int = 20
    first_chunk: int = 0
    reference_chunks: int = 6


def window_note(own: Sequence[Any], rule: WindowRule, reference: int | None = None) -> str:
    """What a segment's chart shows so far, and when its reference band appears, in words.
    ``reference``: the segment's reference windows in all, when ``own`` holds only its latest."""
    warmup = 0 < rule.first_chunk < rule.chunk
    if reference is None:
        reference = sum(1 for c in own if c.reference)
    if not own:
        return f"first point after {rule.first_chunk if warmup else rule.chunk} scores"
    if reference >= rule.reference_chunks:
        return f"band: mean ± 3 sd of the first {rule.reference_chunks} windows of {rule.chunk} scores"
    early = f"open circles: warm-up windows of {rule.first_chunk} scores; " if warmup and not reference else ""
    left = rule.reference_chunks - reference
    return f"{early}reference band after {left} more window{'s' if left > 1 else ''} of {rule.chunk} scores"


def chart(series: dict[str, list[float]], band: tuple[float, float] | None, width: int = 220, height: int = 60,
          label: str = "", hollow: frozenset[int] = frozenset()) -> str:
    """An inline SVG of chunk means (0-1), one line per metric with a dot per window (``hollow``:
    warm-up windows), the first metric's band shaded."""
    def y(v: float) -> float:
        return PAD + (1 - max(0.0, min(1.0, v))) * (height - 2 * PAD)

    parts = [f"<svg class=chart width={width} height={height} viewBox='0 0 {width} {height}' role=img "
             f"aria-label='{html.escape(label)}'><title>{html.escape(label)}</title>",
             f"<rect width={width} height={height} fill='#fafafa' stroke='#ddd'/>"]
    if band:
        top, bottom = y(band[1]), y(band[0])
        parts.append(f"<rect class=band x=0 y={top:.1f} width={width} height={max(1.0, bottom - top):.1f} fill='#cde8d6'/>")
    for metric, values in reversed(series.items()):  # the first metric last: on top
        if not values:
            continue
        step = (width - 2 * PAD) / (len(values) - 1) if len(values) > 1 else 0
        colour = SERIES_COLOURS.get(metric, "#555")
        xy = [(PAD + i * step, y(v)) for i, v in enumerate(values)]
        points = " ".join(f"{x:.1f},{yy:.1f}" for x, yy in xy)
        parts.append(f"<polyline class='series {metric}' fill=none stroke='{colour}' stroke-width=2 points='{points}'/>")
        parts.extend(f"<circle class='point {metric}' cx={x:.1f} cy={yy:.1f} r=3 stroke='{colour}' "
                     f"fill='{'#fff' if i in hollow else colour}'/>" for i, (x, yy) in enumerate(xy))
    parts.append("</svg>")
    return "".join(parts)


def _band_of(bands: str, metric: str) -> tuple[float, float] | None:
    """A metric's band in a window's bands (JSON), as the segment's latest banded window has it."""
    if bands:
        low, high = json.loads(bands).get(metric, (None, None))
        if low is not None:
            return (low, high)
    return None


def _is_warmup(chunk: Any) -> bool:
    return not chunk.reference and chunk.bands in ("", "{}")


def journal_line(journal: dict[str, Any] | None) -> str:
    """The listener's journal in one line: what is acknowledged but not yet done downstream."""
    if journal is None:
        return "<p id=journal class=muted>Journal: off, or kept on another machine (radflow journal there).</p>"
    share = journal["live_bytes"] / journal["max_bytes"] if journal.get("max_bytes") else 0.0
    return (f"<p id=journal>Journal: <b>{journal['pending']}</b> acknowledged messages not yet done downstream, "
            f"oldest {journal['oldest_pending_age_s']:.0f} s; {journal['bytes'] / 1e6:.1f} MB on disk "
            f"({share:.0%} of its bound).</p>")


def render_overview(segments: list[dict[str, Any]], charts: Mapping[tuple[str, str], ChartWindows],
                    alerts: list[Any], token: str, windows: WindowRule = WindowRule(),
                    journal: dict[str, Any] | None = None) -> str:
    """``charts``: each segment's latest drift windows (storage.summaries.chart_windows)."""
    if segments:
        rows = []
        for s in segments:
            history = charts.get((s["institution"], s["body_system"]), ChartWindows((), 0, ""))
            own = history.chunks
            hollow = frozenset(i for i, c in enumerate(own) if _is_warmup(c))
            note = f"<div class='note muted'>{html.escape(window_note(own, windows, history.reference))}</div>"
            rouge_chart = chart({m: [getattr(c, m) for c in own] for m in ("rougeL", "rouge1", "rouge2")},
                                _band_of(history.bands, "rougeL"), label="R-1, R-2, R-L per window; R-L band shaded",
                                hollow=hollow) + note
            rates_chart = chart({m: [getattr(c, m) for c in own] for m in ("missed_rate", "over_rate")},
                                _band_of(history.bands, "missed_rate"),
                                label="missed and over rates per window; missed band shaded", hollow=hollow)
            link = _link("/pairs", token, institution=s["institution"], body_system=s["body_system"])
            rows.append(
                f"<tr class=segment><td><a href='{link}'>{html.escape(s['institution'])}</a></td>"
                f"<td>{html.escape(s['body_system'])}</td><td class=system>{html.escape(s.get('system') or '-')}</td>"
                f"<td>{s['n']}</td><td>{s['rouge1']:.3f}</td>"
                f"<td>{s['rouge2']:.3f}</td><td>{s['rougeL']:.3f}</td><td>{s['missed_rate']:.0%}</td>"
                f"<td>{s['over_rate']:.0%}</td><td>{rouge_chart}</td><td>{rates_chart}</td></tr>")
        body = "".join(rows)
    else:
        body = "<tr><td colspan=11 class=muted>No scored reports yet: a draft is scored when its signed report arrives.</td></tr>"
    alert_rows = "".join(
        f"<tr class=alert><td>{html.escape(a.institution)}</td><td>{html.escape(a.body_system)}</td>"
        f"<td>{a.chunk}</td><td>{html.escape(a.metric)}</td><td>{a.value:.3f}</td><td>{a.low:.3f} – {a.high:.3f}</td></tr>"
        for a in alerts
    ) or "<tr><td colspan=6 class=muted>No drift alerts.</td></tr>"
    return page("radflow: draft quality", f"""
<p>Rolling means over the last {ROLLING_WINDOW} signed reports per institution × body system. Charts show each
of the last {CHART_WINDOWS} drift windows' mean (<span style="color:#2a6">R-L</span>, <span style="color:#8bc">R-1</span>,
<span style="color:#c9a">R-2</span>; <span style="color:#c33">missed</span>, <span style="color:#e90">over</span>)
with the reference band (mean ± 3 sd) shaded. A window closes every {windows.chunk} signed reports of a
segment{_warmup_words(windows)}; the band appears once the first {windows.reference_chunks} windows have closed.
Missed and over are the shares of drafts that miss or add a finding. The drafting system is the one serving the
segment (`radflow systems list`).</p>
{journal_line(journal)}
<table id=segments><tr><th>institution</th><th>body system</th><th>drafting system</th><th>n</th><th>R-1</th><th>R-2</th><th>R-L</th>
<th>missed</th><th>over</th><th>ROUGE per window</th><th>missed / over per window</th></tr>{body}</table>
<h2>Drift alerts</h2><table id=alerts><tr><th>institution</th><th>body system</th><th>window</th><th>metric</th>
<th>value</th><th>band</th></tr>{alert_rows}</table>""", token)


def _warmup_words(rule: WindowRule) -> str:
    if 0 < rule.first_chunk < rule.chunk:
        return (f" (a new segment's first {rule.chunk // rule.first_chunk * rule.first_chunk} close every "
                f"{rule.first_chunk}, drawn as open circles, so a chart appears within minutes)")
    return ""


def diff_html(draft: str, signed: str) -> tuple[str, str]:
    """Draft and signed text with their differences marked (<ins> only in the draft, <del> only
    in the signed impression), compared by words (jieba for Chinese)."""
    if language_of(signed + draft) == Language.ZH:
        a, b = segment_zh(signed).split(" "), segment_zh(draft).split(" ")
        joiner = ""
    else:
        a, b = signed.split(), draft.split()
        joiner = " "
    matcher = difflib.SequenceMatcher(a=a, b=b, autojunk=False)
    signed_out, draft_out = [], []
    for op, i1, i2, j1, j2 in matcher.get_opcodes():
        left, right = html.escape(joiner.join(a[i1:i2])), html.escape(joiner.join(b[j1:j2]))
        if op == "equal":
            signed_out.append(left)
            draft_out.append(right)
        else:
            if left:
                signed_out.append(f"<del>{left}</del>")
            if right:
                draft_out.append(f"<ins>{right}</ins>")
    return joiner.join(draft_out), joiner.join(signed_out)


def render_pairs(institution: str, body_system: str | None, rows: list[dict[str, Any]], token: str) -> str:
    items = []
    for row in rows:
        score, draft, signed = row["score"], row["draft"], row["signed"]
        draft_html, signed_html = diff_html(draft.draft, signed.impression)
        flags = "".join(
            f"<div class=alert>{label}: {html.escape(value)}</div>"
            for label, value in (("missed", score.missed_concepts), ("over", score.over_concepts)) if value
        )
        items.append(
            f"<tr class=pair><td>{html.escape(score.accession)}<br><span class=muted>{html.escape(score.body_system)}"
            f"</span></td><td class=draft>{draft_html}</td><td class=signed>{signed_html}</td>"
            f"<td>{score.rouge1:.2f} / {score.rouge2:.2f} / {score.rougeL:.2f}{flags}</td></tr>")
    body = "".join(items) or "<tr><td colspan=4 class=muted>No scored pairs in this segment yet.</td></tr>"
    title = f"{institution} {body_system or ''}".strip()
    return page(f"radflow: {title}", f"""
<p><ins>green</ins>: only in the draft. <del>red</del>: only in the signed impression.</p>
<table id=pairs><tr><th>accession</th><th>draft</th><th>signed</th><th>R-1 / R-2 / R-L</th></tr>{body}</table>""",
                token, refresh=False)
