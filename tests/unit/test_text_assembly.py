from modelyard.engine.text_assembly import TextAssembler


def feed(assembler: TextAssembler, pieces: list[bytes]) -> str:
    return "".join(assembler.push(piece) for piece in pieces)


def test_without_stops_text_passes_straight_through() -> None:
    assembler = TextAssembler(())
    assert assembler.push(b"Hel") == "Hel"
    assert assembler.push(b"lo") == "lo"
    assert assembler.flush() == ""


def test_a_split_utf8_character_is_held_until_complete() -> None:
    assembler = TextAssembler(())
    euro = "€".encode()
    assert assembler.push(euro[:1]) == ""
    assert assembler.push(euro[1:]) == "€"


def test_stop_sequence_spanning_tokens_is_cut_and_not_emitted() -> None:
    assembler = TextAssembler(("END",))
    emitted = feed(assembler, [b"one two E", b"N", b"D three"])
    assert emitted == "one two "
    assert assembler.stopped


def test_text_that_only_looked_like_a_stop_is_released() -> None:
    assembler = TextAssembler(("END",))
    assert assembler.push(b"ab E") == "ab "
    assert assembler.push(b"N") == ""
    assert assembler.push(b"x") == "ENx"
    assert not assembler.stopped


def test_held_text_is_flushed_when_generation_ends() -> None:
    assembler = TextAssembler(("END",))
    assert assembler.push(b"tail E") == "tail "
    assert assembler.flush() == "E"


def test_earliest_of_several_stops_wins() -> None:
    assembler = TextAssembler(("\n\n", "."))
    assert feed(assembler, [b"First sentence", b". Second\n\n"]) == "First sentence"
