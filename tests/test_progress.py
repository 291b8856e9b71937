"""progress.task: a bar on a terminal; elsewhere a line of progress at least every HEARTBEAT_S seconds."""

import time

from toolchain import progress


def test_a_long_loop_off_a_terminal_prints_a_line_every_heartbeat(monkeypatch, capsys):
    monkeypatch.delenv("COMPRESS_PROGRESS", raising=False)
    monkeypatch.setattr(progress, "HEARTBEAT_S", 0.05)
    with progress.task("analyze 3 layers", 3) as advance:
        advance(info="conv1 @ 0.5: 90.00%")
        time.sleep(0.3)
        advance(2)
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) >= 2 and lines[0].startswith("analyze 3 layers: 1/3 after 0 s: conv1 @ 0.5")


def test_a_short_loop_and_a_silenced_one_print_nothing(monkeypatch, capsys):
    monkeypatch.delenv("COMPRESS_PROGRESS", raising=False)
    with progress.task("quick", 1) as advance:
        advance()
    monkeypatch.setenv("COMPRESS_PROGRESS", "0")
    monkeypatch.setattr(progress, "HEARTBEAT_S", 0.01)
    with progress.task("silenced", 1) as advance:
        time.sleep(0.05)
        advance()
    assert capsys.readouterr().err == ""
