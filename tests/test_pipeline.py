import json

import pytest

from toolchain import pipeline
from toolchain.errors import CompressError


@pytest.fixture(scope="module")
def run_dir(real_run, tmp_path_factory):
    summary = json.loads((real_run / "summary.json").read_text())
    return real_run, summary, tmp_path_factory.getbasetemp() / "real-run-cache"


def test_run_writes_every_stage_and_a_summary(run_dir):
    out, summary, _ = run_dir
    for name in ("trained.pt", "analysis.json", "pruned.pt", "quantized.pt", "original.onnx", "pruned.fp32.onnx",
                 "model.onnx", "bench.json", "summary.json"):
        assert (out / name).exists(), name
    stages = {r["stage"]: r for r in summary["stages"]}
    assert list(stages) == ["trained", "pruned", "quantized"]
    assert stages["pruned"]["params"] <= 0.4 * stages["trained"]["params"]
    assert stages["quantized"]["param_bytes"] < stages["pruned"]["param_bytes"]
    assert stages["quantized"]["compression_x"] > stages["pruned"]["compression_x"] > 1
    assert all(r["p50_ms"] > 0 and r["accuracy"] > 50 for r in stages.values())
    lineage = json.loads((out / "model.onnx.json").read_text())["lineage"]
    assert [e["stage"] for e in lineage] == ["train", "prune", "quantize", "export"]


def test_trained_model_is_cached_between_runs(run_dir, tmp_path):
    out, first, cache = run_dir
    assert not first["trained_reused_from_cache"] and list((cache / "models").glob("*.pt"))
    cfg = pipeline.resume_config(out)
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr("toolchain.data.CACHE_DIR", cache)
        path, reused = pipeline._trained(cfg, tmp_path, pipeline.stage_options(cfg)["train"])
    assert reused and path.read_bytes() == (out / "trained.pt").read_bytes()


def test_existing_run_folder_is_not_overwritten(run_dir):
    out, _, _ = run_dir
    with pytest.raises(CompressError, match="--force"):
        pipeline.run(pipeline.load_config(None), out)


def test_config_errors(tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text("[nonsense]\nx = 1\n")
    with pytest.raises(CompressError, match="unknown key.*nonsense"):
        pipeline.load_config(bad)
    bad.write_text("[prune]\nbanana = 1\n")
    with pytest.raises(CompressError, match="banana"):
        pipeline.stage_options(pipeline.load_config(bad))
    for text, match in (('[prune]\norder = "bogus"', r"\[prune\] order must be one of"),
                        ('[prune]\ntarget_params = "x"', "must be a number"),
                        ("[analyze]\nratios = 0.5", "must be a list"),
                        ("[quick]\nruns = 0", "must be a number > 0"),
                        ('[bench]\ntarget = "nope"', "nope")):
        bad.write_text(text)
        with pytest.raises(CompressError, match=match):
            pipeline.stage_options(pipeline.load_config(bad))
    bad.write_text("not = [toml")
    with pytest.raises(CompressError, match="TOML"):
        pipeline.load_config(bad)
    with pytest.raises(CompressError, match="no such config"):
        pipeline.load_config(tmp_path / "missing.toml")


def test_fresh_run_dirs_never_collide(tmp_path):
    a, b = pipeline.fresh_run_dir("x", tmp_path), pipeline.fresh_run_dir("x", tmp_path)
    assert a != b and a.is_dir() and b.is_dir()


def test_the_example_config_matches_the_embedded_default():
    from pathlib import Path
    example = Path(__file__).parents[1] / "examples" / "pipeline.toml"
    assert pipeline.load_config(example) == pipeline.load_config(None)


def test_a_bad_config_value_stops_the_run_before_any_stage(tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text('[data]\nspec = "digits"\n[prune]\norder = "bogus"\n')
    with pytest.raises(CompressError, match="order"):
        pipeline.run(pipeline.load_config(bad), tmp_path / "run")
    assert not (tmp_path / "run").exists()


FIGURES = ("params", "macs", "param_bytes", "accuracy", "compression_x")


@pytest.mark.parametrize("kill_after", [0.5, 6.0])
def test_a_run_killed_with_sigkill_resumes_to_the_same_figures(real_run, tmp_path_factory, kill_after):
    """kill -9 part-way (so long after the run folder appears: analysis, pruning or later, as the
    machine's speed has it), then `compress run --resume`: every size and accuracy figure equals the uninterrupted
    run's; what finished before the kill is reused."""
    import os
    import signal
    import subprocess
    import sys
    import time

    from click.testing import CliRunner

    from toolchain.cli import main

    base = tmp_path_factory.getbasetemp()
    out = tmp_path_factory.mktemp("killed") / "run"
    env = os.environ | {"COMPRESS_CACHE": str(base / "real-run-cache"), "COMPRESS_PROGRESS": "0"}
    child = subprocess.Popen([sys.executable, "-m", "toolchain.cli", "run", str(base / "real-digits.toml"),
                              "-o", str(out)], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    while not (out / pipeline.CONFIG_FILE).exists() and child.poll() is None and time.monotonic() < deadline:
        time.sleep(0.1)
    time.sleep(kill_after)
    child.send_signal(signal.SIGKILL)
    child.wait()
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr("toolchain.data.CACHE_DIR", base / "real-run-cache")
        result = CliRunner().invoke(main, ["run", "--resume", str(out)])
    assert result.exit_code == 0, result.output
    resumed = json.loads((out / "summary.json").read_text())
    reference = json.loads((real_run / "summary.json").read_text())
    for got, want in zip(resumed["stages"], reference["stages"], strict=True):
        assert {k: got[k] for k in FIGURES} == {k: want[k] for k in FIGURES}, got["stage"]


def test_resume_reuses_finished_stages_and_redoes_changed_ones(real_run, tmp_path):
    import shutil

    out = tmp_path / "run"
    shutil.copytree(real_run, out)
    cfg = pipeline.resume_config(out)
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr("toolchain.data.CACHE_DIR", real_run.parent / "real-run-cache")
        again = pipeline.run(cfg, out, resume=True)
        assert again["resumed_stages"] == ["train", "analyze", "prune", "quantize", "export", "bench"]
        cfg["bench"]["runs"] = 10
        changed = pipeline.run(cfg, out, resume=True)
    assert changed["resumed_stages"] == ["train", "analyze", "prune", "quantize", "export"]


def test_the_demo_config_is_valid():
    """`make demo`'s config (examples/demo.toml) passes every check `compress run` makes before it starts."""
    from pathlib import Path

    example = Path(__file__).parents[1] / "examples" / "demo.toml"
    cfg = pipeline.load_config(example)
    try:
        opts = pipeline.stage_options(cfg)
    except CompressError as e:
        if "could not be fetched" in str(e):
            pytest.skip(f"mnist unavailable: {e}")
        raise
    assert cfg["model"]["spec"].startswith("zoo:lenet5?fc=") and opts["quantize"].allow_slower is False


def _masked(text: str) -> list[str]:
    """Lines with every number as # and runs of spaces as one: the form of an output, not its figures."""
    import re

    return [" ".join(re.sub(r"[-+]?\d[\d,.]*", "#", line).split()) for line in text.splitlines() if line.strip()]


def test_the_readme_shows_what_the_demo_prints(run_dir, tmp_path):
    """The README's excerpt of `make demo`'s output (between `<!-- demo output -->` markers) is what
    `compress run` prints, figures aside: its closing line, and each table line of it."""
    import shutil
    from pathlib import Path

    from click.testing import CliRunner

    from toolchain.cli import main

    real, _, cache = run_dir
    out = tmp_path / "run"
    shutil.copytree(real, out)
    readme = (Path(__file__).parents[1] / "README.md").read_text()
    excerpt = readme.split("<!-- demo output -->")[1]
    shown = [line for line in _masked(excerpt) if not line.startswith(("```", "$", "..."))]
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr("toolchain.data.CACHE_DIR", cache)
        mp.setenv("COLUMNS", "200")
        result = CliRunner().invoke(main, ["run", "--resume", str(out)])
    assert result.exit_code == 0, result.output
    printed = _masked(result.output)
    closing = printed[-1].split(" (the trained model from the cache)")[0]  # a resumed run reuses its training
    assert shown and shown[-1] == closing, (shown[-1], closing)  # smaller by #x, faster by #x, accuracy # points ...
    header = next(line for line in printed if "stage" in line and "what it did" in line)
    assert header in shown, header
    stages = [line.split()[1] for line in shown if line.startswith("│") and line.split()[1] != "│"]
    assert stages == ["trained", "pruned", "quantized"], stages
