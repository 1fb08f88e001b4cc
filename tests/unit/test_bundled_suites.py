"""The suites Modelyard ships: each loads, is the size and shape the docs promise, states its
licence, and every case is a request the gateway (and the local engine's grammar) accepts with an
expectation that can be met: expected values fit the schemas and tools the case declares, labels
are the ones the prompt names, and no expected answer can be passed by echoing the question."""

from __future__ import annotations

import asyncio
import itertools
import re
import tomllib
import unicodedata
from pathlib import Path
from typing import Any

import jsonschema
import llguidance
import orjson
import pytest

from modelyard.evals.bundled import BUNDLED_SUITES, SUITES_DIR, bundled_suite
from modelyard.evals.outcome import CaseOutput, ToolCall
from modelyard.evals.scorers import check_expectation, score
from modelyard.evals.suite import Case, SuiteError, load_suite
from modelyard.protocol.chat import ChatCompletionRequest
from modelyard.providers.llamacpp.grammar import grammar_source
from modelyard.structured.contract import contract_for

PYPROJECT = Path(__file__).resolve().parents[2] / "pyproject.toml"
LANGUAGES = {"en", "fr", "es", "de", "it"}
NUMBER = re.compile(r"-?\d+(?:\.\d+)?")
PATH_STEP = re.compile(r"([^.\[\]]+)|\[(\d+)\]")


def cases_of(name: str) -> tuple[Case, ...]:
    return load_suite(bundled_suite(name)).cases


def prompt_text(case: Case) -> str:
    return "\n".join(str(message.get("content", "")) for message in case.messages)


def without_accents(text: str) -> str:
    decomposed = unicodedata.normalize("NFKD", text)
    return "".join(char for char in decomposed if not unicodedata.combining(char))


def subschema_at(schema: dict[str, Any], path: str) -> dict[str, Any]:
    """The schema of the value at a json_fields path (`total`, `items[0].name`)."""
    for step in path.split("."):
        match = re.fullmatch(r"([A-Za-z_][A-Za-z0-9_]*)((?:\[\d+\])*)", step)
        assert match is not None, f"path step {step!r} of {path!r}"
        schema = schema["properties"][match.group(1)]
        for _ in re.findall(r"\[\d+\]", match.group(2)):
            assert schema["type"] == "array", f"{path!r} indexes a non-array"
            schema = schema["items"]
    return schema


def document_with(fields: dict[str, Any]) -> dict[str, Any]:
    """A JSON document holding each `path: value` of a json_fields expectation. List items a
    path skips over are empty objects (`items[1].name` makes two items)."""
    document: dict[str, Any] = {}
    for path, value in fields.items():
        steps = [int(index) if index else name for name, index in PATH_STEP.findall(path)]
        node: Any = document
        for step, following in itertools.pairwise(steps):
            if isinstance(step, int):
                node.extend({} for _ in range(step + 1 - len(node)))
            else:
                node.setdefault(step, [] if isinstance(following, int) else {})
            node = node[step]
        node[steps[-1]] = value
    return document


def right_answers(case: Case) -> list[CaseOutput]:
    """Answers that meet the case's expectation as written (none built for json_schema)."""
    expect = case.expect
    if expect.scorer == "label":
        return [CaseOutput(expect.value), CaseOutput(f"**{expect.value.capitalize()}.**")]
    if expect.scorer == "numeric":
        return [CaseOutput(f"{expect.value:g}"), CaseOutput(f"So the answer is {expect.value:g}.")]
    if expect.scorer == "contains_any":
        return [CaseOutput(f"{form.capitalize()}.") for form in expect.value]
    if expect.scorer == "tool_call":
        arguments = orjson.dumps(expect.value["arguments"]).decode()
        return [CaseOutput("", (ToolCall(expect.value["name"], arguments),), "tool_calls")]
    if expect.scorer == "json_fields":
        return [CaseOutput(orjson.dumps(document_with(expect.value)).decode())]
    assert expect.scorer == "json_schema", case.id
    return []


@pytest.mark.parametrize("name", BUNDLED_SUITES)
def test_a_bundled_suite_loads_with_its_licence_and_20_to_50_cases(name: str) -> None:
    suite = load_suite(bundled_suite(name))
    assert suite.name == name
    assert 20 <= len(suite.cases) <= 50
    assert suite.license is not None and suite.license.startswith("Apache-2.0.")
    assert "no benchmark data copied" in suite.license
    assert len({case.id for case in suite.cases}) == len(suite.cases)


def test_the_bundled_names_are_exactly_the_suite_files_shipped() -> None:
    assert {path.stem for path in SUITES_DIR.glob("*.yaml")} == set(BUNDLED_SUITES)
    package_data = tomllib.loads(PYPROJECT.read_text())["tool"]["setuptools"]["package-data"]
    assert {"evals/suites/*.yaml", "evals/suites/*.md"} <= set(package_data["modelyard"])


def test_the_suites_licence_is_the_projects_licence() -> None:
    project = tomllib.loads(PYPROJECT.read_text())["project"]
    assert project["license"] == {"text": "Apache-2.0"}
    licence = (SUITES_DIR / "LICENSE.md").read_text()
    assert "Apache License, Version 2.0" in licence
    assert "written by the Modelyard authors for this project" in licence
    for name in BUNDLED_SUITES:
        assert f"`{name}.yaml`" in licence


def test_an_unknown_suite_name_is_refused_naming_the_bundled_ones() -> None:
    with pytest.raises(SuiteError) as refused:
        bundled_suite("extractions")
    assert "extractions" in str(refused.value)
    for name in BUNDLED_SUITES:
        assert name in str(refused.value)


def test_case_ids_are_unique_across_the_bundled_suites() -> None:
    # A run may hold several suites, and results are stored per (run, model, case id, repeat).
    ids = [case.id for name in BUNDLED_SUITES for case in cases_of(name)]
    assert len(set(ids)) == len(ids)


@pytest.mark.parametrize("name", BUNDLED_SUITES)
def test_every_case_is_short_deterministic_and_tagged_with_its_use_case(name: str) -> None:
    for case in cases_of(name):
        assert case.temperature == 0, case.id
        assert case.max_tokens is not None and case.max_tokens <= 64, case.id
        if name == "multilingual":
            assert case.tags == ["qa", case.language], case.id
        else:
            assert case.tags == [name], case.id
            assert case.language is None, case.id


@pytest.mark.parametrize("name", BUNDLED_SUITES)
def test_every_expectation_passes_its_scorers_checks(name: str) -> None:
    for case in cases_of(name):
        assert check_expectation(case.expect) is None, case.id


@pytest.mark.parametrize("name", BUNDLED_SUITES)
def test_a_right_answer_passes_every_case_and_echoing_the_question_fails(name: str) -> None:
    for case in cases_of(name):
        for answer in right_answers(case):
            assert asyncio.run(score(case, answer)).passed, (case.id, answer)
        echo = CaseOutput(str(case.messages[-1]["content"]))
        assert not asyncio.run(score(case, echo)).passed, case.id


@pytest.mark.parametrize("name", BUNDLED_SUITES)
def test_every_case_is_a_request_the_gateway_and_the_local_grammar_accept(name: str) -> None:
    for case in cases_of(name):
        body = orjson.dumps(case.request_body("smollm2"))
        request = ChatCompletionRequest.model_validate_json(body)
        # Raises UnsupportedSchema for a schema keyword the gateway cannot enforce.
        contract = contract_for(request)
        grammar = grammar_source(contract)
        if grammar is not None:
            assert llguidance.LLMatcher.validate_grammar(grammar) == "", case.id


def test_extraction_expectations_fit_the_schema_the_case_asks_for() -> None:
    scorers = set()
    for case in cases_of("extraction"):
        assert case.response_format is not None, case.id
        schema = case.response_format["json_schema"]["schema"]
        scorers.add(case.expect.scorer)
        if case.expect.scorer == "json_schema":
            assert case.expect.value == schema, case.id
            continue
        assert case.expect.scorer == "json_fields", case.id
        for path, expected in case.expect.value.items():
            jsonschema.validate(expected, subschema_at(schema, path))
    assert scorers == {"json_fields", "json_schema"}


def test_tool_expectations_name_a_declared_tool_with_arguments_it_accepts() -> None:
    called = set()
    for case in cases_of("tools"):
        assert case.tools is not None and case.tool_choice in ("auto", "required"), case.id
        assert case.expect.scorer == "tool_call", case.id
        assert case.expect.options == {"arguments": "subset"}, case.id
        expected = case.expect.value
        declared = {tool["function"]["name"]: tool["function"] for tool in case.tools}
        parameters = declared[expected["name"]]["parameters"]
        assert expected["arguments"], case.id
        for argument, value in expected["arguments"].items():
            jsonschema.validate(value, parameters["properties"][argument])
        called.add(expected["name"])
    assert called == {"get_weather", "convert_currency", "create_ticket", "search_orders"}


def test_classification_labels_are_the_ones_the_prompt_names_and_examples_show() -> None:
    cases = cases_of("classification")
    asked = {str(case.messages[-1]["content"]) for case in cases}
    expected_labels = set()
    for case in cases:
        assert case.expect.scorer == "label", case.id
        labels = case.expect.options["labels"]
        assert case.expect.value in labels, case.id
        instruction, *examples, message = case.messages
        assert f"Labels: {', '.join(labels)}." in instruction["content"], case.id
        assert message["role"] == "user", case.id
        example_labels = {turn["content"] for turn in examples if turn["role"] == "assistant"}
        assert example_labels == set(labels), case.id
        # A worked example that is also a case would hand the model that case's answer.
        assert not {turn["content"] for turn in examples} & asked, case.id
        expected_labels.add(case.expect.value)
    assert expected_labels == set(labels)


def test_arithmetic_answers_are_not_numbers_already_in_the_question() -> None:
    # The scorer takes the last number of the reply: echoing the question must not pass.
    for case in cases_of("arithmetic"):
        assert case.expect.scorer == "numeric", case.id
        assert case.expect.options["pick"] == "last", case.id
        numbers = {float(number) for number in NUMBER.findall(prompt_text(case))}
        assert float(case.expect.value) not in numbers, case.id


def test_multilingual_covers_five_languages_with_5_to_10_questions_each() -> None:
    per_language: dict[str | None, int] = {}
    for case in cases_of("multilingual"):
        per_language[case.language] = per_language.get(case.language, 0) + 1
    assert set(per_language) == LANGUAGES
    assert all(5 <= count <= 10 for count in per_language.values()), per_language


def test_multilingual_answers_accept_unaccented_spellings_and_are_not_in_the_question() -> None:
    accented_cases = 0
    for case in cases_of("multilingual"):
        assert case.expect.scorer == "contains_any", case.id
        accepted = case.expect.value
        question = prompt_text(case).casefold()
        for answer in accepted:
            assert without_accents(answer) in accepted, (case.id, answer)
            assert answer.casefold() not in question, (case.id, answer)
        accented_cases += any(without_accents(answer) != answer for answer in accepted)
    assert accented_cases >= 5
