"""The language of a prompt, for routes that serve only some languages (`languages: [fr, de]`).

Detection is the `lingua-language-detector` library's, whose wheel embeds its models: nothing is
fetched at run time. The detector knows only the languages it is built with (those named by
routes and model cards, plus English), so a prompt in another language is either attributed to
the closest of them or, when that is unclear, reported as unknown (None).

Configuration: high-accuracy models, preloaded at build (five languages: 0.4-0.75 s and 140-185
MB once at start-up), because low-accuracy mode (25 ms, 15 MB) confidently misreads short chat
prompts and lazy loading ends at the same memory while loading each model (30-80 ms) on the
event loop at the first prompt in its language. lingua shares loaded models across the process's
detectors, so building again with one more language costs only that language (60-100 ms).

Cost and threads: `detect` looks at `MAX_CHARS` characters at most, about 0.3-0.4 ms per call
at the cap on this project's machines, so it is called inline from the event loop. lingua holds
the GIL while it works (two threads run no faster than one), so `asyncio.to_thread` would not
free the loop; a `LanguageDetector` is immutable after construction and lingua's detector is
safe to share between threads, so one instance serves every request.
"""

from __future__ import annotations

from collections.abc import Iterable

import lingua

# Only this many leading characters are looked at: the cost of a call is bounded whatever the
# prompt's length, and a chat prompt's language shows in its first sentences.
MAX_CHARS = 1000

# Fewer letters than this is about one short word ("Hello", "merci", "ok"), which is shared by
# or plausible in several languages; lingua's confidences for such text are noise, not evidence.
MIN_LETTERS = 8

# The most likely language must carry at least this share of lingua's confidence (the values
# are probabilities over the detector's languages and sum to 1). 0.6 sits clearly above the
# coin-flip 0.5 of the common English-plus-one set-up; on 60 short chat prompts (17-59
# characters) in en, fr, es, de and it it kept 55, all right, and let go those scoring
# 0.38-0.51, among them lingua's one mistake on that set (0.40). Prompts of a sentence or more
# mostly score above 0.9. None is the safe answer: the router then excludes no deployment for
# its language.
MIN_CONFIDENCE = 0.6

ENGLISH = "en"


class LanguageDetector:
    """Tells which of a fixed set of languages a prompt is written in (ISO 639-1 codes).

    Build it once at start-up, with the union of the languages that routes and model cards name;
    English is always added, so that English prompts are not forced into another language.
    """

    def __init__(self, languages: Iterable[str]) -> None:
        """`languages`: lowercase ISO 639-1 codes such as "fr". Raises ValueError naming the codes
        lingua does not support, or when no language other than English is given (there is then
        nothing to tell English apart from)."""
        if isinstance(languages, str):
            raise TypeError(f"languages is a collection of codes such as ['fr'], not {languages!r}")
        supported = _lingua_languages()
        requested = set(languages)
        unknown = sorted(requested - supported.keys())
        if unknown:
            raise ValueError(
                "the language detector does not support "
                + ", ".join(repr(code) for code in unknown)
                + "; use lowercase ISO 639-1 codes such as 'fr' or 'de'"
            )
        codes = frozenset(requested | {ENGLISH})
        if len(codes) < 2:
            raise ValueError(
                "the language detector needs at least one language besides English: "
                "with English alone it cannot tell an English prompt from any other"
            )
        self._codes = codes
        self._detector = (
            lingua.LanguageDetectorBuilder.from_languages(*(supported[code] for code in codes))
            .with_preloaded_language_models()
            .build()
        )

    @property
    def languages(self) -> frozenset[str]:
        """The ISO 639-1 codes this detector tells apart, English included."""
        return self._codes

    def detect(self, text: str) -> str | None:
        """The ISO 639-1 code of `text`'s language, judged on its first `MAX_CHARS` characters;
        None when they hold fewer than `MIN_LETTERS` letters or lingua's confidence in its best
        guess is below `MIN_CONFIDENCE`."""
        sample = text[:MAX_CHARS]
        if not _has_letters(sample, MIN_LETTERS):
            return None
        values = self._detector.compute_language_confidence_values(sample)
        if not values or values[0].value < MIN_CONFIDENCE:
            return None
        return values[0].language.iso_code_639_1.name.lower()


def supported_languages() -> frozenset[str]:
    """The ISO 639-1 codes (lowercase) that a `LanguageDetector` can be built with."""
    return frozenset(_lingua_languages())


def _lingua_languages() -> dict[str, lingua.Language]:
    return {language.iso_code_639_1.name.lower(): language for language in lingua.Language.all()}


def _has_letters(text: str, count: int) -> bool:
    """Whether `text` holds at least `count` letters (stops as soon as it has seen them)."""
    seen = 0
    for character in text:
        if character.isalpha():
            seen += 1
            if seen >= count:
                return True
    return False
