"""A plain-text progress bar per model on a stream (stderr): redrawn in place on a terminal, one
line per model every 10% otherwise (logs and pipes stay readable)."""

from __future__ import annotations

from typing import TextIO

BAR_WIDTH = 30


class Progress:
    def __init__(self, totals: dict[str, int], stream: TextIO) -> None:
        self._totals = totals
        self._done = dict.fromkeys(totals, 0)
        self._errors = dict.fromkeys(totals, 0)
        self._stream = stream
        self._tty = stream.isatty()
        self._width = max((len(model) for model in totals), default=0)
        # Per model, the last tenth reported (non-terminal output).
        self._tenths = dict.fromkeys(totals, -1)
        self._drawn = False

    def start(self, already_done: dict[str, int]) -> None:
        for model, count in already_done.items():
            self._done[model] = count
        if self._tty:
            self._redraw()
        else:
            for model in self._totals:
                self._report_line(model)

    def advance(self, model: str, error: bool = False) -> None:
        self._done[model] += 1
        self._errors[model] += int(error)
        if self._tty:
            self._redraw()
        else:
            self._report_line(model)

    def _redraw(self) -> None:
        lines = [self._line(model) for model in self._totals]
        if self._drawn:
            self._stream.write(f"\x1b[{len(lines)}F")  # back to the first bar's line
        self._stream.write("".join(f"\x1b[2K{line}\n" for line in lines))
        self._stream.flush()
        self._drawn = True

    def _report_line(self, model: str) -> None:
        total = self._totals[model]
        tenth = 10 if total == 0 else self._done[model] * 10 // total
        if tenth > self._tenths[model]:
            self._tenths[model] = tenth
            self._stream.write(self._line(model) + "\n")
            self._stream.flush()

    def _line(self, model: str) -> str:
        done, total = self._done[model], self._totals[model]
        share = 1.0 if total == 0 else done / total
        filled = round(share * BAR_WIDTH)
        bar = "#" * filled + "-" * (BAR_WIDTH - filled)
        errors = f", {self._errors[model]} errors" if self._errors[model] else ""
        return f"{model.ljust(self._width)} [{bar}] {done}/{total} {share:4.0%}{errors}"
