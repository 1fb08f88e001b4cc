"""Case results read back from the JSON of `/admin/evals/{id}/results` (`dataclasses.asdict`
field names, tags as a list; `report.result_to_json` writes that form)."""

from __future__ import annotations

import dataclasses
from typing import Any

from modelyard.evals.outcome import CaseResult

_FIELDS = {f.name for f in dataclasses.fields(CaseResult)}


def result_from_json(data: dict[str, Any]) -> CaseResult:
    """A stored result; fields the server adds (its own ids, times) are ignored."""
    known = {name: value for name, value in data.items() if name in _FIELDS}
    known["tags"] = tuple(known.get("tags") or ())
    known["extra"] = dict(known.get("extra") or {})
    known.setdefault("output", None)
    known.setdefault("output_sha256", "")
    return CaseResult(**known)


def result_key(result: CaseResult) -> tuple[str, str, int]:
    """What makes a result unique within its run: (model, case, repeat)."""
    return (result.model, result.case_id, result.repeat)
