from modelyard.providers.llamacpp.tool_format import ToolCallExtractor, render_tool_calls


def test_text_answers_pass_through_as_content() -> None:
    extractor = ToolCallExtractor()
    assert extractor.push("  ") == ("  ", [])
    assert extractor.push("Hello") == ("Hello", [])
    assert extractor.push(" world") == (" world", [])
    assert not extractor.calling


def test_calls_are_emitted_complete_once_their_block_closes() -> None:
    extractor = ToolCallExtractor()
    assert extractor.push('<tool_call>[{"name": "f", "argu') == ("", [])
    text, calls = extractor.push('ments": {"x": 1}}, {"name": "g", "arguments": {}}]</tool_call>')
    assert text == ""
    assert [(c.name, c.arguments) for c in calls] == [("f", '{"x":1}'), ("g", "{}")]
    assert calls[0].id != calls[1].id and calls[0].id.startswith("call_")


def test_a_block_cut_short_is_neither_a_call_nor_content() -> None:
    extractor = ToolCallExtractor()
    extractor.push('<tool_call>[{"name": "f"')
    assert extractor.finish() == ("", [])


def test_echoed_calls_use_the_model_syntax() -> None:
    rendered = render_tool_calls([("f", '{"x": 1}')])
    assert rendered == '<tool_call>[{"name":"f","arguments":{"x":1}}]</tool_call>'
    extractor = ToolCallExtractor()
    _, calls = extractor.push(rendered)
    assert [(c.name, c.arguments) for c in calls] == [("f", '{"x":1}')]


def test_text_starting_with_whitespace_then_markup_stays_text() -> None:
    extractor = ToolCallExtractor()
    assert extractor.push("\n<u>note</u>") == ("\n<u>note</u>", [])
    assert not extractor.calling


def test_calls_cut_off_by_max_tokens_come_back_with_their_partial_arguments() -> None:
    extractor = ToolCallExtractor()
    extractor.push(
        '<tool_call>[{"name": "f", "arguments": {"x": 1}}, {"name": "g", "arguments": {"q": "Pa'
    )
    text, calls = extractor.finish(cut_short=True)
    assert text == ""
    assert [(c.name, c.arguments) for c in calls] == [("f", '{"x":1}'), ("g", '{"q": "Pa')]


def test_a_forced_call_cut_off_inside_its_name_still_names_the_forced_tool() -> None:
    extractor = ToolCallExtractor()
    extractor.push('<tool_call>[{"name": "get_wea')
    _, calls = extractor.finish(cut_short=True, forced_name="get_weather")
    assert [(c.name, c.arguments) for c in calls] == [("get_weather", "")]
