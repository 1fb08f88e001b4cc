"""The prompt-language detector the router uses, built only when some route names languages.

Most gateways have no such route and never pay for lingua's models (about 30 MB a language).
The detector tells apart a few widely used languages (`COMPARISON`), those the catalog's model
cards list (that lingua knows) and every language a route names: a route's own languages alone
would force a German prompt into French or English, and `languages: [en]` could reject nothing.
It is built at start-up when a route of the catalog file names languages, and again, in the admin
request's thread, when a route created at runtime names one it lacks; a route that arrives from
another replica with a new language has it built on its first request.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterable, Sequence

from modelyard.catalog.catalog import Catalog
from modelyard.routing.language import LanguageDetector, supported_languages

log = logging.getLogger(__name__)

# Always told apart, so that a prompt in one of them is never taken for a route's language.
COMPARISON = frozenset({"en", "fr", "de", "es", "it", "pt"})


class PromptLanguage:
    def __init__(self, catalog: Catalog) -> None:
        known = supported_languages()
        self._base = COMPARISON | frozenset(
            code for card in catalog.cards for code in card.languages if code in known
        )
        self._detector: LanguageDetector | None = None
        self._lock = threading.Lock()
        named = [code for route in catalog.routes for code in route.languages or ()]
        if named:
            self.check(named)

    def check(self, languages: Sequence[str]) -> None:
        """Make sure these languages can be detected (building the detector when it lacks one);
        ValueError for a code lingua does not know."""
        if not languages:
            return
        unknown = sorted(set(languages) - supported_languages())
        if unknown:
            raise ValueError(
                f"languages: the language detector does not support {', '.join(unknown)}"
            )
        self._detector_for(languages)

    def detect(self, text: str, languages: Iterable[str]) -> str | None:
        """The prompt's language, told apart from every language the catalog knows and those
        the route names; None when unsure."""
        return self._detector_for(languages).detect(text)

    def _detector_for(self, languages: Iterable[str]) -> LanguageDetector:
        detector = self._detector
        wanted = set(languages)
        if detector is not None and wanted <= detector.languages:
            return detector
        with self._lock:
            detector = self._detector
            if detector is None or not wanted <= detector.languages:
                codes = self._base | wanted | (detector.languages if detector else frozenset())
                log.info("building the language detector for %s", ", ".join(sorted(codes)))
                detector = LanguageDetector(codes)
                self._detector = detector
            return detector
