"""Free-text VLM answers to yes/no and to multiple-choice letters.

Parsing is strict on purpose: an answer that does not say yes or no (or name one choice) is
*unparsed* and counted apart, instead of being folded into a class the way POPE's reference
script folds every answer without a negation into "yes". Heavily compressed images make
models ramble; a strict parser shows that rather than hiding it in the accuracy.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

YES_WORDS = frozenset({"yes", "yeah", "yep", "true"})
NO_WORDS = frozenset({"no", "nope", "false"})
LETTERS = "ABCDEFGHIJ"

_LETTER_ALONE = re.compile(r"\(?([A-Za-z])\)?[.:]?")
_LETTER_FIRST = re.compile(r"\(?([A-Z])(?:\)|[.:,\]]|\s+(?:is|would be)\b)")
_LETTER_NAMED = re.compile(
    r"(?i:answer|option|choice)(?:\s+(?i:is|would be))?\s*[:\-]?\s*\(?([A-Z])\)?(?![A-Za-z])"
)


def _words(text: str) -> list[str]:
    return re.findall(r"[a-z]+", text.lower())


def parse_yes_no(text: str) -> str | None:
    """'yes', 'no', or None when the answer's first line commits to neither.

    The first word decides ("Yes, but ..." is yes); otherwise exactly one of yes/no must
    occur as a word ("The answer is no." is no; "Maybe yes, maybe no." and "There is a
    dog." are None).
    """
    lines = text.strip().splitlines()
    words = _words(lines[0]) if lines else []
    if not words:
        return None
    if words[0] in YES_WORDS:
        return "yes"
    if words[0] in NO_WORDS:
        return "no"
    said_yes, said_no = "yes" in words, "no" in words
    if said_yes != said_no:
        return "yes" if said_yes else "no"
    return None


def _normalise(text: str) -> str:
    return " ".join(_words(text))


def parse_choice(text: str, choices: Sequence[str]) -> str | None:
    """The letter (A, B, ...) of the choice the answer picks, or None.

    In order: a lone letter ("B", "(b)", "C."); a leading letter with punctuation ("B. Two",
    "(C) red", "D is correct"); a named letter ("The answer is B", "Option: C"); the text of
    exactly one choice ("Two", "I count two towels" when only one choice says "two").
    A leading "A" followed by a word ("A dog ...") is an article, not a choice.
    """
    answer = text.strip()
    valid = LETTERS[: len(choices)]
    match = (
        _LETTER_ALONE.fullmatch(answer)
        or _LETTER_FIRST.match(answer)
        or _LETTER_NAMED.search(answer)
    )
    if match:
        letter = match.group(1).upper()
        return letter if letter in valid else None
    said = _normalise(answer)
    if not said:
        return None
    options = [_normalise(choice) for choice in choices]
    exact = [valid[i] for i, option in enumerate(options) if option and option == said]
    if len(exact) == 1:
        return exact[0]
    contained = [
        valid[i]
        for i, option in enumerate(options)
        if option and re.search(rf"\b{re.escape(option)}\b", said)
    ]
    return contained[0] if len(contained) == 1 else None
