"""A prompt's language is detected with the real lingua models, from the first `MAX_CHARS`
characters only, and is None when the text says too little; unsupported codes are refused."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from modelyard.routing.language import MAX_CHARS, LanguageDetector, supported_languages

PROMPTS = {
    "en": [
        "Can you help me write a polite email to my landlord? The heating has been broken "
        "for a week and nobody has come to fix it.",
        "What is the difference between a list and a tuple in Python?",
        "Summarize the following meeting notes in three bullet points for my manager.",
        "I'm planning a weekend in Lisbon with two kids. Which neighbourhoods should we stay in?",
    ],
    "fr": [
        "Peux-tu m'aider à rédiger un courriel poli à mon propriétaire ? Le chauffage est en "
        "panne depuis une semaine et personne n'est venu le réparer.",
        "Quelle est la différence entre une liste et un tuple en Python ?",
        "Résume les notes de réunion suivantes en trois points pour ma responsable.",
        "Je prépare un week-end à Lisbonne avec deux enfants. Dans quel quartier loger ?",
    ],
    "es": [
        "¿Puedes ayudarme a escribir un correo educado a mi casero? La calefacción lleva una "
        "semana rota y nadie ha venido a arreglarla.",
        "¿Cuál es la diferencia entre una lista y una tupla en Python?",
        "Resume las siguientes notas de la reunión en tres puntos para mi jefa.",
        "Estoy organizando un fin de semana en Lisboa con dos niños. ¿En qué barrio nos alojamos?",
    ],
    "de": [
        "Kannst du mir helfen, eine höfliche E-Mail an meinen Vermieter zu schreiben? Die "
        "Heizung ist seit einer Woche kaputt und niemand ist gekommen, um sie zu reparieren.",
        "Was ist der Unterschied zwischen einer Liste und einem Tupel in Python?",
        "Fasse die folgenden Besprechungsnotizen in drei Stichpunkten für meine Chefin zusammen.",
        "Ich plane ein Wochenende in Lissabon mit zwei Kindern. In welchem Viertel sollten wir "
        "übernachten?",
    ],
    "it": [
        "Puoi aiutarmi a scrivere un'email cortese al mio padrone di casa? Il riscaldamento è "
        "rotto da una settimana e nessuno è venuto a ripararlo.",
        "Qual è la differenza tra una lista e una tupla in Python?",
        "Riassumi i seguenti appunti della riunione in tre punti per la mia responsabile.",
        "Sto organizzando un fine settimana a Lisbona con due bambini. In quale quartiere "
        "conviene alloggiare?",
    ],
}


@pytest.fixture(scope="module")
def five() -> Iterator[LanguageDetector]:
    yield LanguageDetector(["en", "fr", "es", "de", "it"])


@pytest.fixture(scope="module")
def english_and_french() -> Iterator[LanguageDetector]:
    # The smallest set a route can lead to; with two languages lingua's best guess always has
    # at least half the confidence, so only the length rule stops it guessing on a word.
    yield LanguageDetector(["fr"])


@pytest.mark.parametrize(
    ("language", "prompt"),
    [(language, prompt) for language, prompts in PROMPTS.items() for prompt in prompts],
)
def test_chat_prompts_are_detected(five: LanguageDetector, language: str, prompt: str) -> None:
    assert five.detect(prompt) == language


def test_english_is_always_among_the_languages(english_and_french: LanguageDetector) -> None:
    assert english_and_french.languages == {"en", "fr"}
    assert english_and_french.detect(PROMPTS["en"][0]) == "en"
    assert english_and_french.detect(PROMPTS["fr"][0]) == "fr"
    french_and_german = LanguageDetector(["fr", "de"])
    assert [french_and_german.detect(prompt) for prompt in PROMPTS["en"]] == ["en"] * 4


@pytest.mark.parametrize(
    "text",
    [
        "",
        "   \n\t ",
        "ok",
        "Hi!",
        "Hello",
        "Thanks!",
        "12345",
        "3.14 * 2 = 6.28",
        "2024-05-01 10:30",
    ],
)
def test_too_little_text_is_not_detected(english_and_french: LanguageDetector, text: str) -> None:
    assert english_and_french.detect(text) is None


@pytest.mark.parametrize("detector", ["five", "english_and_french"])
def test_text_no_language_is_confident_about_is_not_detected(
    request: pytest.FixtureRequest, detector: str
) -> None:
    # Placeholder Latin: no known language gets the share the threshold asks for, not even
    # against a single other language, where lingua's best guess always has half.
    assert request.getfixturevalue(detector).detect("Lorem ipsum dolor sit amet") is None


def test_only_the_first_max_chars_are_looked_at(five: LanguageDetector) -> None:
    english = (PROMPTS["en"][0] + " ") * (MAX_CHARS // len(PROMPTS["en"][0]) + 1)
    german = (PROMPTS["de"][0] + " ") * 20
    assert five.detect(german) == "de"
    assert five.detect(english[:MAX_CHARS] + german) == "en"


def test_a_language_that_starts_after_max_chars_is_not_seen(five: LanguageDetector) -> None:
    figures = ("1234 5678 " * MAX_CHARS)[:MAX_CHARS]
    assert five.detect(figures + PROMPTS["fr"][0]) is None


@pytest.mark.parametrize(
    ("languages", "named"),
    [(["xx"], "'xx'"), (["fr", "klingon"], "'klingon'"), (["FR"], "'FR'"), (["fra"], "'fra'")],
)
def test_unsupported_codes_are_refused_by_name(languages: list[str], named: str) -> None:
    with pytest.raises(ValueError, match=named):
        LanguageDetector(languages)


@pytest.mark.parametrize("languages", [[], ["en"]])
def test_english_alone_is_refused(languages: list[str]) -> None:
    with pytest.raises(ValueError, match="besides English"):
        LanguageDetector(languages)


def test_one_string_is_not_a_list_of_codes() -> None:
    with pytest.raises(TypeError):
        LanguageDetector("fr")


def test_supported_languages_are_the_codes_a_detector_accepts() -> None:
    supported = supported_languages()
    assert {"en", "fr", "es", "de", "it", "cy"} <= supported
    assert all(len(code) == 2 and code.islower() for code in supported)
    assert LanguageDetector(["cy"]).languages == {"cy", "en"}
