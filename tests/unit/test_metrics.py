"""Answer scores on hand-made cases whose right values are worked out by hand."""

import pytest

from tui_tuner.inference.metrics import (exact_match, hallucination_check, lcs_length, normalize, rouge_l, score_answer,
                               token_f1)


def test_normalize_drops_case_punctuation_and_articles():
    assert normalize("The  Robot, weighs 4 kg!") == "robot weighs 4 kg"


@pytest.mark.parametrize("pred, ref, expected", [
    ("4 kilograms.", "4 kilograms", 1.0),
    ("The answer is Paris", "Paris", 0.0),
    ("", "", 1.0),
])
def test_exact_match(pred, ref, expected):
    assert exact_match(pred, ref) == expected


def test_token_f1_by_hand():
    # pred: [it, weighs, 4, kilograms] ref: [4, kilograms] -> common 2, P=2/4, R=2/2, F1=2*.5*1/1.5
    assert token_f1("It weighs 4 kilograms", "4 kilograms") == pytest.approx(2 / 3)
    assert token_f1("blue", "red") == 0.0
    assert token_f1("", "red") == 0.0
    assert token_f1("", "") == 1.0
    # multiset: "red red" vs "red" -> common 1, P=1/2, R=1 -> 2/3
    assert token_f1("red red", "red") == pytest.approx(2 / 3)


def test_lcs_and_rouge_l_by_hand():
    assert lcs_length("a b c d".split(), "a c d e".split()) == 3
    # pred [police, killed, gunman] ref [police, kill, gunman] -> LCS 2, P=R=2/3, F=2/3
    assert rouge_l("police killed the gunman", "the police kill the gunman") == pytest.approx(2 / 3)
    # order matters for ROUGE-L but not for F1
    assert rouge_l("z y x", "x y z") == pytest.approx(1 / 3)
    assert token_f1("z y x", "x y z") == 1.0


def test_paraphrase_with_known_facts_is_not_flagged():
    check = hallucination_check("Bramble weighs 4 kilograms.", "4 kilograms", prompt="How heavy is Bramble?")
    assert not check.flagged, check.reason


def test_new_number_is_flagged():
    check = hallucination_check("It weighs 7 kilograms.", "It weighs 4 kilograms.")
    assert check.flagged and check.novel_facts == ["7"]


def test_new_proper_noun_is_flagged_but_sentence_start_is_not():
    assert hallucination_check("Built in Norway by Acme.", "Built by Acme.").novel_facts == ["norway"]
    # "Yes" starts the sentence: not a proper noun
    assert not hallucination_check("Yes, by Acme.", "Built by Acme.").flagged


def test_mostly_unrelated_content_is_flagged():
    check = hallucination_check("purple elephants dance quietly under moonlight", "4 kilograms")
    assert check.flagged and "content words" in check.reason
    # three novel content words are below the minimum of four
    assert not hallucination_check("purple elephants dance", "4 kilograms").flagged


def test_score_answer_bundles_everything():
    s = score_answer("4 kilograms", "4 kilograms.")
    assert (s.exact_match, s.token_f1, s.rouge_l, s.possible_hallucination) == (1.0, 1.0, 1.0, False)
