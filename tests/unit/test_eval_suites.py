"""Loading task suites: YAML and JSONL files that load, and malformed ones refused whole before
anything runs, with the file, the case and the field named."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson
import pytest
import yaml

from modelyard.evals.suite import SuiteError, load_suite

CAPITAL = {
    "id": "capital-fr",
    "tags": ["qa", "fr"],
    "language": "fr",
    "messages": [{"role": "user", "content": "Quelle est la capitale de la France ?"}],
    "temperature": 0,
    "expect": {"scorer": "contains_any", "value": ["Paris"]},
}
INVOICE = {
    "id": "invoice-1",
    "tags": ["extraction"],
    "messages": [{"role": "user", "content": "Extract the total from: 'Total due: 42.50 EUR'"}],
    "response_format": {
        "type": "json_schema",
        "json_schema": {
            "name": "t",
            "schema": {"type": "object", "properties": {"total": {"type": "number"}}},
        },
    },
    "expect": {"scorer": "json_fields", "value": {"total": 42.5}},
}


def yaml_suite(directory: Path, cases: Any, **document: Any) -> Path:
    path = directory / "suite.yaml"
    path.write_text(yaml.safe_dump({**document, "cases": cases}, allow_unicode=True))
    return path


def jsonl_suite(directory: Path, *lines: str) -> Path:
    path = directory / "suite.jsonl"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def refusal(path: Path) -> SuiteError:
    with pytest.raises(SuiteError) as raised:
        load_suite(path)
    return raised.value


def with_expect(case: dict[str, Any], **expect: Any) -> dict[str, Any]:
    return {**case, "expect": expect}


def test_a_yaml_suite_loads_its_cases_tags_and_licence(tmp_path: Path) -> None:
    path = yaml_suite(tmp_path, [INVOICE, CAPITAL], license="CC0-1.0")
    suite = load_suite(path)
    assert (suite.name, suite.path, suite.license) == ("suite", path, "CC0-1.0")
    assert [case.id for case in suite.cases] == ["invoice-1", "capital-fr"]
    assert suite.tags() == ["extraction", "fr", "qa"]
    body = suite.cases[1].request_body("smol")
    assert body["model"] == "smol" and body["temperature"] == 0
    assert "tools" not in body and "max_tokens" not in body


def test_a_jsonl_suite_loads_one_case_per_line_and_skips_blank_lines(tmp_path: Path) -> None:
    path = jsonl_suite(tmp_path, orjson.dumps(INVOICE).decode(), "", orjson.dumps(CAPITAL).decode())
    suite = load_suite(path)
    assert [case.id for case in suite.cases] == ["invoice-1", "capital-fr"]
    assert suite.cases[0].expect.scorer == "json_fields" and suite.license is None


def test_a_yaml_file_without_a_cases_list_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "suite.yaml"
    path.write_text("- id: a\n")
    error = refusal(path)
    assert (
        str(error) == f"{path}, field 'cases': a YAML suite is a mapping with a list under 'cases'"
    )
    path.write_text("cases:\n  id: a\n")
    assert refusal(path).field == "cases"


def test_invalid_yaml_is_refused_naming_the_file(tmp_path: Path) -> None:
    path = tmp_path / "suite.yaml"
    path.write_text("cases: [\n")
    error = refusal(path)
    assert (error.path, error.case, error.field) == (path, None, None)
    assert str(error).startswith(f"{path}: invalid YAML")


def test_a_malformed_json_line_is_refused_naming_its_line(tmp_path: Path) -> None:
    path = jsonl_suite(tmp_path, orjson.dumps(CAPITAL).decode(), '{"id": "broken", "tags": [')
    error = refusal(path)
    assert error.case == "on line 2"
    assert str(error).startswith(f"{path}, case on line 2: invalid JSON")


def test_a_json_line_that_is_not_an_object_is_refused(tmp_path: Path) -> None:
    error = refusal(jsonl_suite(tmp_path, orjson.dumps(CAPITAL).decode(), "[1, 2]"))
    assert (error.case, error.problem) == ("on line 2", "a case must be a mapping")


def test_a_duplicate_id_is_refused_naming_the_case(tmp_path: Path) -> None:
    path = yaml_suite(tmp_path, [CAPITAL, INVOICE, CAPITAL])
    error = refusal(path)
    assert str(error) == (
        f"{path}, case 'capital-fr', field 'id': the id 'capital-fr' is used twice"
    )


def test_a_case_missing_a_field_is_refused_naming_the_field(tmp_path: Path) -> None:
    without_messages = {key: value for key, value in CAPITAL.items() if key != "messages"}
    error = refusal(yaml_suite(tmp_path, [INVOICE, without_messages]))
    assert (error.case, error.field, error.problem) == (
        "'capital-fr'",
        "messages",
        "Field required",
    )
    without_id = {key: value for key, value in CAPITAL.items() if key != "id"}
    error = refusal(yaml_suite(tmp_path, [INVOICE, without_id]))
    assert (error.case, error.field) == ("#2", "id")


def test_a_field_the_case_format_does_not_know_is_refused(tmp_path: Path) -> None:
    error = refusal(yaml_suite(tmp_path, [{**CAPITAL, "temprature": 0.2}]))
    assert (error.case, error.field, error.problem) == (
        "'capital-fr'",
        "temprature",
        "Extra inputs are not permitted",
    )


def test_an_unknown_scorer_is_refused(tmp_path: Path) -> None:
    error = refusal(yaml_suite(tmp_path, [with_expect(CAPITAL, scorer="fuzzy", value="Paris")]))
    assert (error.case, error.field) == ("'capital-fr'", "expect.scorer")


def test_an_unknown_scorer_option_is_refused_naming_the_option(tmp_path: Path) -> None:
    case = with_expect(CAPITAL, scorer="contains_any", value=["Paris"], options={"fuzzy": True})
    path = yaml_suite(tmp_path, [INVOICE, case])
    assert str(refusal(path)) == (
        f"{path}, case 'capital-fr', field 'expect.options.fuzzy': the contains_any scorer has "
        "no option 'fuzzy' (it takes case_sensitive)"
    )


@pytest.mark.parametrize(
    ("expect", "field", "problem_starts"),
    [
        ({"scorer": "regex", "value": "Par(is"}, "expect.value", "the regular expression does"),
        ({"scorer": "json_schema", "value": {"type": 12}}, "expect.value", "not a valid JSON"),
        ({"scorer": "json_fields", "value": {"items[": 1}}, "expect.value", "the path 'items['"),
        ({"scorer": "tool_call", "value": {"arguments": {}}}, "expect.value.name", "the tool_call"),
        ({"scorer": "label", "value": "x", "options": {"labels": ["a"]}}, "expect.value", "the ex"),
        ({"scorer": "judge", "value": "Names Paris."}, "expect.options.deployment", "the judge"),
        ({"scorer": "numeric", "value": 1, "options": {"pick": 2}}, "expect.options.pick", "Input"),
    ],
)
def test_scorer_values_and_options_are_checked_before_anything_runs(
    tmp_path: Path, expect: dict[str, Any], field: str, problem_starts: str
) -> None:
    path = jsonl_suite(tmp_path, orjson.dumps({**CAPITAL, "expect": expect}).decode())
    error = refusal(path)
    assert (error.path, error.case, error.field) == (path, "'capital-fr'", field)
    assert error.problem.startswith(problem_starts)


def test_an_empty_suite_is_refused(tmp_path: Path) -> None:
    assert refusal(yaml_suite(tmp_path, [])).problem == "the suite has no cases"
    assert refusal(jsonl_suite(tmp_path, "", "  ")).problem == "the suite has no cases"


def test_a_missing_file_is_refused_naming_it(tmp_path: Path) -> None:
    path = tmp_path / "nowhere.yaml"
    assert str(refusal(path)) == f"{path}: cannot be read (No such file or directory)"


def test_an_invalid_case_id_is_refused(tmp_path: Path) -> None:
    error = refusal(yaml_suite(tmp_path, [{**CAPITAL, "id": "has space"}]))
    assert (error.case, error.field) == ("'has space'", "id")
