"""The bad-input contract, case by case: exit 2, one line on stderr, no traceback, nothing written.

Each case runs in a fresh folder holding the bad files it names (corrupt model, config with a bogus
value, a path under a file, ...) next to real artifacts made once per session.
"""

import json

import pytest
from click.testing import CliRunner

from toolchain.cli import main


@pytest.fixture(scope="session")
def fx(trained_lenet, tmp_path_factory):
    """Real artifacts the cases point at: a model, its analysis, int8 model and ONNX, a 20-class model."""
    from toolchain import analyze, export, quantize, train

    d = tmp_path_factory.mktemp("bad-input-fixtures")
    analyze.run(str(trained_lenet), d / "analysis.json", analyze.AnalyzeOptions(eval_samples=150, include_linear=True,
                                                                                plots=False, data="digits"))
    quantize.run(str(trained_lenet), d / "q.pt", quantize.QuantizeOptions(samples=32, allow_slower=True))
    export.run(str(d / "q.pt"), d / "q.onnx", export.ExportOptions())
    train.run("zoo:lenet5", d / "lenet20.pt", train.TrainOptions(epochs=1, lr=0.05, train_limit=64,
                                                                 data="synthetic:1x32x32:20"))
    return {"L": str(trained_lenet), "A": str(d / "analysis.json"), "Q": str(d / "q.pt"), "O": str(d / "q.onnx"),
            "L20": str(d / "lenet20.pt")}


def _bad_files(w, fx):
    (w/"bad.toml").write_text("[prune]\norder = \"bogus\"\n")
    (w/"badkey.toml").write_text("[prune]\nfoo = 1\n")
    (w/"badtype.toml").write_text("[prune]\ntarget_params = \"x\"\n")
    (w/"badtrain.toml").write_text("[train]\nepochs = -1\n")
    (w/"badquick.toml").write_text("[quick]\nbogus = 1\n")
    (w/"badbench.toml").write_text("[bench]\nruns = 0\n")
    (w/"badmodel.toml").write_text("[model]\nspec = \"zoo:nope\"\n")
    (w/"badscope.toml").write_text("[quantize]\nscope = \"most\"\n")
    (w/"badtoml.toml").write_text("[prune\n")
    (w/"corrupt.pt").write_bytes(b"not a model")
    (w/"corrupt.onnx").write_bytes(b"not onnx")
    (w/"corrupt.json").write_text("{not json")
    (w/"other.json").write_text(json.dumps({"schema": 999}))
    (w/"calib.npz").write_bytes(b"zz")
    (w/"target.toml").write_text("[device]\nname = 3\n")
    (w/"base.toml").write_text("garbage = [\n")
    (w/"exists.json").write_text("{}")
    (w/"exists.png").write_bytes(b"x")
    (w/"empty.npz").write_bytes(b"")
    a = json.loads(open(fx["A"]).read())
    (w / "other_model_analysis.json").write_text(json.dumps(a | {"model": a["model"] | {"sha256": "0" * 64}}))
    (w / "old_schema.json").write_text(json.dumps(a | {"schema": 0}))
    (w / "badexport.toml").write_text("[export]\nopset = 3\n")
    (w / "badtarget.toml").write_text("[bench]\ntarget = \"nope\"\n")
    (w / "badanalyze.toml").write_text("[analyze]\nratio = 1.5\n")
    (w / "badlist.toml").write_text("[analyze]\nratios = \"0.5\"\n")
    (w / "baddata.toml").write_text("[data]\nspec = \"nope\"\n")
    (w / "mismatch.toml").write_text(f"[model]\nspec = \"{fx['L']}\"\n[data]\nspec = \"synthetic:1x32x32:20\"\n")
CASES = [  # L: model, A: its analysis, Q: int8 model, O: its ONNX, L20: a 20-class model
 ["prune", "{L}", "--analysis", "{A}", "--target-params", "0.5", "--val-samples", "0", "-o", "p.pt"],
 ["prune", "{L}", "--analysis", "{A}", "--target-params", "0.5", "--seed", "-1", "-o", "p.pt"],
 ["prune", "{L}", "--analysis", "{A}", "--target-params", "0.5", "--lr", "-1", "-o", "p.pt"],
 ["prune", "{L}", "--analysis", "{A}", "--target-params", "1.5", "-o", "p.pt"],
 ["prune", "{L}", "--analysis", "{A}", "--target-params", "0", "-o", "p.pt"],
 ["prune", "{L}", "--analysis", "{A}", "--target-params", "0.5", "--step", "0", "-o", "p.pt"],
 ["prune", "{L}", "--analysis", "{A}", "--target-params", "0.5", "--max-layer-ratio", "1.5", "-o", "p.pt"],
 ["prune", "{L}", "--analysis", "{A}", "--target-params", "0.5", "--finetune-epochs", "-1", "-o", "p.pt"],
 ["prune", "{L}", "--analysis", "{A}", "--target-params", "0.5", "--round-to", "0", "-o", "p.pt"],
 ["prune", "{L}", "--analysis", "{A}", "--target-params", "0.5", "--distill", "-0.5", "-o", "p.pt"],
 ["prune", "{L}", "--analysis", "{A}", "--target-params", "0.5", "--train-limit", "0", "-o", "p.pt"],
 ["prune", "{L}", "--analysis", "corrupt.json", "--target-params", "0.5", "-o", "p.pt"],
 ["prune", "{L}", "--analysis", "other.json", "--target-params", "0.5", "-o", "p.pt"],
 ["prune", "{L}", "--analysis", "other_model_analysis.json", "--target-params", "0.5", "-o", "p.pt"],
 ["prune", "{L}", "--analysis", "missing.json", "--target-params", "0.5", "-o", "p.pt"],
 ["prune", "{L}", "--plan", "uniform", "--target-params", "0.5", "--max-drop", "-1", "-o", "p.pt"],
 ["prune", "{L}", "--analysis", "{A}", "--compare-orders", "--targets", "0.5,abc", "-o", "c.json"],
 ["prune", "{L}", "--analysis", "{A}", "--compare-orders", "--plans", "bogus", "--targets", "0.5", "-o", "c.json"],
 ["prune", "{L}", "--data", "mnist?x=1", "--analysis", "{A}", "--target-params", "0.5", "-o", "p.pt"],
 ["prune", "corrupt.pt", "--analysis", "{A}", "--target-params", "0.5", "-o", "p.pt"],
 ["train", "torchvision:resnet18?size=abc", "--data", "digits", "-o", "m.pt"],
 ["train", "torchvision:resnet18?size=-5", "--data", "digits", "-o", "m.pt"],
 ["train", "torchvision:vit_b_16?size=30&image_size=30", "--data", "digits", "-o", "m.pt"],
 ["train", "torchvision:nope", "--data", "digits", "-o", "m.pt"],
 ["train", "zoo:lenet5?bogus=1", "--data", "digits", "-o", "m.pt"],
 ["train", "zoo:a2e?widths=a,b", "--data", "digits", "-o", "m.pt"],
 ["train", "zoo:lenet5", "--data", "digits", "--epochs", "-1", "-o", "m.pt"],
 ["train", "zoo:lenet5", "--data", "digits", "--epochs", "0", "-o", "m.pt"],
 ["train", "zoo:lenet5", "--data", "digits", "--batch-size", "0", "-o", "m.pt"],
 ["train", "zoo:lenet5", "--data", "digits", "--eval-samples", "5", "-o", "m.pt"],
 ["train", "zoo:lenet5", "--data", "digits", "--lr", "0", "-o", "m.pt"],
 ["train", "zoo:lenet5", "--data", "digits", "--device", "tpu", "-o", "m.pt"],
 ["train", "zoo:lenet5", "--data", "digits", "--device", "cuda", "-o", "m.pt"],
 ["train", "{L20}", "--data", "digits", "-o", "m.pt"],
 ["train", "missing.py:make", "--data", "digits", "-o", "m.pt"],
 ["train", "zoo:lenet5", "--data", "synthetic:1x32:10", "-o", "m.pt"],
 ["train", "zoo:lenet5", "--data", "synthetic:3x32x32:0", "-o", "m.pt"],
 ["train", "zoo:lenet5", "--data", "corrupt.json", "-o", "m.pt"],
 ["train", "zoo:lenet5", "--data", "empty.npz", "-o", "m.pt"],
 ["train", "zoo:lenet5", "--data", "digits", "-o", "exists.json/m.pt"],
 ["analyze", "{L20}", "--data", "digits", "-o", "a.json"],
 ["analyze", "{L}", "--data", "fraud", "-o", "a.json"],
 ["analyze", "{L}", "--ratio", "0", "-o", "a.json"],
 ["analyze", "{L}", "--ratios", "0.5,x", "-o", "a.json"],
 ["analyze", "{L}", "--ratios", "0.5,1.2", "-o", "a.json"],
 ["analyze", "{L}", "--criterion", "bogus", "-o", "a.json"],
 ["analyze", "{L}", "--workers", "0", "-o", "a.json"],
 ["analyze", "{L}", "--eval-samples", "-3", "-o", "a.json"],
 ["analyze", "{L}", "--adapt-bn", "-1", "-o", "a.json"],
 ["analyze", "{L}", "--seed", "-1", "-o", "a.json"],
 ["analyze", "{L}", "-o", "exists.json"],
 ["analyze", "{L}", "-o", "exists.json/a.json"],
 ["analyze", "corrupt.pt", "-o", "a.json"],
 ["analyze", "{O}", "-o", "a.json"],
 ["quantize", "{L}", "--samples", "0", "-o", "x.pt"],
 ["quantize", "{L}", "--calibration", "calib.npz", "-o", "x.pt"],
 ["quantize", "{L}", "--calibration", "empty.npz", "-o", "x.pt"],
 ["quantize", "{L}", "--eval-samples", "0", "-o", "x.pt"],
 ["quantize", "{L}", "--eval-samples", "-1", "-o", "x.pt"],
 ["quantize", "{L}", "-o", "exists.json/x.pt"],
 ["quantize", "missing.pt", "-o", "x.pt"],
 ["calibrate", "--data", "digits", "--samples", "0", "-o", "c.npz"],
 ["calibrate", "--data", "digits", "--input-shape", "1,3,x", "-o", "c.npz"],
 ["calibrate", "--data", "digits", "--model", "corrupt.pt", "-o", "c.npz"],
 ["calibrate", "--data", "digits", "-o", "exists.json/c.npz"],
 ["export", "{L}", "--tolerance", "0", "-o", "e.onnx"],
 ["export", "{L}", "--input-shape", "1,3,32,32", "-o", "e.onnx"],
 ["export", "{L}", "--eval-samples", "-1", "-o", "e.onnx"],
 ["export", "{L}", "-o", "exists.json/e.onnx"],
 ["export", "{L}", "-o", "/proc/e.onnx"],
 ["export", "corrupt.pt", "-o", "e.onnx"],
 ["bench", "{O}", "--runs", "0"],
 ["bench", "{O}", "--runs", "-5"],
 ["bench", "{O}", "--warmup", "-1"],
 ["bench", "{O}", "--threads", "0"],
 ["bench", "{O}", "--batch", "0"],
 ["bench", "{O}", "--seconds", "-1"],
 ["bench", "{O}", "--target", "nope"],
 ["bench", "{O}", "--target", "target.toml"],
 ["bench", "{O}", "--target", "missing.toml"],
 ["bench", "{O}", "--provider", "bogus", "--strict"],
 ["bench", "{O}", "--input-shape", "0,1"],
 ["bench", "corrupt.onnx"],
 ["bench", "{O}", "--json", "exists.json", "--runs", "3", "--warmup", "0", "--no-memory"],
 ["bench", "{O}", "--plot", "exists.png", "--runs", "3", "--warmup", "0", "--no-memory"],
 ["bench", "{O}", "--json", "exists.json/b.json", "--runs", "3", "--warmup", "0", "--no-memory"],
 ["bench", "{O}", "--host", "nobody@127.0.0.1", "--port", "1", "--runs", "3"],
 ["bench", "{O}", "--port", "22"],
 ["run", "bad.toml", "-o", "r"],
 ["run", "badkey.toml", "-o", "r"],
 ["run", "badtype.toml", "-o", "r"],
 ["run", "badtrain.toml", "-o", "r"],
 ["run", "badquick.toml", "-o", "r"],
 ["run", "badbench.toml", "-o", "r"],
 ["run", "badmodel.toml", "-o", "r"],
 ["run", "badscope.toml", "-o", "r"],
 ["run", "badtoml.toml", "-o", "r"],
 ["run", "corrupt.pt", "-o", "r"],
 ["check", "missing.json", "-b", "base.toml"],
 ["check", "corrupt.json", "-b", "base.toml"],
 ["check", "{O}.json", "-b", "base.toml"],
 ["report", "nowhere"],
 ["data", "fetch", "nope"],
 ["train", "zoo:lenet5", "--data", "digits", "--bogus-flag"],
 ["prune", "{L}", "--order", "bogus"],
    ["prune", "{L}", "--data", "synthetic:1x32x32:20", "--analysis", "{A}", "--target-params", "0.5", "-o", "p.pt"],
    ["prune", "{L}", "--analysis", "old_schema.json", "--target-params", "0.5", "-o", "p.pt"],
    ["check", "{O}.json", "-b", "base.toml", "--junit", "exists.json"],
    ["check", "{O}.json", "-b", "base.toml", "--json", "exists.json/c.json"],
    ["run", "--resume", "nowhere"],
    ["run", "--resume", ".", "-o", "r"],
    ["run", "-o", "r", "--json", "exists.json"],
    ["run", "badexport.toml", "-o", "r"],
    ["run", "badtarget.toml", "-o", "r"],
    ["run", "badanalyze.toml", "-o", "r"],
    ["run", "badlist.toml", "-o", "r"],
    ["run", "baddata.toml", "-o", "r"],
    ["run", "mismatch.toml", "-o", "r"],
    ["report", ".", "--force"],
    ["calibrate", "--data", "digits", "--input-shape", "1,1,32,32", "-o", "exists.json"],
]


@pytest.mark.parametrize("args", CASES, ids=[" ".join(c)[:60] for c in CASES])
def test_bad_input_exits_2_with_one_line_and_writes_nothing(args, fx, tmp_path, monkeypatch):
    _bad_files(tmp_path, fx)
    monkeypatch.chdir(tmp_path)
    before = set(tmp_path.rglob("*"))
    result = CliRunner().invoke(main, [a.format(**fx) for a in args])
    assert result.exception is None or isinstance(result.exception, SystemExit), repr(result.exception)
    assert result.exit_code == 2, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), lines
    assert "Traceback" not in result.output
    assert set(tmp_path.rglob("*")) == before, "wrote " + ", ".join(str(p) for p in set(tmp_path.rglob("*")) - before)
