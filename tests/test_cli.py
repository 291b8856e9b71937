"""The CLI contract: --help with an example everywhere, exit 2 with one line on bad input."""

import json
import subprocess
import sys

import pytest
from click.testing import CliRunner

from toolchain.cli import main

COMMANDS = ["train", "analyze", "profile", "prune", "quantize", "export", "bench", "run", "data fetch"]


@pytest.mark.parametrize("cmd", COMMANDS)
def test_help_has_an_example(cmd):
    result = CliRunner().invoke(main, [*cmd.split(), "--help"])
    assert result.exit_code == 0 and "compress " + cmd in result.output


def _fails_cleanly(args, match):
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 2, result.output
    assert match in result.output
    assert "Traceback" not in result.output
    return result


def test_bad_inputs_exit_2(tmp_path, trained_lenet):
    _fails_cleanly(["train", "zoo:nope", "--data", "digits", "-o", str(tmp_path / "m.pt")], "unknown model")
    _fails_cleanly(["train", "zoo:lenet5", "--data", "nope", "-o", str(tmp_path / "m.pt")], "nope")
    _fails_cleanly(["analyze", str(tmp_path / "missing.pt"), "-o", str(tmp_path / "a.json")], "no such file")
    _fails_cleanly(["analyze", str(trained_lenet), "--ratio", "1.5", "-o", str(tmp_path / "a.json")], "outside")
    _fails_cleanly(["prune", str(trained_lenet), "--order", "sequential", "-o", str(tmp_path / "p.pt")], "goal")
    _fails_cleanly(["export", str(trained_lenet), "--opset", "2", "-o", str(tmp_path / "e.onnx")], "opset")
    _fails_cleanly(["bench", str(tmp_path / "missing.onnx")], "no such file")
    _fails_cleanly(["run", str(tmp_path / "missing.toml")], "no such config")
    assert not any(tmp_path.iterdir())


def test_stages_chain_through_the_cli(tmp_path, trained_lenet):
    r = CliRunner()
    a = tmp_path / "a.json"
    assert r.invoke(main, ["analyze", str(trained_lenet), "--eval-samples", "150", "--include-linear",
                           "-o", str(a)]).exit_code == 0
    p = tmp_path / "p.pt"
    res = r.invoke(main, ["prune", str(trained_lenet), "--analysis", str(a), "--target-params", "0.5",
                          "--finetune-epochs", "0.2", "--final-epochs", "0.3", "-o", str(p)])
    assert res.exit_code == 0, res.output
    q = tmp_path / "q.pt"
    assert r.invoke(main, ["quantize", str(p), "--scope", "fc", "--samples", "32", "-o", str(q)]).exit_code == 0
    onnx_path = tmp_path / "q.onnx"
    assert r.invoke(main, ["export", str(q), "-o", str(onnx_path)]).exit_code == 0
    res = r.invoke(main, ["bench", str(onnx_path), "--runs", "5", "--warmup", "1", "--json", str(tmp_path / "b.json")])
    assert res.exit_code == 0, res.output
    report = json.loads((tmp_path / "b.json").read_text())
    assert report["models"][0]["bytes"] == onnx_path.stat().st_size
    again = r.invoke(main, ["export", str(q), "-o", str(onnx_path)])
    assert again.exit_code == 2 and "--force" in again.output


def test_console_script_is_installed():
    out = subprocess.run([sys.executable, "-m", "toolchain.cli", "--help"], capture_output=True, text=True)
    assert out.returncode == 0 and "analyze" in out.stdout


def _examples():
    """Every `compress ...` line of every command's --help (split at &&, comments dropped)."""
    import shlex

    import click

    def walk(group, prefix):
        for name, cmd in group.commands.items():
            if isinstance(cmd, click.Group):
                yield from walk(cmd, [*prefix, name])
            else:
                yield [*prefix, name], cmd

    for path, cmd in walk(main, []):
        for line in (cmd.help or "").splitlines():
            for part in line.split("&&"):
                part = part.split("  #")[0].strip()
                if part.startswith("compress "):
                    yield " ".join(path), shlex.split(part)[1:]


EXAMPLES = list(_examples())


def test_every_command_shows_examples():
    assert {cmd for cmd, _ in EXAMPLES} >= {"train", "analyze", "prune", "quantize", "calibrate", "export", "bench",
                                            "run", "check", "report", "data fetch"}


@pytest.mark.parametrize("cmd, args", EXAMPLES, ids=[" ".join(a)[:70] for _, a in EXAMPLES])
def test_every_help_example_parses(cmd, args):
    """Each example's options exist and take their values (parsed by click as the shell would pass
    them); the stage chain test above runs the same commands for real on small files."""
    ctx = main.make_context("compress", list(args), resilient_parsing=False)
    sub = ctx.command.get_command(ctx, args[0])
    rest = args[1:]
    if cmd == "data fetch":
        sub, rest = sub.get_command(ctx, args[1]), args[2:]
    sub.make_context(args[0], list(rest), parent=ctx)
