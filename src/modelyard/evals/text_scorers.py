"""The scorers that read the answer as text: exact, regex, contains_all/any, numeric, label.

Each grades pass/fail (`scorer_spec.py` says what a scorer is made of). A `detail` never quotes
the answer (the project may keep no copy of it); it names expected values.
"""

from __future__ import annotations

import math
import re
import unicodedata
from typing import Annotated, Literal

from pydantic import Field

from modelyard.evals.answer_numbers import numbers_in
from modelyard.evals.outcome import CaseOutput, Score
from modelyard.evals.scorer_spec import GradedSpec, Options, Problem, verdict

_WHITESPACE = re.compile(r"\s+")


class TextOptions(Options):
    case_sensitive: bool = False
    strip: bool = True
    collapse_whitespace: bool = True
    strip_punctuation: bool = False
    # Compatibility forms (full-width letters, ligatures, `ﬁ`) compare as their plain forms.
    nfkc: bool = True


def normalise(text: str, options: TextOptions) -> str:
    if options.nfkc:
        text = unicodedata.normalize("NFKC", text)
    if options.strip_punctuation:
        text = "".join(char for char in text if not unicodedata.category(char).startswith("P"))
    if options.collapse_whitespace:
        text = _WHITESPACE.sub(" ", text)
    if options.strip:
        text = text.strip()
    return text if options.case_sensitive else text.casefold()


class ExactMatch(GradedSpec):
    """The answer equals `value`, both normalised by the options."""

    value: str
    options: TextOptions = TextOptions()

    def grade(self, output: CaseOutput) -> Score:
        passed = normalise(output.content, self.options) == normalise(self.value, self.options)
        return verdict(passed, "" if passed else "differs from the expected text")


class RegexOptions(Options):
    ignore_case: bool = False
    # The pattern must match the whole answer (surrounding whitespace aside), not a part of it.
    full_match: bool = False


class RegexMatch(GradedSpec):
    """`value`, a Python regular expression, is found in the answer."""

    value: str
    options: RegexOptions = RegexOptions()

    def problem(self) -> Problem | None:
        try:
            re.compile(self.value)
        except re.error as error:
            return "value", f"the regular expression does not compile ({error})"
        return None

    def grade(self, output: CaseOutput) -> Score:
        pattern = re.compile(self.value, re.IGNORECASE if self.options.ignore_case else 0)
        if self.options.full_match:
            found = pattern.fullmatch(output.content.strip()) is not None
        else:
            found = pattern.search(output.content) is not None
        return verdict(found, "" if found else f"no match for /{self.value}/")


class ContainsOptions(Options):
    case_sensitive: bool = False


Needles = Annotated[list[Annotated[str, Field(min_length=1)]], Field(min_length=1)]


def _comparable(text: str, case_sensitive: bool) -> str:
    text = " ".join(unicodedata.normalize("NFKC", text).split())
    return text if case_sensitive else text.casefold()


class ContainsAll(GradedSpec):
    """Every string of `value` appears in the answer (NFKC, whitespace runs as one space)."""

    value: Needles
    options: ContainsOptions = ContainsOptions()

    def grade(self, output: CaseOutput) -> Score:
        answer = _comparable(output.content, self.options.case_sensitive)
        missing = [
            needle
            for needle in self.value
            if _comparable(needle, self.options.case_sensitive) not in answer
        ]
        return verdict(not missing, "missing: " + ", ".join(map(repr, missing)) if missing else "")


class ContainsAny(GradedSpec):
    """At least one string of `value` appears in the answer (compared as for contains_all)."""

    value: Needles
    options: ContainsOptions = ContainsOptions()

    def grade(self, output: CaseOutput) -> Score:
        answer = _comparable(output.content, self.options.case_sensitive)
        found = any(_comparable(n, self.options.case_sensitive) in answer for n in self.value)
        return verdict(found, "" if found else f"none of the {len(self.value)} strings appears")


class NumericOptions(Options):
    abs_tol: Annotated[float, Field(ge=0)] = 1e-9
    rel_tol: Annotated[float, Field(ge=0)] = 1e-9
    # Which number of the answer is its answer; "only" fails an answer with several.
    pick: Literal["last", "first", "only"] = "last"


class NumericMatch(GradedSpec):
    """The picked number of the answer (read as `answer_numbers` documents) is within the
    tolerances of `value` (math.isclose: abs_tol or rel_tol, whichever is looser)."""

    value: float
    options: NumericOptions = NumericOptions()

    def problem(self) -> Problem | None:
        if not math.isfinite(self.value):
            return "value", "the expected number must be finite"
        return None

    def grade(self, output: CaseOutput) -> Score:
        numbers = numbers_in(output.content)
        if not numbers:
            return verdict(False, "no number in the answer")
        if self.options.pick == "only" and len(numbers) > 1:
            return verdict(False, f"{len(numbers)} numbers in the answer, expected only one")
        found = numbers[0] if self.options.pick == "first" else numbers[-1]
        close = math.isclose(
            found, self.value, rel_tol=self.options.rel_tol, abs_tol=self.options.abs_tol
        )
        return verdict(
            close, "" if close else f"the {self.options.pick} number is not {self.value:g}"
        )


class LabelOptions(Options):
    labels: Annotated[list[Annotated[str, Field(min_length=1)]], Field(min_length=1)]


def label_form(text: str) -> str:
    """A label as compared: NFKC, case folded, whitespace runs as one space, and punctuation,
    quotes, backticks and emphasis marks trimmed from both ends (`**Positive.**` is `positive`)."""
    text = " ".join(unicodedata.normalize("NFKC", text).casefold().split())
    return text.strip(" " + "".join({char for char in text if _is_trim_mark(char)}))


def _is_trim_mark(char: str) -> bool:
    return char == "`" or unicodedata.category(char).startswith("P")


class LabelMatch(GradedSpec):
    """The whole answer, normalised, is exactly one of `options.labels`, and it is `value`."""

    value: str
    options: LabelOptions

    def problem(self) -> Problem | None:
        forms = [label_form(label) for label in self.options.labels]
        for index, form in enumerate(forms):
            if not form:
                return f"options.labels.{index}", "a label must hold a letter or digit"
            if form in forms[:index]:
                return f"options.labels.{index}", f"the label {form!r} is listed twice"
        if label_form(self.value) not in forms:
            return "value", f"the expected label {self.value!r} is not one of options.labels"
        return None

    def grade(self, output: CaseOutput) -> Score:
        answer, expected = label_form(output.content), label_form(self.value)
        if answer == expected:
            return verdict(True)
        known = {label_form(label): label for label in self.options.labels}
        if answer in known:
            return verdict(False, f"answered the label {known[answer]!r}")
        return verdict(False, "the answer is not one of the labels")
