"""Free-text VLM answers to yes/no and to multiple-choice letters, read as a careful reader.

The answer's first non-empty line decides (models often put the answer first and explain on
later lines); markdown emphasis is ignored (`**Yes**`, `**B**`). Parsing is strict on
purpose: an answer that does not say yes or no (or name one choice), or that hedges ("I am
not sure", "I cannot tell"), is *unparsed* and counted apart, instead of being folded into a
class the way POPE's reference script folds it (that script counts an answer containing the
word "no" or "not" as no and every other answer as yes). Heavily compressed images make
models ramble; a strict parser shows that rather than hiding it in the accuracy.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

YES_WORDS = frozenset({"yes", "yeah", "yep", "true", "correct"})
NO_WORDS = frozenset({"no", "nope", "false", "incorrect"})
NEGATIONS = frozenset({"no", "not", "cannot", "none", "never", "nowhere"})  # + any "...n't"
LETTERS = "ABCDEFGHIJ"

_MARKDOWN = re.compile(r"[*_`#>~]+")
_HEDGE = re.compile(
    r"\b(?:not\s+(?:sure|certain|clear|possible\s+to\s+(?:tell|say|determine))|unsure|"
    r"uncertain|unclear|maybe|perhaps|possibly|"
    r"(?:can\s*not|can't|couldn't|could\s+not|unable\s+to)\s+(?:tell|say|determine|be\s+sure|"
    r"confirm|know)|(?:don't|do\s+not)\s+know|(?:hard|difficult|impossible)\s+to\s+"
    r"(?:tell|say|determine)|no\s+way\s+to\s+(?:tell|know))\b"
)
_LETTER_ALONE = re.compile(r"\(?([A-Za-z])\)?[.:]?")
_LETTER_FIRST = re.compile(r"\(?([A-Z])(?:\)|[.:,\]]|\s+(?:is|would be)\b)")
# a letter after answer/option/choice; lowercase only where it cannot be an article
# ("Answer: b", "option (c)", but not "the answer is a dog")
_LETTER_NAMED = re.compile(
    r"(?i:answer|option|choice)(?:\s+(?i:is|would be))?\s*[:\-]?\s*"
    r"(?:\(([A-Za-z])\)|([A-Z])(?![A-Za-z])|([a-z])(?=\s*(?:$|[.,;:!)\n])))",
    re.MULTILINE,
)


def _first_line(text: str) -> str:
    """The first line with any letter or digit, markdown emphasis removed."""
    for line in _MARKDOWN.sub("", text).splitlines():
        if re.search(r"[A-Za-z0-9]", line):
            return line.strip()
    return ""


def _words(text: str) -> list[str]:
    return re.findall(r"[a-z]+(?:'[a-z]+)?", text.lower().replace("\u2019", "'"))


def parse_yes_no(text: str) -> str | None:
    """'yes', 'no', or None when the answer's first line commits to neither.

    The first word decides ("Yes, but ..." is yes; "**No**" is no); a hedge is None ("I am
    not sure", "Maybe yes"); otherwise yes or a negation must occur, not both ("The answer
    is no." and "There isn't any bicycle." are no; "There is a dog." is None: without the
    question a statement is not an answer).
    """
    line = _first_line(text)
    words = _words(line)
    if not words:
        return None
    if words[0] in YES_WORDS:
        return "yes"
    if words[0] in NO_WORDS:
        return "no"
    if _HEDGE.search(line.lower().replace("\u2019", "'")):
        return None
    said_yes = "yes" in words
    said_no = any(w in NEGATIONS or w.endswith("n't") for w in words)
    if said_yes != said_no:
        return "yes" if said_yes else "no"
    return None


def _normalise(text: str) -> str:
    return " ".join(_words(text))


def _letter(answer: str, line: str) -> str | None:
    """A letter the answer names: alone or leading on the first line, or after
    answer/option/choice anywhere."""
    match = _LETTER_ALONE.fullmatch(line) or _LETTER_FIRST.match(line)
    if match:
        return match.group(1).upper()
    named = _LETTER_NAMED.search(_MARKDOWN.sub("", answer))
    if named:
        return next(g for g in named.groups() if g).upper()
    return None


def parse_choice(text: str, choices: Sequence[str]) -> str | None:
    """The letter (A, B, ...) of the choice the answer picks, or None.

    In order: a lone letter on the first line ("B", "(b)", "**C.**", "B" then an explanation
    on later lines); a leading letter with punctuation ("B. Two", "(C) red", "D is
    correct"); a named letter in any case ("The answer is B", "Option: C", "Answer: b");
    the text of exactly one choice on the first line ("Two", "I count two towels" when only
    one choice says "two"). A leading "A" followed by a word ("A dog ...") is an article,
    not a choice.
    """
    line = _first_line(text)
    valid = LETTERS[: len(choices)]
    letter = _letter(text, line)
    if letter:
        return letter if letter in valid else None
    said = _normalise(line)
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
