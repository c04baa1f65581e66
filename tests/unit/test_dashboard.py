from types import SimpleNamespace

from storage.summaries import ChartWindows
from streams.pages import chart, diff_html, render_overview, render_pairs


def test_overview_works_with_no_data() -> None:
    page = render_overview([], {}, [], "")
    assert "No scored reports yet" in page and "No drift alerts" in page


def test_chart_draws_every_series_and_the_band() -> None:
    svg = chart({"rougeL": [0.5, 0.6, 0.7], "rouge1": [0.6, 0.7, 0.8]}, (0.4, 0.8))
    assert svg.count("<polyline") == 2 and "class=band" in svg


def test_links_keep_the_token_and_text_is_escaped() -> None:
    segment = {"institution": "A<script>", "body_system": "chest", "n": 1, "rouge1": 1.0, "rouge2": 1.0,
               "rougeL": 1.0, "missed_rate": 0.0, "over_rate": 0.0}
    page = render_overview([segment], {}, [], "tok")
    assert "token=tok" in page and "<script>" not in page
    score = SimpleNamespace(accession="1", body_system="chest", rouge1=0.5, rouge2=0.5, rougeL=0.5,
                            missed_concepts="effusion", over_concepts="")
    pair = {"score": score, "draft": SimpleNamespace(draft="<b>x</b>"), "signed": SimpleNamespace(impression="y")}
    detail = render_pairs("A", "chest", [pair], "tok")
    assert "&lt;b&gt;" in detail and "missed: effusion" in detail


def test_diff_marks_words_on_each_side() -> None:
    draft, signed = diff_html("Left knee effusion.", "Small left knee effusion.")
    assert "<ins>" in draft and "<del>Small left</del>" in signed


def test_a_single_window_is_drawn_as_a_dot_and_warm_up_dots_are_hollow() -> None:
    from streams.pages import PAD

    svg = chart({"rougeL": [0.5]}, None, hollow=frozenset({0}))
    assert svg.count("<circle") == 1 and "fill='#fff'" in svg and f"cx={PAD:.1f}" in svg
    svg = chart({"rougeL": [0.5, 0.7]}, None)
    assert svg.count("<circle") == 2 and "fill='#fff'" not in svg


def test_each_chart_says_when_its_reference_band_appears() -> None:
    from streams.pages import WindowRule, window_note

    rule = WindowRule(chunk=20, first_chunk=3, reference_chunks=6)
    warm = SimpleNamespace(reference=False, bands="{}")
    ref = SimpleNamespace(reference=True, bands="{}")
    assert window_note([], rule) == "first point after 3 scores"
    assert window_note([], WindowRule(chunk=20, first_chunk=0)) == "first point after 20 scores"
    assert window_note([warm, warm], rule).endswith("reference band after 6 more windows of 20 scores")
    assert "warm-up windows of 3 scores" in window_note([warm], rule)
    assert window_note([warm] + [ref] * 5, rule) == "reference band after 1 more window of 20 scores"
    assert window_note([ref] * 6, rule).startswith("band: mean ± 3 sd of the first 6 windows")
    segment = {"institution": "XIHE", "body_system": "chest", "n": 2, "rouge1": 0.5, "rouge2": 0.5,
               "rougeL": 0.5, "missed_rate": 0.0, "over_rate": 0.0}
    chunk = SimpleNamespace(institution="XIHE", body_system="chest", reference=False, bands="{}", rouge1=0.5,
                            rouge2=0.4, rougeL=0.45, missed_rate=0.0, over_rate=0.0)
    page = render_overview([segment], {("XIHE", "chest"): ChartWindows([chunk, chunk], 0, "")}, [], "", rule)
    assert page.count("<polyline") == 5 and "reference band after 6 more windows" in page
    # a long-lived segment's chart holds its latest windows; the note and band speak of all of them
    band = '{"rougeL": [0.3, 0.7], "missed_rate": [0.0, 0.2]}'
    page = render_overview([segment], {("XIHE", "chest"): ChartWindows([chunk], 6, band)}, [], "", rule)
    assert "band: mean ± 3 sd of the first 6 windows" in page and page.count("class=band") == 2
