"""Issue 5 benchmark: size, accuracy and onnxruntime latency of fp32, fc-int8 and all-int8.

For the pruned VGG16-BN and AlexNet (Fashion-MNIST, 32x32; `--plan`, uniform in one shot by default, 10% of the
parameters kept), export fp32, fc-int8 (the paper: static QDQ on Gemm/MatMul) and all-int8
(static per-channel QDQ everywhere), plus onnxruntime's dynamic quantization of convolutions for
contrast, and time them interleaved in one run. Accuracy is measured by running each ONNX file in
onnxruntime on the full test set.

    python benchmarks/quantize_speed.py [--models vgg16,alexnet] [--quick]
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

from common import RESULTS, host, trained, write

from toolchain import analyze, bench, data, export, prune, quantize, train
from toolchain.convert import onnx_accuracy
from toolchain.onnxio import param_bytes


def pruned(spec: str, args, tmp: Path) -> Path:
    model = trained(spec, args.data, train.TrainOptions(epochs=args.epochs, lr=0.05, train_limit=args.train_limit))
    an = tmp / "analysis.json"
    analyze.run(str(model), an, analyze.AnalyzeOptions(eval_samples=500, include_linear=True, plots=False))
    out = tmp / "pruned.pt"
    prune.run(str(model), out, prune.PruneOptions(plan=prune.Plan(args.plan), order=prune.Order.ONESHOT,
                                                         analysis=an,
                                                         target_params=args.keep, step=0.5,
                                                         finetune_epochs=0, final_epochs=args.final_epochs,
                                                         include_linear=True, val_samples=500),
              train_limit=args.train_limit)
    return out


def one(spec: str, args, tmp: Path) -> dict:
    from onnxruntime.quantization import QuantType, quantize_dynamic

    src = pruned(spec, args, tmp)
    files = {"fp32": tmp / "fp32.onnx", "fc-int8": tmp / "fc.onnx", "all-int8": tmp / "all.onnx"}
    export.run(str(src), files["fp32"], export.ExportOptions())
    for scope, name in ((quantize.Scope.FC, "fc-int8"), (quantize.Scope.ALL, "all-int8")):
        q = tmp / f"{name}.pt"
        # every format is measured as it is: --allow-slower keeps int8 even where it is slower
        quantize.run(str(src), q, quantize.QuantizeOptions(scope=scope, samples=256, allow_slower=True))
        export.run(str(q), files[name], export.ExportOptions())
    files["dynamic-conv-int8"] = tmp / "dyn.onnx"
    quantize_dynamic(str(files["fp32"]), str(files["dynamic-conv-int8"]), op_types_to_quantize=["Conv", "MatMul"],
                     weight_type=QuantType.QInt8)
    ds = data.load(args.data, (1, 32, 32))
    test = (ds.test.tensors[0].numpy(), ds.test.tensors[1].numpy())
    report = bench.run(list(files.values()), None, bench.BenchOptions(runs=args.runs, warmup=20)).meta
    rows = {}
    for (name, path), timing in zip(files.items(), report["models"], strict=True):
        rows[name] = {"bytes": path.stat().st_size, "param_bytes": param_bytes(path)["total"],
                      "accuracy": onnx_accuracy(path, test), "p50_ms": timing["p50_ms"], "p90_ms": timing["p90_ms"],
                      "p50_vs_fp32": timing["p50_ratio"]}
    for r in rows.values():
        r["size_vs_fp32"] = round(r["param_bytes"] / rows["fp32"]["param_bytes"], 4)
        r["accuracy_drop_pts"] = round(rows["fp32"]["accuracy"] - r["accuracy"], 3)
    return {"rows": rows, "bench_host": report.get("measured_on"), "test_samples": len(test[1]), "host": host()}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", default="vgg16,alexnet")
    ap.add_argument("--data", default="fashion-mnist")
    ap.add_argument("--keep", type=float, default=0.1)
    ap.add_argument("--plan", default="uniform", help="pruning plan, applied in one shot")
    ap.add_argument("--train-limit", type=int, default=20000)
    ap.add_argument("--epochs", type=float, default=2)
    ap.add_argument("--final-epochs", type=float, default=0.5)
    ap.add_argument("--runs", type=int, default=300)
    ap.add_argument("--quick", action="store_true")
    args = ap.parse_args()
    if args.quick:
        args.train_limit, args.epochs, args.final_epochs, args.runs = 4000, 1, 0.2, 50
    start = time.perf_counter()
    requested = args.models.split(",")
    previous = RESULTS / ("quantize_speed" + ("_quick" if args.quick else "") + ".json")
    results = {}
    if previous.exists():  # keep the models an earlier run measured and this one does not
        results = {k: v for k, v in json.loads(previous.read_text())["models"].items() if k not in requested}
    for name in requested:
        with tempfile.TemporaryDirectory() as tmp:
            results[name] = one(f"zoo:{name}", args, Path(tmp))
        print(name, {k: (v["p50_vs_fp32"], v["size_vs_fp32"], v["accuracy"]) for k, v in results[name]["rows"].items()},
              flush=True)
    write("quantize_speed" + ("_quick" if args.quick else ""),
          {"data": args.data, "params_kept": args.keep, "plan": args.plan, "train_limit": args.train_limit,
           "models": results,
           "wall_s": round(time.perf_counter() - start, 1)})


if __name__ == "__main__":
    main()
