from types import SimpleNamespace

from streams.dashboard import chart, diff_html, render_overview, render_pairs


def test_overview_works_with_no_data() -> None:
    page = render_overview([], [], [], "")
    assert "No scored reports yet" in page and "No drift alerts" in page


def test_chart_draws_every_series_and_the_band() -> None:
    svg = chart({"rougeL": [0.5, 0.6, 0.7], "rouge1": [0.6, 0.7, 0.8]}, (0.4, 0.8))
    assert svg.count("<polyline") == 2 and "class=band" in svg


def test_links_keep_the_token_and_text_is_escaped() -> None:
    segment = {"institution": "A<script>", "body_system": "chest", "n": 1, "rouge1": 1.0, "rouge2": 1.0,
               "rougeL": 1.0, "missed_rate": 0.0, "over_rate": 0.0}
    page = render_overview([segment], [], [], "tok")
    assert "token=tok" in page and "<script>" not in page
    score = SimpleNamespace(accession="1", body_system="chest", rouge1=0.5, rouge2=0.5, rougeL=0.5,
                            missed_concepts="effusion", over_concepts="")
    pair = {"score": score, "draft": SimpleNamespace(draft="<b>x</b>"), "signed": SimpleNamespace(impression="y")}
    detail = render_pairs("A", "chest", [pair], "tok")
    assert "&lt;b&gt;" in detail and "missed: effusion" in detail


def test_diff_marks_words_on_each_side() -> None:
    draft, signed = diff_html("Left knee effusion.", "Small left knee effusion.")
    assert "<ins>" in draft and "<del>Small left</del>" in signed
