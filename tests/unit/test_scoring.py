from model.scoring.rouge import ZERO, score
from storage.tables import DraftRow
from streams import pairing


def test_rouge_identical_and_empty() -> None:
    assert score("左肺下叶炎症。", "左肺下叶炎症。").rougeL > 0.999
    assert score("", "左肺下叶炎症。") == ZERO
    assert score("左肺下叶炎症。", "") == ZERO
    assert score("Left knee effusion.", "Left knee effusion.").rouge2 > 0.999


def test_rouge_chinese_uses_word_segmentation() -> None:
    # with jieba, 左肺/下叶/炎症 are words: one wrong word costs a word, not a character
    r = score("右肺下叶炎症", "左肺下叶炎症")
    assert 0.3 < r.rouge1 < 0.9


def test_rouge_english_stems() -> None:
    assert score("effusions", "effusion").rouge1 > 0.999


def _none(institution: str, accession: str):
    return None


SIGNED = pairing.signed_half("A", "1", "左肺下叶炎症。", "F", "chest", "zh")
DRAFT = {"draft": "左肺下叶炎症。", "adapter_version": "", "guard": ""}


def test_pair_draft_first_then_signed() -> None:
    first = pairing.update(None, "A", "1", draft=DRAFT, find_draft=_none, find_signed=_none)
    assert first.score is None and "draft" in first.entry
    second = pairing.update(first.entry, "A", "1", signed=SIGNED, find_draft=_none, find_signed=_none)
    assert second.score is not None and second.score.rougeL > 0.999


def test_pair_signed_first_then_draft() -> None:
    first = pairing.update(None, "A", "1", signed=SIGNED, find_draft=_none, find_signed=_none)
    assert first.score is None
    assert pairing.update(first.entry, "A", "1", draft=DRAFT, find_draft=_none, find_signed=_none).score is not None


def test_pair_falls_back_to_storage_when_table_lost_the_half() -> None:
    # After a recovery that stopped short, the table has nothing; storage still has the draft.
    stored = pairing.draft_half(DraftRow(institution="A", accession="1", draft="左肺下叶炎症。"))
    result = pairing.update(None, "A", "1", signed=SIGNED, find_draft=lambda i, a: stored, find_signed=_none)
    assert result.score is not None and result.score.signed_status == "F"
