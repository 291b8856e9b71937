"""The CLI contract: --help with an example everywhere, exit 2 with one line on bad input."""

import json
import subprocess
import sys
from pathlib import Path

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


# Options appended to an example so that it runs in seconds: the same code path on less work
# (click takes the last value of an option, so these override the example's own).
SHRINK = {
    "train": ["--train-limit", "300", "--epochs", "0.2", "--eval-samples", "100"],
    "analyze": ["--eval-samples", "60"],
    "prune": ["--finetune-epochs", "0", "--final-epochs", "0", "--val-samples", "60"],
    "profile": ["--runs", "5"],
    "quantize": ["--samples", "32"],
    "calibrate": ["--samples", "32"],
    "export": ["--eval-samples", "50"],
    "bench": ["--runs", "5", "--warmup", "1"],
    "run": ["--quick"],
}
OUTPUTS = ("-o", "--output", "--json", "--plot", "--junit")
# Examples that need a machine the test cannot have: they must fail in one line, exit 2, writing nothing.
ELSEWHERE = ("--host", "ray://")
# Examples that run an emulated arm64 target: they need qemu-user-static and debootstrap (optional system
# packages; .ci/run installs them). Without them they must fail the same clean way, and the test says so in a skip.
EMULATED = ("--emulate", "--check-target")


@pytest.fixture(scope="module")
def workspace(trained_lenet, tmp_path_factory):
    """The files the examples name (model.pt, analysis.json, pruned.pt, q.pt, fp32/int8/model.onnx,
    deployed.onnx: the unpruned model, base.toml) made from the test LeNet-5, plus the repository's
    examples/ and .ci/baseline.toml."""
    import shutil

    from toolchain import analyze, artifact, bench, check, export, prune, quantize

    d = tmp_path_factory.mktemp("workspace")
    for suffix in ("", ".json"):
        shutil.copy(f"{trained_lenet}{suffix}", d / f"model.pt{suffix}")
    analyze.run(str(d / "model.pt"), d / "analysis.json",
                analyze.AnalyzeOptions(eval_samples=60, include_linear=True, plots=False))
    prune.run(str(d / "model.pt"), d / "pruned.pt", prune.PruneOptions(
        plan=prune.Plan.UNIFORM, order=prune.Order.ONESHOT, target_params=0.5, finetune_epochs=0, final_epochs=0,
        val_samples=60))
    quantize.run(str(d / "pruned.pt"), d / "q.pt", quantize.QuantizeOptions(samples=32, allow_slower=True))
    for src, dst in (("pruned.pt", "fp32.onnx"), ("q.pt", "int8.onnx"), ("q.pt", "model.onnx"),
                     ("model.pt", "deployed.onnx")):
        export.run(str(d / src), d / dst, export.ExportOptions(eval_samples=50))
    bench.run([d / "fp32.onnx", d / "int8.onnx"], d / "b0.json", bench.BenchOptions(runs=5, warmup=1))
    check.update_baseline(d / "b0.json", d / "base.toml")
    root = Path(__file__).resolve().parents[1]
    shutil.copytree(root / "examples", d / "examples")
    (d / ".ci").mkdir()
    shutil.copy(root / ".ci" / "baseline.toml", d / ".ci" / "baseline.toml")
    assert artifact.Artifact.open(d / "q.pt").meta["quantization"]
    return d


def _by_command() -> dict[str, list[list[str]]]:
    out: dict[str, list[list[str]]] = {}
    for cmd, args in EXAMPLES:
        out.setdefault(cmd, []).append(args)
    return out


@pytest.mark.parametrize("cmd", sorted(_by_command()))
def test_every_help_example_runs(cmd, workspace, tmp_path, monkeypatch):
    """Each command's examples run in order (a later one may read what an earlier one wrote), in a
    copy of the workspace, as written plus SHRINK. One that needs a device or a cluster must fail
    cleanly instead. `check` may say FAIL (exit 1): that is a verdict, not a crash."""
    import shutil

    from toolchain import emulate

    work = tmp_path / "w"
    shutil.copytree(workspace, work)
    monkeypatch.chdir(work)
    missing, not_run = emulate.missing_tools(), []
    for args in _by_command()[cmd]:
        # the workspace's file of that name is another example's input: this one makes its own
        for flag, value in zip(args, args[1:], strict=False):
            if flag in OUTPUTS:
                for p in (work / value, work / f"{value}.json"):
                    if p.is_file():
                        p.unlink()
        before = {p for p in work.rglob("*")}
        result = CliRunner().invoke(main, [*args, *SHRINK.get(args[0], [])])
        shown = " ".join(args)
        assert "Traceback" not in result.output and not isinstance(result.exception, AssertionError), shown
        elsewhere = any(flag in a for a in args for flag in ELSEWHERE)
        if missing and not elsewhere and any(a in EMULATED for a in args):
            assert result.exit_code == 2, f"{shown}: {result.output}"
            assert len(result.output.strip().splitlines()) == 1 and "apt-get install" in result.output, result.output
            assert {p for p in work.rglob("*")} == before, f"{shown} wrote something"
            not_run.append(shown)
        elif elsewhere:
            assert result.exit_code == 2, f"{shown}: {result.output}"
            assert len(result.output.strip().splitlines()) == 1, result.output
            assert {p for p in work.rglob("*")} == before, f"{shown} wrote something"
        else:
            ok = (0, 1) if args[0] == "check" and "--update-baseline" not in args else (0,)
            assert result.exit_code in ok, f"{shown}: exit {result.exit_code}\n{result.output[-3000:]}"
    if not_run:  # the rest ran; these failed cleanly for want of the emulator, which a skip makes visible
        pytest.skip(f"`compress {'`, `compress '.join(not_run)}` need {', '.join(missing)}: "
                    f"apt-get install -y {' '.join(missing)} (.ci/run installs them)")


def test_every_choice_on_the_command_line_is_what_the_stage_accepts():
    """The CLI lists its choices as text, so that `compress --help` starts without torch; each list is
    exactly the enum or registry the stage validates against."""
    from toolchain import prune, quantize
    from toolchain.cli import main

    def choices(command: str, name: str) -> list[str]:
        return list(next(p for p in main.commands[command].params if p.name == name).type.choices)
    assert choices("prune", "order") == [o.value for o in prune.Order]
    assert choices("prune", "plan") == [p.value for p in prune.Plan if p is not prune.Plan.LATENCY]  # --objective
    assert choices("prune", "proxy") == list(prune.PROXIES)
    assert choices("prune", "select") == list(prune.SELECTORS)
    assert choices("quantize", "scope") == [s.value for s in quantize.Scope]
    assert choices("quantize", "calibrate") == [c.value for c in quantize.Calibrate]
