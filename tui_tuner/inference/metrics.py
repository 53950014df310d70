"""Scores for a generated answer against a reference answer (pure Python, no model).

Used by `tui-tuner eval` for every held-out prompt that has a reference:

    from tui_tuner.inference.metrics import score_answer
    score_answer("4 kg.", "It weighs 4 kilograms.", prompt="How heavy is Bramble?")

- exact match: the normalized texts are equal (1.0) or not (0.0);
- token F1: harmonic mean of token precision and recall over the normalized tokens (SQuAD style);
- ROUGE-L: F1 of the longest common subsequence of normalized tokens;
- possible hallucination: see `hallucination_check` (a simple rule, documented in
  docs/chat-eval-export.md).

Normalization: lower case, punctuation removed, the articles a/an/the dropped, whitespace collapsed.
"""

from __future__ import annotations

import re
import string
import unicodedata
from collections import Counter
from dataclasses import asdict, dataclass, field

_ARTICLES = re.compile(r"\b(a|an|the)\b")
_PUNCT = set(string.punctuation) | {"“", "”", "‘", "’", "…", "–", "—"}
_NUMBER = re.compile(r"^[+-]?\d+(?:[.,]\d+)*$")
_WORD = re.compile(r"[\w'’.,+-]+", re.UNICODE)

# Common function words that state no fact on their own; only content words can be "new facts".
STOPWORDS = frozenset("""
a an the and or but if then else of to in on at by for with from as is are was were be been being it its
this that these those there here i you he she we they me him her us them my your his our their what which who
whom whose when where why how not no yes do does did done so too very can could should would will shall may
might must have has had having about into over under than also just only some any all each every both either
neither more most less least much many few other such same own up down out off again once
""".split())


def normalize(text: str) -> str:
    """Lower case, no punctuation, no articles, single spaces."""
    text = unicodedata.normalize("NFKC", text).lower()
    text = "".join(" " if ch in _PUNCT else ch for ch in text)
    text = _ARTICLES.sub(" ", text)
    return " ".join(text.split())


def tokens(text: str) -> list[str]:
    """The normalized tokens of `text`."""
    return normalize(text).split()


def exact_match(prediction: str, reference: str) -> float:
    """1.0 when the normalized texts are equal, else 0.0."""
    return 1.0 if normalize(prediction) == normalize(reference) else 0.0


def token_f1(prediction: str, reference: str) -> float:
    """Token-overlap F1 (multiset). Two empty texts score 1.0; one empty text scores 0.0."""
    pred, ref = tokens(prediction), tokens(reference)
    if not pred and not ref:
        return 1.0
    if not pred or not ref:
        return 0.0
    common = sum((Counter(pred) & Counter(ref)).values())
    if common == 0:
        return 0.0
    precision, recall = common / len(pred), common / len(ref)
    return 2 * precision * recall / (precision + recall)


def lcs_length(a: list[str], b: list[str]) -> int:
    """Length of the longest common subsequence of two token lists."""
    if len(a) < len(b):
        a, b = b, a
    previous = [0] * (len(b) + 1)
    for x in a:
        current = [0]
        for j, y in enumerate(b):
            current.append(previous[j] + 1 if x == y else max(previous[j + 1], current[j]))
        previous = current
    return previous[-1]


def rouge_l(prediction: str, reference: str) -> float:
    """ROUGE-L F1: LCS-based precision and recall of normalized tokens, combined harmonically."""
    pred, ref = tokens(prediction), tokens(reference)
    if not pred and not ref:
        return 1.0
    if not pred or not ref:
        return 0.0
    lcs = lcs_length(pred, ref)
    if lcs == 0:
        return 0.0
    precision, recall = lcs / len(pred), lcs / len(ref)
    return 2 * precision * recall / (precision + recall)


# ---------------------------------------------------------------------------- hallucination rule

NOVEL_CONTENT_MIN_WORDS = 4
"""At least this many content words absent from the reference and prompt ..."""
NOVEL_CONTENT_MIN_SHARE = 0.5
"""... making up more than this share of the answer's content words flags the answer."""


def fact_tokens(text: str) -> set[str]:
    """Numbers and proper nouns in `text` (normalized): the words that state checkable facts.

    A proper noun is a capitalized word that does not start a sentence.
    """
    facts: set[str] = set()
    sentence_start = True
    for raw in _WORD.findall(text):
        word = raw.strip("'’.,+-")
        ends_sentence = raw.endswith((".", "!", "?")) or raw in {".", "!", "?"}
        if word:
            bare = word.replace(",", "")
            if _NUMBER.match(bare):
                facts.add(bare.replace(",", "").rstrip("0").rstrip(".") if "." in bare else bare)
            elif word[0].isupper() and not sentence_start:
                facts.update(tokens(word))
            sentence_start = False
        if ends_sentence:
            sentence_start = True
    return facts


def _number_forms(text: str) -> set[str]:
    return {t for t in fact_tokens(text) if _NUMBER.match(t)}


@dataclass
class HallucinationCheck:
    """Whether an answer is flagged as a possible hallucination, and why."""

    flagged: bool
    novel_facts: list[str] = field(default_factory=list)
    novel_content_words: list[str] = field(default_factory=list)
    reason: str = ""


def hallucination_check(answer: str, reference: str, prompt: str = "") -> HallucinationCheck:
    """Flag an answer that states facts found in neither the reference nor the prompt.

    The rule (deliberately simple, so a reader can predict it):
    1. a *fact token* (a number, or a capitalized word that does not start a sentence) in the
       answer that appears in neither the reference nor the prompt flags the answer;
    2. so do at least `NOVEL_CONTENT_MIN_WORDS` content words (not stop words) absent from the
       reference and prompt when they are more than `NOVEL_CONTENT_MIN_SHARE` of the answer's
       content words.
    Paraphrases that reuse the reference's numbers and names are not flagged.
    """
    known_words = set(tokens(reference)) | set(tokens(prompt))
    known_numbers = _number_forms(reference) | _number_forms(prompt)
    novel_facts = []
    for fact in sorted(fact_tokens(answer)):
        known = fact in known_numbers if _NUMBER.match(fact) else fact in known_words
        if not known:
            novel_facts.append(fact)
    content = [t for t in tokens(answer) if t not in STOPWORDS]
    novel_content = sorted({t for t in content if t not in known_words})
    novel_count = sum(1 for t in content if t not in known_words)
    reasons = []
    if novel_facts:
        reasons.append("states " + ", ".join(novel_facts) + " (not in the reference or prompt)")
    if novel_count >= NOVEL_CONTENT_MIN_WORDS and content and novel_count / len(content) > NOVEL_CONTENT_MIN_SHARE:
        reasons.append(f"{novel_count} of {len(content)} content words are not in the reference or prompt")
    return HallucinationCheck(bool(reasons), novel_facts, novel_content, "; ".join(reasons))


@dataclass
class AnswerScore:
    """Every score for one answer."""

    exact_match: float
    token_f1: float
    rouge_l: float
    possible_hallucination: bool
    hallucination_reason: str = ""

    def as_dict(self) -> dict:
        return asdict(self)


def score_answer(answer: str, reference: str, prompt: str = "") -> AnswerScore:
    """Exact match, token F1, ROUGE-L and the hallucination flag of `answer` against `reference`."""
    check = hallucination_check(answer, reference, prompt)
    return AnswerScore(exact_match(answer, reference), token_f1(answer, reference), rouge_l(answer, reference),
                       check.flagged, check.reason)
