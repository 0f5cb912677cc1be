"""What a run prints: a bar redrawn every step on a terminal, plain lines off one (or with
--no-progress), nothing when quiet; every logged step is also a structured log event."""

from __future__ import annotations

import io

import structlog

from mosaic.runtime.training.progress import Progress


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


RECORD = {"step": 3, "loss_total": 1.234567891, "lr": 0.01, "tokens_per_s": 900.0}


def test_structured_event_accepts_records_that_carry_their_own_step() -> None:
    structlog.reset_defaults()  # an earlier in-process CLI call may have filtered info events out
    with structlog.testing.capture_logs() as logs:
        Progress(total=10, stream=io.StringIO()).step(3, RECORD)
    assert logs == [{"event": "train_step", "log_level": "info", "step": 3, "total": 10, "loss_total": 1.23457,
                     "lr": 0.01, "tokens_per_s": 900.0}]


def test_off_a_terminal_each_logged_step_is_one_plain_line() -> None:
    stream = io.StringIO()
    progress = Progress(total=10, stream=stream)
    progress.step(1)  # not logged: no line
    progress.step(3, RECORD)
    progress.close()
    lines = stream.getvalue().splitlines()
    assert len(lines) == 1 and lines[0].startswith("step 3/10 loss_total 1.235 lr 0.01 tokens_per_s 900")


def test_on_a_terminal_the_bar_moves_every_step() -> None:
    stream = Terminal()
    progress = Progress(total=4, stream=stream)
    for step in range(1, 5):
        progress.last_draw = 0.0  # as if a tenth of a second had passed since the last redraw
        progress.step(step, RECORD if step == 3 else None)
    progress.close()
    frames = stream.getvalue().split("\r")[1:]
    assert [frame.split("] ")[1].split(" ")[0] for frame in frames] == ["1/4", "2/4", "3/4", "4/4"]
    assert "loss 1.2346" in frames[2] and stream.getvalue().endswith("\n")


def test_lines_mode_on_a_terminal_prints_lines_not_a_bar() -> None:
    stream = Terminal()
    progress = Progress(total=10, mode="lines", stream=stream)
    progress.step(3, RECORD)
    assert "\r" not in stream.getvalue() and stream.getvalue().startswith("step 3/10")


def test_quiet_prints_nothing_not_even_notes() -> None:
    stream = Terminal()
    progress = Progress(total=10, mode="quiet", stream=stream)
    progress.note("warmup clipped")
    progress.step(3, RECORD)
    progress.close()
    assert stream.getvalue() == ""


def test_notes_print_in_every_other_mode() -> None:
    stream = io.StringIO()
    Progress(total=10, stream=stream).note("warmup_steps 20 clipped to the 5-step budget")
    assert stream.getvalue() == "note: warmup_steps 20 clipped to the 5-step budget\n"
