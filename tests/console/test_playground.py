"""The playground in a real Chromium against the bundled SmolLM2: an answer streams token by token
and shows its deployment, tokens (equal to the usage record), cost and latency; tools and JSON
schemas are checked in the page before anything is sent and again by the gateway; two panes
stream side by side; "view code" shows the same call for three SDKs, which run as shown, without
the key; a viewer is not offered the playground and its forged POST is refused."""

from __future__ import annotations

import ast
import json
import os
import re
import subprocess
import sys
from collections.abc import Iterator

import jsonschema
import pytest
from playwright.sync_api import Locator, Page, Request, expect

from modelyard.api.console.playground import (
    EXAMPLE_SCHEMA,
    EXAMPLE_TOOLS,
    PlaygroundCall,
    chat_body,
)
from modelyard.api.console.playground_code import azure_code, mistral_code, openai_code
from modelyard.money import dollars
from tests.console.conftest import ConsoleClient, Key, new_key, new_project, shot, sign_in
from tests.support.gateway import GatewayProcess
from tests.support.ledger_rows import request_record

PLAYGROUND = "/console/playground"


@pytest.fixture(autouse=True)
def nothing_blocked(request: pytest.FixtureRequest) -> Iterator[None]:
    """Whatever the Content-Security-Policy blocks would break the page: nothing may be."""
    if "page" not in request.fixturenames:
        yield
        return
    page: Page = request.getfixturevalue("page")
    blocked: list[str] = []
    page.on("console", lambda m: blocked.append(m.text) if "Security Policy" in m.text else None)
    yield
    assert blocked == []


@pytest.fixture()
def developer(console: GatewayProcess) -> Key:
    return new_key(console, new_project(console, "playground"), "developer")


def open_playground(page: Page, console: GatewayProcess, key: Key) -> None:
    sign_in(page, console, key.key, then=PLAYGROUND)
    expect(page.get_by_role("heading", level=1)).to_have_text("Playground")


def ask(page: Page, message: str, *, max_tokens: int = 40, greedy: bool = False) -> None:
    page.get_by_label("Message").fill(message)
    page.get_by_label("Max tokens").fill(str(max_tokens))
    if greedy:
        # A sampled answer may ramble inside a string until max_tokens cuts its JSON (the gateway
        # then ends the stream with an error): greedy and roomy, the answer is the short one.
        page.get_by_label("Temperature").fill("0")
        page.get_by_label("Seed").fill("7")
    page.get_by_role("button", name="Send").click()


def pane(page: Page, which: str = "a") -> Locator:
    return page.locator(f"#pane-{which}")


def stat(page: Page, name: str, which: str = "a") -> str:
    return pane(page, which).locator(f'[data-stat="{name}"]').inner_text()


def wait_done(page: Page, which: str = "a") -> None:
    expect(pane(page, which).locator('[data-part="status"]')).to_have_text("Done.", timeout=60_000)
    expect(pane(page, which).locator('[data-stat="cost"]')).to_contain_text("$")


def chat_requests(page: Page, path: str = "/console/playground/chat") -> list[Request]:
    seen: list[Request] = []
    page.on("request", lambda request: seen.append(request) if path in request.url else None)
    return seen


# -- streaming and its figures ---------------------------------------------------------------------


def test_an_answer_streams_token_by_token_then_shows_deployment_tokens_cost_and_latency(
    console: GatewayProcess, page: Page, developer: Key
) -> None:
    open_playground(page, console, developer)
    # Every change of the answer's text, as the page makes it.
    page.evaluate(
        """() => {
          window.lengths = [];
          const text = document.querySelector('#pane-a [data-part="text"]');
          new MutationObserver(() => window.lengths.push(text.textContent.length))
            .observe(text, {childList: true, characterData: true, subtree: true});
        }"""
    )

    ask(page, "Write two sentences about the sea.", max_tokens=40)
    wait_done(page)

    lengths: list[int] = page.evaluate("window.lengths")
    assert len(lengths) >= 3, lengths  # it grew over several updates, not in one piece
    assert lengths == sorted(lengths) and lengths[0] < lengths[-1]
    assert pane(page).locator('[data-part="text"]').inner_text().strip()
    request_id = stat(page, "request_id")
    record = request_record(console, request_id)
    assert record["project_id"] == developer.project
    assert stat(page, "deployment") == record["deployment"] == "smollm2-local"
    assert stat(page, "route") == "none (a model)"
    assert int(stat(page, "prompt_tokens")) == record["prompt_tokens"]
    assert int(stat(page, "completion_tokens")) == record["completion_tokens"] > 0
    assert stat(page, "cost") == f"${dollars(record['cost_micros'])}"
    assert re.fullmatch(r"\d+ ms|\d+\.\d\d s", stat(page, "first_token"))
    assert re.fullmatch(r"\d+ ms|\d+\.\d\d s", stat(page, "latency"))
    assert stat(page, "finish") in ("stop", "length")
    shot(page, "playground-streaming")

    page.set_viewport_size({"width": 390, "height": 844})
    expect(pane(page)).to_be_visible()
    # Nothing runs off the side of a phone's screen.
    assert page.evaluate("document.documentElement.scrollWidth") <= 390
    shot(page, "playground-phone")


def test_stop_ends_the_generation_on_the_server_and_it_is_recorded_as_left(
    console: GatewayProcess, page: Page, developer: Key
) -> None:
    open_playground(page, console, developer)
    # A schema that needs a thousand numbers: the model cannot end on its own before Stop (a
    # free answer may end a moment after its first words, and then there is nothing to stop).
    page.get_by_text("Response format", exact=True).click()
    page.get_by_label("Format").select_option("json_schema")
    page.get_by_label("JSON schema").fill(
        json.dumps(
            {
                "type": "object",
                "properties": {
                    "numbers": {"type": "array", "items": {"type": "integer"}, "minItems": 1000}
                },
                "required": ["numbers"],
                "additionalProperties": False,
            }
        )
    )
    ask(page, "Count from one to a thousand.", max_tokens=2000)
    expect(pane(page).locator('[data-part="text"]')).not_to_be_empty()
    page.get_by_role("button", name="Stop").click()

    expect(pane(page).locator('[data-part="status"]')).to_have_text("Stopped.")
    expect(pane(page).locator('[data-part="error"]')).to_be_visible()
    expect(page.get_by_role("button", name="Send")).to_be_enabled()
    record = request_record(console, stat(page, "request_id"))
    assert record["client_disconnected"] is True
    assert 0 < record["completion_tokens"] < 2000


# -- tools -----------------------------------------------------------------------------------------


def test_a_tools_request_shows_the_tool_call_and_its_json_arguments(
    console: GatewayProcess, page: Page, developer: Key
) -> None:
    open_playground(page, console, developer)
    page.get_by_text("Tools", exact=True).click()
    page.get_by_role("button", name="Insert the get_weather example").click()
    page.get_by_label("Tool choice").select_option(label="only get_weather")

    ask(page, "What is the weather in Paris?", max_tokens=160, greedy=True)
    wait_done(page)

    calls = pane(page).locator(".tool-calls li")
    expect(calls).to_have_count(1)
    expect(calls.locator(".tool-name")).to_have_text("get_weather")
    arguments = json.loads(calls.locator(".tool-arguments").inner_text())
    assert isinstance(arguments, dict) and isinstance(arguments.get("city"), str)
    assert stat(page, "finish") == "tool_calls"
    shot(page, "playground-tools")


def test_tools_that_are_not_function_tools_are_refused_in_the_page(
    console: GatewayProcess, page: Page, developer: Key
) -> None:
    open_playground(page, console, developer)
    sent = chat_requests(page)
    page.get_by_text("Tools", exact=True).click()
    tools = page.get_by_label("Tools (a JSON array of function tools)")
    problem = page.locator("#tools-problem")

    for text, says in [
        ('[{"type": "function", "function": {"name": "a"', "not valid JSON"),
        ('{"type": "function"}', "non-empty JSON array"),
        ('[{"type": "retrieval"}]', 'needs "type": "function"'),
        ('[{"type": "function", "function": {"name": "get weather"}}]', '"name" of 1 to 64'),
        ('[{"type": "function", "function": {"name": "get_weather"}}]', 'needs "parameters"'),
    ]:
        tools.fill(text)
        ask(page, "Hello")
        expect(problem).to_be_visible()
        expect(problem).to_contain_text(says)
        expect(tools).to_have_attribute("aria-invalid", "true")
    assert sent == []


# -- JSON schema -----------------------------------------------------------------------------------


def test_an_invalid_schema_is_refused_in_the_page_and_nothing_is_sent(
    console: GatewayProcess, page: Page, developer: Key
) -> None:
    open_playground(page, console, developer)
    sent = chat_requests(page)
    code_sent = chat_requests(page, "/console/playground/code")
    page.get_by_text("Response format", exact=True).click()
    page.get_by_label("Format").select_option("json_schema")
    schema = page.get_by_label("JSON schema")
    problem = page.locator("#schema-problem")

    schema.fill('{"type": "object", "properties": {')
    ask(page, "A city and its country.")
    expect(problem).to_contain_text("The schema is not valid JSON")
    expect(schema).to_be_focused()
    page.get_by_role("button", name="View code").click()
    expect(problem).to_contain_text("The schema is not valid JSON")

    schema.fill('{"type": "array", "items": {"type": "string"}}')
    page.get_by_role("button", name="Send").click()
    expect(problem).to_contain_text("must be an object schema")
    shot(page, "playground-json-refused")
    assert sent == [] and code_sent == []


def test_a_valid_schema_gives_json_that_matches_it(
    console: GatewayProcess, page: Page, developer: Key
) -> None:
    open_playground(page, console, developer)
    page.get_by_text("Response format", exact=True).click()
    page.get_by_role("button", name="Insert an example schema").click()
    expect(page.get_by_label("Format")).to_have_value("json_schema")

    ask(page, "Name a city and its country.", max_tokens=160, greedy=True)
    wait_done(page)

    answer = json.loads(pane(page).locator('[data-part="text"]').inner_text())
    jsonschema.validate(answer, EXAMPLE_SCHEMA)
    expect(pane(page).locator('[data-part="json"]')).to_have_text("The answer parses as JSON.")
    shot(page, "playground-json")


def test_the_gateways_refusal_is_shown_in_the_pane_and_beside_the_field(
    console: GatewayProcess, page: Page, developer: Key
) -> None:
    open_playground(page, console, developer)
    page.get_by_text("Response format", exact=True).click()
    page.get_by_label("Format").select_option("json_schema")
    # An object schema, so the page sends it; the gateway knows no type "strang".
    page.get_by_label("JSON schema").fill(
        '{"type": "object", "properties": {"a": {"type": "strang"}}}'
    )
    ask(page, "Hello")

    error = pane(page).locator('[data-part="error"]')
    expect(error).to_have_text("400: Unknown JSON type 'strang' at '#/properties/a/type'.")
    expect(page.locator("#schema-problem")).to_contain_text("Unknown JSON type 'strang'")
    expect(pane(page).locator('[data-part="status"]')).to_have_text("Refused (400).")

    # A model the person may not use (gone since the page was loaded): the API's 404, as is.
    page.evaluate("document.getElementById('model').add(new Option('gone', 'no-such-model'))")
    page.get_by_label("Model", exact=True).select_option("no-such-model")
    page.get_by_label("Format").select_option("text")
    page.get_by_role("button", name="Send").click()
    expect(error).to_have_text(
        "404: The model 'no-such-model' does not exist or you do not have access to it."
    )


# -- side by side ----------------------------------------------------------------------------------


def test_two_panes_stream_the_same_prompt_side_by_side(
    console: GatewayProcess, page: Page, developer: Key
) -> None:
    open_playground(page, console, developer)
    expect(pane(page, "b")).to_be_hidden()
    page.get_by_label("Compare with").select_option("smollm2-135m-instruct")
    page.get_by_label("System prompt").fill("Answer in one short sentence.")

    ask(page, "What is a lighthouse?", max_tokens=32)
    wait_done(page, "a")
    wait_done(page, "b")

    for which in ("a", "b"):
        assert pane(page, which).locator('[data-part="text"]').inner_text().strip()
        assert int(stat(page, "completion_tokens", which)) > 0
        record = request_record(console, stat(page, "request_id", which))
        assert int(stat(page, "completion_tokens", which)) == record["completion_tokens"]
    assert stat(page, "request_id", "a") != stat(page, "request_id", "b")
    shot(page, "playground-side-by-side")


# -- view code -------------------------------------------------------------------------------------


def test_view_code_shows_the_call_for_three_sdks_that_run_and_never_the_key(
    console: GatewayProcess, page: Page, developer: Key
) -> None:
    open_playground(page, console, developer)
    page.get_by_label("System prompt").fill("Answer in JSON.")
    page.get_by_label("Message").fill("Name a city and its country.")
    page.get_by_label("Temperature").fill("0")
    page.get_by_label("Max tokens").fill("40")
    page.get_by_label("Seed").fill("7")
    page.get_by_text("Response format", exact=True).click()
    page.get_by_role("button", name="Insert an example schema").click()

    page.get_by_role("button", name="View code").click()

    snippets = {}
    for sdk in ("openai", "azure", "mistral"):
        block = page.locator(f"#code-{sdk}")
        expect(block).to_contain_text("smollm2-135m-instruct")
        snippets[sdk] = block.inner_text()
    assert f'base_url="{console.base_url}/v1"' in snippets["openai"]
    assert f'endpoint="{console.base_url}/models"' in snippets["azure"]
    assert f'server_url="{console.base_url}"' in snippets["mistral"]
    for source in snippets.values():
        assert 'os.environ["MODELYARD_API_KEY"]' in source
        assert developer.key not in source
        assert "x-modelyard-project" not in source  # a key acts in its own project
    assert developer.key not in page.content()
    expect(page.get_by_role("button", name="Copy")).to_have_count(3)
    shot(page, "playground-code")

    # The snippets are the same call: each runs as shown, with the key from the environment.
    env = {**os.environ, "MODELYARD_API_KEY": developer.key}
    for sdk, source in snippets.items():
        ran = subprocess.run(
            [sys.executable, "-c", source], env=env, capture_output=True, text=True, timeout=120
        )
        assert ran.returncode == 0, (sdk, ran.stderr[-2000:])
        assert "city" in ran.stdout, (sdk, ran.stdout)


def test_someone_with_several_projects_picks_one_and_the_code_names_it(
    console: GatewayProcess, page: Page
) -> None:
    project = new_project(console, "playground")
    sign_in(page, console, console.admin_key or "", then=PLAYGROUND)
    page.get_by_label("Project").select_option(project)
    page.get_by_role("button", name="Use this project").click()
    expect(page).to_have_url(re.compile(rf"project={project}"))
    expect(page.get_by_label("Project")).to_have_value(project)
    page.get_by_label("Message").fill("Hello")

    page.get_by_role("button", name="View code").click()

    header = f'{{"x-modelyard-project": "{project}"}}'
    expect(page.locator("#code-openai")).to_contain_text(f"default_headers={header}")
    expect(page.locator("#code-azure")).to_contain_text(f"headers={header}")
    expect(page.locator("#code-mistral")).to_contain_text(f"http_headers={header}")
    assert (console.admin_key or "-") not in page.content()


def test_the_page_runs_no_inline_script_or_style(console: GatewayProcess) -> None:
    client = ConsoleClient(console, console.admin_key or "")
    answer = client.http.get(PLAYGROUND)
    assert answer.status_code == 200
    assert "script-src 'self'" in answer.headers["content-security-policy"]
    scripts = re.findall(r"<script[^>]*>", answer.text)
    assert scripts and all(" src=" in tag or 'type="application/json"' in tag for tag in scripts), (
        scripts
    )
    assert not re.search(r"\sstyle=|\son\w+=|javascript:", answer.text)
    client.close()


# -- who may use it --------------------------------------------------------------------------------


def test_a_viewer_is_not_offered_the_playground_and_its_forged_post_is_refused(
    console: GatewayProcess, page: Page
) -> None:
    viewer = new_key(console, new_project(console, "playground"), "viewer")
    sign_in(page, console, viewer.key)
    sections = page.get_by_role("navigation", name="Sections")
    expect(sections.get_by_role("link", name="Catalog")).to_be_visible()
    expect(page.get_by_role("link", name="Playground")).to_have_count(0)
    refused = page.goto(f"{console.base_url}{PLAYGROUND}")
    assert refused is not None and refused.status == 403

    client = ConsoleClient(console, viewer.key)
    call = {"project": viewer.project, "model": "smollm2", "message": "Hello", "max_tokens": 8}
    stream = {"Accept": "text/event-stream"}
    forged = client.http.post(
        "/console/playground/chat",
        json=call,
        headers={**stream, "X-CSRF-Token": client.csrf_token},
    )
    assert forged.status_code == 403, forged.text
    assert forged.json()["error"]["code"] == "permission_denied"
    without_token = client.http.post("/console/playground/chat", json=call, headers=stream)
    assert without_token.status_code == 403
    assert without_token.json()["error"]["code"] == "csrf_failed"
    client.close()


# -- the calls the page and the snippets are made of (pure) ----------------------------------------


def test_chat_body_sends_only_what_was_set() -> None:
    call = PlaygroundCall.model_validate(
        {"model": "m", "system": "  ", "message": "Hi", "temperature": 0, "stop": []}
    )
    assert chat_body(call) == {
        "model": "m",
        "messages": [{"role": "user", "content": "Hi"}],
        "temperature": 0,
    }


def test_snippets_with_tools_and_a_named_choice_are_valid_python_in_each_sdks_terms() -> None:
    body = chat_body(
        PlaygroundCall.model_validate(
            {
                "model": "smollm2",
                "system": 'Say "hi"\nthen stop.',
                "message": "Weather?",
                "seed": 3,
                "tools": EXAMPLE_TOOLS,
                "tool_choice": {"type": "function", "function": {"name": "get_weather"}},
                "response_format": {"type": "json_object"},
            }
        )
    )
    openai = openai_code(body, "http://gw", "team-a")
    azure = azure_code(body, "http://gw", "team-a")
    mistral = mistral_code(body, "http://gw", None)
    for source in (openai, azure, mistral):
        ast.parse(source)
        assert max(len(line) for line in source.splitlines()) <= 100
    assert 'default_headers={"x-modelyard-project": "team-a"}' in openai
    assert 'headers={"x-modelyard-project": "team-a"}' in azure
    assert "x-modelyard-project" not in mistral
    assert "SystemMessage(" in azure and "ChatCompletionsToolDefinition(" in azure
    assert "ChatCompletionsNamedToolChoice(" in azure and 'response_format="json_object"' in azure
    assert "random_seed=3" in mistral and "seed=3" in openai
    # The literal is Python's value of the JSON the page sent, escapes included.
    system = re.search(r'SystemMessage\(("(?:[^"\\]|\\.)*")\)', azure)
    assert system is not None
    assert ast.literal_eval(system.group(1)) == 'Say "hi"\nthen stop.'
