"""Following a JSON answer as it is generated: strings, nesting, loops."""

from __future__ import annotations

from modelyard.engine.json_shape import JsonShape


def feed(shape: JsonShape, *pieces: str) -> JsonShape:
    for token, piece in enumerate(pieces):
        shape.push(token, piece)
    return shape


def test_strings_with_escapes_and_brackets_inside_are_followed() -> None:
    shape = feed(JsonShape(), '{"a', '": "x\\"', "}] still", " text")
    assert shape.in_string and shape.depth == 1
    feed(shape, '", "b": [[1', ", 2]")
    assert not shape.in_string and shape.depth == 2


def test_the_reserve_grows_with_the_nesting() -> None:
    shallow, deep = JsonShape(), feed(JsonShape(), "[" * 60)
    assert shallow.reserve(600) == 64
    assert deep.reserve(600) == 2 * 60 + 8


def test_a_string_that_repeats_itself_is_a_loop_and_one_that_does_not_is_not() -> None:
    shape = feed(JsonShape(), '{"street": "')
    for _ in range(4):
        shape.push(11, " Elm")
        shape.push(12, " St,")
    assert shape.loop_continuation() == 11
    varied = feed(JsonShape(), '{"street": "')
    for token in range(20, 40):
        varied.push(token, " word")
    assert varied.loop_continuation() is None
    feed(shape, '"')  # the string ended: nothing to loop in
    assert shape.loop_continuation() is None


def test_one_token_repeated_is_a_loop_only_when_repeated_long() -> None:
    shape = feed(JsonShape(), '{"at": "12:00:00.')
    for _ in range(7):
        shape.push(7, "0")
    assert shape.loop_continuation() is None
    shape.push(7, "0")
    assert shape.loop_continuation() == 7
