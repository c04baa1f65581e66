import pytest

from model.scoring.clinical import ABSENT, PRESENT, UNCERTAIN, compare, extract


@pytest.mark.parametrize(
    ("text", "language", "expected"),
    [
        ("右肺上叶磨玻璃结节，建议随访复查。", "zh", {"ground_glass": PRESENT, "nodule": PRESENT}),
        ("双肺未见明显结节及肿块。", "zh", {"nodule": ABSENT, "mass": ABSENT}),
        ("右肺门占位，考虑肺癌可能。", "zh", {"mass": PRESENT, "malignancy": UNCERTAIN}),
        ("未见明显变化，左侧胸腔积液。", "zh", {"effusion": PRESENT}),
        ("No pleural effusion. Small left pneumothorax.", "en", {"effusion": ABSENT, "pneumothorax": PRESENT}),
        ("Left hilar mass, concerning for malignancy.", "en", {"mass": PRESENT, "malignancy": UNCERTAIN}),
        ("The lungs are clear without consolidation or effusion.", "en", {"consolidation": ABSENT, "effusion": ABSENT}),
    ],
)
def test_extract(text: str, language: str, expected: dict[str, str]) -> None:
    assert extract(text, language) == expected


def test_missed_and_over() -> None:
    diff = compare("右肺上叶磨玻璃结节。", "右肺上叶磨玻璃结节；右侧胸腔积液。", "zh")
    assert diff.missed == ("effusion",) and diff.over == ()
    diff = compare("Left knee effusion and medial meniscus tear.", "No knee effusion.", "en")
    assert diff.missed == () and diff.over == ("effusion", "tear")
    # a finding the signer negated but the draft asserts is overdiagnosis
    assert compare("左肺结节。", "左肺未见结节。", "zh").over == ("nodule",)
    assert compare("胸部CT平扫未见明显异常。", "胸部CT平扫未见异常。", "zh") == compare("", "", "zh")
