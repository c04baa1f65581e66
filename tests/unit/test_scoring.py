import pytest

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


SIGNED = pairing.SignedHalf("A", "1", "左肺下叶炎症。", "F", "chest", "zh")
DRAFT = pairing.DraftHalf("左肺下叶炎症。")


def test_pair_draft_first_then_signed() -> None:
    first = pairing.PendingPair().with_halves(draft=DRAFT)
    assert not first.complete and "draft" in first.to_dict() and "signed" not in first.to_dict()
    second = pairing.PendingPair.from_dict(first.to_dict()).with_halves(signed=SIGNED)
    pair, score = pairing.score(second, 5.0)
    assert score.rougeL > 0.999 and score.created_at == pair.scored_at == 5.0
    assert (score.institution, score.accession, score.body_system, score.signed_status) == ("A", "1", "chest", "F")


def test_pair_signed_first_then_draft() -> None:
    first = pairing.PendingPair().with_halves(signed=SIGNED)
    assert not first.complete
    assert pairing.PendingPair.from_dict(first.to_dict()).with_halves(draft=DRAFT).complete


def test_a_half_from_storage_and_table_entries_written_before_the_types() -> None:
    # After a recovery that stopped short, the table has nothing; storage still has the draft.
    stored = pairing.DraftHalf.of(DraftRow(institution="A", accession="1", draft="左肺下叶炎症。"))
    _pair, score = pairing.score(pairing.PendingPair(signed=SIGNED).with_halves(draft=stored), 1.0)
    assert score.signed_status == "F"
    # a table value as the untyped code wrote it (and a field added later) reads back the same
    old = {"draft": {"draft": "x", "adapter_version": "v1", "guard": ""},
           "signed": {"institution": "A", "accession": "1", "impression": "y", "status": "C", "body_system": "chest",
                      "language": "en", "added_later": 1}, "scored_at": 3.0}
    pair = pairing.PendingPair.from_dict(old)
    assert pair.complete and pair.draft == pairing.DraftHalf("x", "v1") and pair.signed.status == "C"
    assert pair.to_dict() == old | {"draft": old["draft"] | {"system": ""},  # a half's later field: its default
                                    "signed": {k: v for k, v in old["signed"].items() if k != "added_later"}}
    with pytest.raises(ValueError, match="both halves"):
        pairing.score(pairing.PendingPair(signed=SIGNED), 1.0)


def test_a_scored_pair_knows_its_texts_and_a_replay_is_unchanged() -> None:
    pair, _score = pairing.score(pairing.PendingPair(DRAFT, SIGNED), 2.0)
    assert pair.inputs == pairing.inputs_of(DRAFT, SIGNED) == pair.digest and len(pair.inputs) == 32
    assert pairing.PendingPair.from_dict(pair.to_dict()) == pair and pair.to_dict()["inputs"] == pair.inputs
    assert pair.unchanged() and pair.with_halves(draft=DRAFT).unchanged()  # the same draft again
    corrected = pair.with_halves(signed=pairing.SignedHalf("A", "1", "右肺上叶结节。", "C", "chest", "zh"))
    assert not corrected.unchanged()  # a correction's new text is scored again
    # a table entry lost: the stored score's inputs tell the same
    fresh = pairing.PendingPair(DRAFT, SIGNED)
    assert not fresh.unchanged() and fresh.unchanged(pair.inputs) and not pairing.PendingPair(DRAFT).unchanged(pair.inputs)
