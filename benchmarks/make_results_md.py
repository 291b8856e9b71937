"""Write docs/results.md from benchmarks/results/*.json: every figure in that page comes from here.

    python benchmarks/make_results_md.py
"""

from __future__ import annotations

import json
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"


def _load(name: str) -> dict | None:
    path = RESULTS / f"{name}.json"
    return json.loads(path.read_text()) if path.exists() else None


def _host(r: dict) -> str:
    h = r.get("host", {})
    load = h.get("load_average_1m_at_end", r.get("load_average_1m"))
    load = f", load average {load} at the end (a shared machine)" if load is not None else ""
    return f"{h.get('cpu', '?')}, {h.get('cores', '?')} cores; measured {(r.get('created') or '?')[:10]}{load}"


def analyze_section(r: dict) -> list[str]:
    if "vgg16" not in r:  # the issue-3 measurement, before the streamed cuts
        return ["## Sensitivity analysis speed (issues 3 and 40)", "",
                "`python benchmarks/analyze_speed.py` has not been rerun since it measured the streamed cuts.", ""]
    runs, v, m = r["runs"], r["vgg16"], r["mobilenet_v3_small"]
    lines = ["## Sensitivity analysis speed (issues 3 and 40)", "",
             f"`python benchmarks/analyze_speed.py`, every figure from one run on one machine ({_host(r)}). "
             f"A cut is measured *whole* (each masked cut runs the whole network: the path before issue 40) "
             f"or *streamed* (`toolchain.streaming`: the network traced once, its unchanged prefix computed "
             f"once per batch, only the part each cut changes run; every cut a mask can stand in for). The whole "
             f"path sends the cuts that remove more MACs than a copy costs to a pruned copy.", "",
             "| run | workers | cuts streamed / masked whole / on a copy | eval samples | ratios | wall time | "
             "load before |",
             "|---|---|---|---|---|---|---|"]
    for label, run in runs.items():
        busy = " (busy)" if run["load_before"] > 1.0 else ""
        paths = run["cuts"].get("measured_now", run["cuts"])
        lines.append(f"| {label.replace('_', ' ')} | {run['workers']} | {paths.get('streamed', 0)} / "
                     f"{paths.get('masked', 0)} / {paths.get('copy', 0)} | {run['eval_samples']:,} | "
                     f"{len(run['ratios'])} | "
                     f"{run['wall_s']:.1f} s | {run['load_before']}{busy} |")
    lines += ["",
              f"- VGG16-BN ({v['model']}), one ratio, {v['eval_samples']:,} images: streamed "
              f"{v['streamed_speedup_1_worker']:.2f}x faster with 1 worker, {v['streamed_speedup_2_workers']:.2f}x "
              f"with 2; 2 workers against 1 (streamed): {v['two_workers_speedup_streamed']:.2f}x (goal "
              f"{v['goal_two_workers_x']}x: **{'met' if v['goal_two_workers_met'] else 'not met'}**); streamed with "
              f"2 workers {v['wall_s']['streamed_2_workers']:.1f} s (goal {v['goal_s']} s: "
              f"**{'met' if v['goal_met'] else 'not met'}**). Against the whole path: "
              f"{_agree(v['streamed_vs_whole'])}; streamed with 2 workers against 1: "
              f"{_agree(v['streamed_1_vs_2_workers'])}. Two workers do not pay on 2 cores: one process already "
              f"runs PyTorch's convolutions on both cores, and each worker makes its own pass of the unchanged "
              f"network.",
              f"- MobileNetV3-small at 32 px, {len(m['ratios'])} ratios on {m['eval_samples']} images, "
              f"{m['workers']} workers: whole {m['wall_s']['whole']:.1f} s, streamed {m['wall_s']['streamed']:.1f} s "
              f"({m['streamed_speedup']:.2f}x; goal {m['goal_s']} s: **{'met' if m['goal_met'] else 'not met'}**); "
              f"against the whole path: {_agree(m['streamed_vs_whole'])}.",
              *([f"- Runs that began on a busy machine (load over 1.0 on 2 cores; absolute times inflated, "
                 f"ratios within the run hold): {', '.join(r['busy_runs'])}."] if r.get("busy_runs") else []), ""]
    return lines


def _agree(a: dict) -> str:
    if a["bit_identical"]:
        return "**bit-identical**"
    return (f"top-1 and counts {'identical' if a['top1_and_counts_identical'] else '**DIFFERENT**'}, continuous "
            f"figures within {a['max_continuous_diff']:g} points (cuts the whole path measured on copies)")


def _ms(x: float | None) -> str:
    return "-" if x is None else f"{x:.3f}"


def _pm(mean: float | None, std: float | None) -> str:
    if mean is None:
        return "-"
    return f"{mean:.2f}" + ("" if std is None else f" ± {std:.2f}")


def _widths(spec: str, steps: list[dict]) -> str:
    """Hidden widths of an accordion autoencoder: those of its spec, with the accepted cuts applied."""
    from urllib.parse import parse_qs

    widths = [int(w) for w in parse_qs(spec.partition("?")[2])["widths"][0].split(",")]
    for st in steps:
        widths[int(st["layer"].split(".")[1])] = st["kept"]
    return "-".join(map(str, widths))


def _minutes(m: dict) -> str:
    return ", ".join(f"{k} {v:g}" for k, v in m.items())


def _busy(loaded: bool | None) -> str:
    """The mark of a timing that began on a busy machine (EVALUATION.md section 5)."""
    return " **(flagged: the machine was busy when timing began)**" if loaded else ""


def _load_line(lat: dict) -> str:
    flag = _busy(lat.get("loaded"))
    return (f"onnxruntime, {lat['threads']} thread(s), {lat['runs']} runs each, interleaved; load average "
            f"{lat.get('load_before')} before, {lat.get('load_after')} after{flag}")


def baselines_section(r: dict) -> list[str]:
    lines = ["## Baselines (EVALUATION.md section 2)", "",
             "`python benchmarks/baselines.py`: the unpruned models trained on the full Fashion-MNIST training "
             "data less the validation split (55,000 images; 5,000 held out, never trained on), read from "
             "../shared/baselines where the manifest's model, data, recipe and split match and the sha256 holds. "
             "The equal-budget controls (the baseline trained as many epochs more as a compressed model got, at "
             f"the fine-tune's peak rate {r['finetune_lr']}, one-cycle, one per seed) are in the first section. "
             f"Host: {_host(r)}.", "",
             "| model | recipe | from | sha256 | minutes to train | val top-1 | test top-1 | goal |",
             "|---|---|---|---|---|---|---|---|"]
    for name, m in r["models"].items():
        b, rec = m["baseline"], m["recipe"]
        lines.append(f"| {name} | {rec['epochs']:g} epochs, lr {rec['lr']}, batch {rec['batch_size']}, "
                     f"SGD Nesterov, one-cycle, label smoothing {rec['label_smoothing']} | {b.get('source', '?')} | "
                     f"{b.get('sha256', '?')[:12]} | {b['minutes']:g} | {b['val_top1']:.2f}% | "
                     f"{b['test_top1']:.2f}% | >= {m['goal_top1']}%: **{'met' if m['meets_goal'] else 'not met'}** |")
    return lines + [""]


def orders_section(models: dict[str, dict]) -> list[str]:
    lines = ["## Plan x order (issue 12)", "",
             "`python benchmarks/prune_orders.py --model NAME`: each cell is a plan (channels per layer) walked in "
             "an order, fitted to one parameter target (within 1%), at each seed, with the same in-walk and final "
             "fine-tuning. Decisions on the validation split; top-1 on the test split. Verdicts are paired by "
             "seed: ahead / behind only where the mean difference exceeds twice its standard error.", ""]
    for name, r in models.items():
        rec = r["recipe"]
        eq = r.get("equal_budget_top1")
        lines += [f"### {name}" + (" (quick smoke run: LeNet-5 on an MNIST subset)" if r.get("quick") else ""), "",
                  f"Target {r['target']:.0%} of the parameters; final fine-tune {rec['final_epochs']:g} epochs at lr "
                  f"{rec['lr']}, {rec['finetune_epochs']:g} epochs per cut, step {rec['step']}; seeds "
                  f"{r['seeds']}. Unpruned: test {r['baseline_top1']:.2f}%"
                  + (f"; equal-budget baseline {_pm(eq['mean'], eq['std'])}%" if eq else "")
                  + f". Latency: {_load_line(r['latency'])}. Minutes: {_minutes(r['minutes'])}.", "",
                  "| plan | order | kept (per seed) | MACs kept | p50 ms | p90 ms | test top-1 (mean ± std) |",
                  "|---|---|---|---|---|---|---|"]
        for c in r["cells"]:
            kept = ", ".join(f"{k:.2%}" for k in c["kept"]) + ("" if c["on_target"] else " (off target: not counted)")
            lines.append(f"| {c['plan']} | {c['order']} | {kept} | {c['macs_kept']:.1%} | {_ms(c.get('p50_ms'))} | "
                         f"{_ms(c.get('p90_ms'))} | {_pm(c['top1_mean'], c['top1_std'])} |")
        lines.append("")
        for question, vs in r["verdicts"].items():
            if not vs:
                continue
            lines.append(f"- {question}: " + "; ".join(
                f"{k}: **{v['verdict']}** ({v['diff_pts']:+.2f} ± {v['se_pts'] if v['se_pts'] is not None else '-'} "
                f"pts, {v['pairs']} pairs)" for k, v in vs.items()))
        lines.append("")
    return lines


def quantize_section(r: dict) -> list[str]:
    lines = ["## fp32, fc-int8 and all-int8 (issue 5)", "",
             "Measured before the evaluation protocol of issue 12 (models trained on a 20,000-image subset); "
             "what it compares is formats of one model, which the protocol does not change. "
             f"`python benchmarks/quantize_speed.py`: the pruned models ({r.get('plan', r.get('order'))} plan, "
             f"{r['params_kept']:.0%} of the parameters kept) on {r['data']}, each format exported and run in "
             f"onnxruntime, timed interleaved in one run (int8 kept as measured, `--allow-slower`; by default "
             f"`compress quantize` keeps fp32 where int8 measures more than 5% slower). Host: {_host(r)}.", ""]
    for name, m in r["models"].items():
        lines += [f"### {name}", "", "| format | parameter bytes | vs fp32 | top-1 | drop | p50 ms | latency vs fp32 |",
                  "|---|---|---|---|---|---|---|"]
        for fmt, row in m["rows"].items():
            lines.append(f"| {fmt} | {row['param_bytes']:,} | {row['size_vs_fp32']:.2f}x | {row['accuracy']:.2f}% | "
                         f"{row['accuracy_drop_pts']:+.2f} | {row['p50_ms']:.3f} | {row['p50_vs_fp32']:.2f}x |")
        lines.append("")
    return lines


ROW_NAMES = {"fc-int8": "sensitivity plan, fc-int8 (the paper's scheme)", "all-int8": "sensitivity plan, all-int8",
             "pruned-fp32": "sensitivity plan, fp32", "peer_global": "Torch-Pruning global by hand, all-int8",
             "uniform": "uniform plan, all-int8", "uniform-fc-int8": "uniform plan, fc-int8",
             "point_paper": "sensitivity plan, fc-int8, at the paper's compression",
             "point_80x": "sensitivity plan, all-int8, at 80x"}


def _verdict(v: dict | None) -> str:
    if not v:
        return "-"
    se = "-" if v["se_pts"] is None else f"{v['se_pts']:.2f}"
    return f"**{v['verdict']}** ({v['diff_pts']:+.2f} ± {se})"


def _row(label: str, v: dict, paper: str) -> str:
    seeds = ", ".join(f"{s}" for s in v["seeds"])
    flags = ("" if v["on_target"] else f" (seeds {v['off_target_seeds']} off target: not counted)") + (
        "" if v["complete"] else " (seeds missing)")
    speed = f"{v['speedup_p50']:.1f}x" if "speedup_p50" in v else "-"
    drop = f"{v['drop_pts']:.2f}" if "drop_pts" in v else "-"
    comp = f"{v['compression_x']:.2f}x" if v.get("compression_x") else "-"
    return (f"| {ROW_NAMES.get(label, label)}{flags} | {v['kept']:.2%} | {v['params']:,} | {v['macs_kept']:.1%} | "
            f"{v['file_bytes']:,} | {comp} | {_pm(v['top1_mean'], v['top1_std'])} (seeds {seeds}) | {drop} | "
            f"{_verdict(v.get('vs_peer_global'))} | {_verdict(v.get('vs_uniform'))} | {speed} | {paper} |")


def _goal(name: str, g: dict) -> str:
    got, goal = g["got"], g["goal"]
    if g["met"]:
        return f"{name}: goal {goal}, got {got}: **met**"
    if isinstance(got, (int, float)) and isinstance(goal, (int, float)):
        gap = (got - goal) if "drop" in name else (goal - got)
        return f"{name}: goal {goal}, got {got}: **missed by {abs(gap):.2f}**"
    return f"{name}: goal {goal}, got {got}: **missed**"


def headline_section(r: dict | None) -> list[str]:
    """The paper's claim on AlexNet and VGG16 (issue 35), from the cells benchmarks/paper_cnn.py wrote."""
    lines = ["## The paper's claim: AlexNet and VGG16 (issue 35)", "",
             "`python benchmarks/paper_cnn.py` (resumable: each finished cell is kept in benchmarks/results/paper.json "
             "with its recipe key). From the shared strong baselines (sha256 below), 5% of the parameters kept "
             "(fully-connected layers included, within 1%), every compressed model and the equal-budget control given "
             "the same fine-tune epochs (in-walk fine-tuning included), seeds fixed before the run. Top-1 is read from "
             "the ONNX files in onnxruntime on the Fashion-MNIST test split (the paper used CIFAR-10, which is not "
             "available offline). Compression is the paper's measure: fp32 parameter bytes of the baseline over the "
             "parameter bytes in the final ONNX file. Verdicts are paired by seed (2 SE), in points; drop in points "
             "against the equal-budget control. Speed-up: p50 of the fp32 baseline over the row's seed-0 file, all "
             "timed interleaved in one onnxruntime run at one thread.", ""]
    if (RESULTS / "paper_cnn.png").exists():
        lines += ["![top-1 against compression per row, beside the paper's point and the goals]"
                  "(../benchmarks/results/paper_cnn.png)", ""]
    for name in ("alexnet", "vgg16"):
        m = (r or {}).get(name)
        if not m or "baseline_sha256" not in m:
            lines += [f"### {name}", "", f"Not measured yet: `python benchmarks/paper_cnn.py --models {name}`.", ""]
            continue
        prov = m.get("provenance", {})
        eq = m.get("equal_budget") or {}
        ctl = (f"{_pm(m['equal_budget_top1'], m['equal_budget_std'])}% after {m['control_epochs']:g} more epochs "
               f"(seeds {eq.get('seeds')})" if m.get("equal_budget_top1") is not None else "not measured yet")
        t = m.get("timing")
        lat = (f"{_load_line(t)}, waited {t['settle_s']:g} s for a quiet machine" if t else "not timed yet")
        planned = len(m["seeds"]) * (3 + 1)
        done = sum(1 for c in m.get("cells", {}).values() if c.get("route") in ("sensitivity", "peer_global", "uniform",
                                                                         "control"))
        lines += [f"### {name}", "",
                  f"Baseline `{m['baseline_file']}` (sha256 {m['baseline_sha256'][:12]}): validation "
                  f"{m['baseline_val_top1']:.2f}%, test {m['baseline_top1']:.2f}%. Equal-budget control: {ctl}. "
                  f"Seeds planned: {m['seeds']}; headline cells finished: {done} of {planned}. Latency: {lat}. "
                  f"Made at commit {prov.get('commit')}{' (code modified)' if prov.get('dirty') else ''}, "
                  f"{(prov.get('date') or '?')[:10]}.", "",
                  "| row | kept | params | MACs kept | file bytes | compression | test top-1 (mean ± std) | "
                  "drop vs control (pts) | vs peer_global | vs uniform | p50 speed-up | paper |",
                  "|---|---|---|---|---|---|---|---|---|---|---|---|"]
        for label, v in m.get("rows", {}).items():
            if label in ROW_NAMES:
                lines.append(_row(label, v, f"{m['paper_compression_x']}x" if label == "fc-int8" else "-"))
        lines.append("")
        if m.get("goals"):
            lines += ["Goals (issue 35): " + "; ".join(_goal(k, g) for k, g in m["goals"].items()) + ".", ""]
        if m.get("ingredients"):
            lines += ["Recovery ingredients (all-int8, the sensitivity route against the same route without one "
                      "part): " + "; ".join(f"{v['what']}: {_verdict(v)} pts" for v in m["ingredients"].values())
                      + ".", ""]
        if m.get("order_verdicts"):
            rows = m["rows"]
            lines += ["Order ablation (the sensitivity plan, all-int8, walked in each order at the same size and "
                      "budget; `prune_orders_" + name + ".json`): "
                      + "; ".join(f"sensitivity vs {o} ({_pm(rows[f'order_{o}']['top1_mean'], None)}%): "
                                  f"{_verdict(v)}" for o, v in m["order_verdicts"].items()) + ".", ""]
    return lines


def paper_section(r: dict) -> list[str]:
    lines = ["## The paper side by side (issue 12)", "",
             "`python benchmarks/reproduce_paper.py` (`make reproduce`). CNN rows: the strong baseline, the "
             "sensitivity plan and order at the kept fraction below, then `fc-int8` (the paper's scheme: int8 "
             "fully-connected layers, float convolutions) and `all-int8` (beyond the paper); `peer_global` is the "
             "route by hand at the same size (Torch-Pruning global pruning in one shot, the same fine-tuning, "
             "onnxruntime static QDQ). Drops in points against the equal-budget baseline, mean over seeds.", ""]
    for name in ("alexnet", "vgg16"):
        m = r.get(name)
        if not m or "baseline_sha256" in m:  # measured by paper_cnn.py: the first section of this page
            continue
        quick = " (quick smoke run: LeNet-5 on an MNIST subset, not a result)" if m.get("quick") else ""
        lines += [f"### {name}{quick}", "", f"Baseline {m['baseline_top1']:.2f}%, equal-budget "
                  f"{_pm(m['equal_budget_top1'], m['equal_budget_std'])}%; seeds {m['seeds']}; keep "
                  f"{m['recipe']['keep']:.0%}, final fine-tune {m['recipe']['final']:g} epochs; latency: "
                  f"{_load_line(m['latency'])}; {m['wall_s'] / 60:.0f} min.", "",
                  "| row | compression | top-1 (mean ± std) | drop vs equal budget | p50 ms | p90 ms | speed-up | "
                  "paper |", "|---|---|---|---|---|---|---|---|"]
        for row, v in m["rows"].items():
            paper = f"{m['paper']['compression_x']}x" if row == "fc-int8" else "-"
            lines.append(f"| {row} | {v['compression_x']:.2f}x | {_pm(v['top1_mean'], v['top1_std'])} | "
                         f"{v['drop_pts']:+.2f} pts | {v['p50_ms']:.3f} | {v['p90_ms']:.3f} | "
                         f"{v['speedup_p50']:.1f}x | {paper} |")
        v = m["ours_vs_peer_global"]
        lines += ["", f"- all-int8 against peer_global: **{v['verdict']}** ({v['diff_pts']:+.2f} pts, "
                  f"{v['pairs']} pairs).", f"- fc-int8 meets the paper's {m['paper']['compression_x']}x within "
                  f"1 point: **{'yes' if m['fc_int8_meets_paper'] else 'no'}**.", ""]
    for name in ("a2e_fraud", "a2e_fraud_anomaly", "a2e_mnist"):
        m = r.get(name)
        if not m:
            continue
        p = m["paper"]
        what = (" (beyond the paper: trained on normal transactions only, the reconstruction error is the "
                "fraud score; the paper's figures are for its supervised fraud model)"
                if m.get("head") == "reconstruction" else "")
        lines += [f"### {name}{what}", "",
                  f"Order from the analysis: {', '.join(m['order'])}; hidden widths "
                  f"{_widths(m['before']['spec'], [])} → {_widths(m['before']['spec'], m['steps'])}.",
                  "", "| | parameters | MACs | " + m["performance_metric"] + " | PR-AUC |", "|---|---|---|---|---|"]
        for k in ("before", "after"):
            lines.append(f"| {k} | {m[k]['params']:,} | {m[k]['macs']:,} | {m[k][m['performance_metric']]} | "
                         f"{m[k].get('pr_auc', '-')} |")
        lines += ["", f"- complexity: {m['complexity_reduction_pct']:.1f}% fewer parameters "
                  f"({m['macs_reduction_pct']:.1f}% fewer MACs); paper {p['complexity_reduction_pct']}%.",
                  f"- drop against the unpruned model (no equal-budget control was trained for the autoencoders): "
                  f"{_pm(m['performance_drop_pts'], m.get('performance_drop_pts_std'))} points "
                  f"({len(m.get('seeds', [0]))} seed(s)), {m['performance_drop_pct']:.2f} relative %; "
                  f"paper {p['performance_drop_pct']} (relative %)."]
        if "bootstrap_95" in m:
            b = m["bootstrap_95"]
            lines.append(f"- bootstrap 95% intervals over the test split ({b['positives']} frauds, {b['resamples']} "
                         f"resamples): ROC-AUC drop {b['roc_auc_drop']}, PR-AUC drop {b['pr_auc_drop']}.")
            for metric, label in (("roc_auc", "ROC-AUC"), ("pr_auc", "PR-AUC")):
                lo, hi = b[f"{metric}_drop"]
                if lo > 0:
                    basis = ("validation ROC-AUC" if m.get("head") == "reconstruction" else
                             "validation top-1 accuracy, which the normal transactions dominate")
                    lines.append(f"- **Where it loses: {label} is lower after pruning** (the whole interval of "
                                 f"the drop is above 0). The pruning decisions read {basis}, which does not "
                                 f"see what precision at low recall loses.")
                elif hi < 0:
                    lines.append(f"- {label} is higher after pruning (the whole interval of the drop is below 0).")
                else:
                    lines.append(f"- {label}: the interval of the drop holds 0; no change shown.")
        lines.append("")
    return lines


def bench_section(r: dict) -> list[str]:
    lines = ["## `compress bench` overhead (issue 6)", "",
             f"`python benchmarks/bench_overhead.py`: `compress bench`'s loop against a bare onnxruntime loop, "
             f"alternated in one run ({r['threads']} thread). Host: {_host(r)}.", "",
             "| model | runs | bare p50 ms | compress p50 ms | overhead | within 5% |", "|---|---|---|---|---|---|"]
    for m in r["models"]:
        lines.append(f"| {m['model']} | {m['runs']} | {m['bare_p50_ms']:.4f} | {m['compress_p50_ms']:.4f} | "
                     f"{100 * m['p50_overhead']:+.2f}% | {'yes' if m['within_goal'] else 'no'} |")
    return lines + [""]


def timm_section(r: dict) -> list[str]:
    lines = breadth_section(r, "## timm edge architectures through every stage (issue 41)",
                            "python benchmarks/timm_breadth.py")
    fused = [m for m in r["rows"] if m.get("p50_fused_ms")]
    if fused:
        lines[-1:-1] = ["", "Deploy forms (timm's re-parameterisation of the unpruned model, fp32; p50 in the "
                            "same interleaved run):", "", "| model | params unfused | fused | max rel. diff | "
                            "p50 unfused ms | p50 fused ms |", "|---|---|---|---|---|---|"] + [
            f"| {m['model']} | {m['fused']['params_unfused']:,} | {m['fused']['params']:,} | "
            f"{m['fused']['max_rel_diff']:.1e} | {_ms(m.get('p50_before_ms'))} | {_ms(m['p50_fused_ms'])} |"
            for m in fused]
    return lines


def breadth_section(r: dict, title: str = "## Every torchvision classifier through every stage (issue 14)",
                    script: str = "python benchmarks/zoo_breadth.py") -> list[str]:
    rows = r["rows"]
    rule = r.get("parity_rule")
    checked = rule is not None and all("parity_int8" in m for m in rows if m.get("parity_max_abs") is not None)
    lines = [title, "",
             f"`{script}`: "
             + (f"{len(r['not_run'])} of {r['models'] + len(r['not_run'])} models were not run yet (listed "
                f"below; the run resumes). " if r.get("not_run") else "")
             + f"Of the {r['models']} run, {r['ok']} ({100 * r['ok_fraction']:.1f}%; goal "
             f"{100 * r['goal_ok_fraction']:.0f}% of all) went through analyze (one ratio, 32 validation images), "
             f"prune to {r['target_params']:.0%} of the parameters (sensitivity plan, one shot), all-int8 "
             f"quantization, export with the fp32 ONNX checked against PyTorch, and bench; {r['tracebacks']} ended "
             f"in a traceback. "
             + (f"Int8 parity: the int8 ONNX that is timed against the fp32 pruned model on 64 images, held to "
                f"top-1 agreement >= {rule['min_agreement']} and relative error <= {rule['max_rel_error']} "
                f"(fixed before the run); {len(r['parity_failed'])} row(s) failed it"
                f"{': ' + ', '.join(r['parity_failed']) if r['parity_failed'] else ''}. "
                if checked else "**No int8 parity**: these rows compare only the fp32 ONNX with PyTorch. ")
             + "**This measures structure, not accuracy**: random weights"
             + (" (BatchNorm statistics estimated on 64 images)" if checked else "")
             + f", `synthetic:` data, small inputs ({r['input']['default']} px; "
             + f"{', '.join(f'{k} {v}' for k, v in r['input'].items() if k != 'default')}). "
             f"p50: onnxruntime, 1 thread, fp32 unpruned vs pruned all-int8, interleaved; {r.get('jobs', 1)} "
             f"model(s) at a time, so under load (the pair of a row shares it). Host: {_host(r)}. "
             + (f"Time: one fresh run of all {r['models']} models took {r['wall_s'] / 3600:.2f} h of wall time "
                f"({r.get('jobs', 1)} at a time, {', '.join(r.get('alone') or []) or 'none'} alone), measured."
                if r.get("fresh_run") else
                f"Time: **no fresh run of all models has been timed**; the rows were measured from "
                f"{r['measured_between'][0]} to {r['measured_between'][1]}"
                + (f" at {len(r['row_commits'])} commit(s)" if r.get("row_commits") else " on older code") +
                f", {r['model_seconds'] / 3600:.1f} h summed over the models (a sum, not the time of a run)."),
             "",
             "| model | params before | after | MACs kept | int8 top-1 agreement | int8 rel. error | "
             "p50 before ms | p50 after ms | status |",
             "|---|---|---|---|---|---|---|---|---|"]
    for m in rows:
        macs = f"{m['macs_after'] / m['macs_before']:.0%}" if m.get("macs_before") else ""
        p8 = m.get("parity_int8") or {}
        agree = f"{p8['top1_agreement']:.3f}" if p8 else ""
        rel = f"{p8['rel_error']:.3f}" if p8 else ""
        status = "ok" if m["status"] == "ok" else f"{m['status']}: {m.get('reason', '')[:160]}"
        before, after = (f"{m[k]:,}" if m.get(k) else "" for k in ("params_before", "params_after"))
        lines.append(f"| {m['model']} | {before} | {after} | {macs} | {agree} | {rel} | "
                     f"{_ms(m.get('p50_before_ms'))} | {_ms(m.get('p50_after_ms'))} | {status} |")
    missing = r.get("not_run") or []
    if missing:
        lines += ["", f"Not run in this measurement (over the time the run had; the script resumes): "
                      f"{', '.join(missing)}."]
    return lines + [""]


def emulate_section(r: dict) -> list[str]:
    return ["## The emulated arm64 target (issue 16)", "",
            f"`python benchmarks/emulate_root.py`: the Debian {r['suite']} arm64 userland with onnxruntime "
            f"{r['onnxruntime']} built from scratch in {r['build_s']:.0f} s ({r['root_bytes'] / 1e6:.0f} MB; goal "
            f"{r['goal_build_s'] // 60} minutes), downloads included, and reused in {1000 * r['reuse_s']:.1f} ms. "
            f"Host: {_host(r)}.", ""]


def ray_section(r: dict) -> list[str]:
    sim = ", ".join(f"{n}: {x:.2f}x" for n, x in r["speedup_simulated"].items())
    return ["## Ray against local (issue 18)", "",
            f"`python benchmarks/ray_overhead.py`: the {r['model']} analysis at ratio {r['ratio']} ({r['units']} "
            f"units, {r['eval_samples']} validation images) on {r['cores']} cores, local with 2 forked workers "
            f"against a 2-CPU Ray instance, alternated {r['repeats']} times: local {r['local_s']} s, Ray "
            f"{r['ray_s']} s, **overhead {r['overhead_pct']:+.1f}%** of the median (goal at most "
            f"{r['goal_overhead_pct']}%). Ray's analysis equals the local one: {r['identical']} (every figure "
            f"but each unit's wall time). A worker SIGKILLed mid-task: its unit was retried and the analysis still "
            f"equals the local one: {r['worker_killed_ok']}. Speed-up with N workers, **simulated** from the "
            f"measured unit times (no bigger machine was lent): {sim}. Host: {_host(r)}.", ""]


def latency_section(r: dict) -> list[str]:
    lines = ["## Per-layer precision (issue 17, part 1)", "",
             f"`python benchmarks/latency_aware.py`: each quantizable layer timed alone in int8 against fp32 "
             f"(`quantize --per-layer`), int8 kept where it ran faster; then fp32, all-int8 and per-layer timed "
             f"interleaved, {r['threads']} thread. {r['what']}. Host: {_host(r)}.", "",
             "| model | convolutions | layers int8 / all | p50 fp32 ms | all-int8 | per-layer | per-layer / fp32 |",
             "|---|---|---|---|---|---|---|"]
    for m in r["rows"]:
        lines.append(f"| {m['model']} ({m['input']} px) | {m['convs']} | {m['layers_int8']} / {m['layers']} | "
                     f"{_ms(m['p50_fp32_ms'])} | {_ms(m['p50_all_int8_ms'])} | {_ms(m['p50_per_layer_ms'])} | "
                     f"{m['per_layer_vs_fp32']:.2f}x" + (" (flagged: busy machine)" if m.get("loaded") else "") + " |")
    return lines + [""] + objectives_section(r.get("objectives"))


def stability_section(r: dict) -> list[str]:
    lines = ["## How well each analysis measure ranks the layers (`prune --proxy`)", "",
             f"`python benchmarks/proxy_stability.py`: {r['what']} ({r['eval_samples']:,} {r['data']} validation "
             f"images, BatchNorm re-estimated on {r['adapt_bn']:,} training images after each cut; the trained "
             f"models of the latency objective's benchmark, above). Near 1: the ranking holds; near 0 or below: "
             f"the measure ranks noise. Host: {_host(r)}.", "",
             "| model | layers | top-1 | confidence | fidelity |", "|---|---|---|---|---|"]
    for m in r["rows"]:
        rho = m["spearman_halves"]
        lines.append(f"| {m['model']} ({m['spec']}) | {m['layers']} | {rho['top1']:.2f} | {rho['confidence']:.2f} | "
                     f"{rho['fidelity']:.2f} |")
    return lines + [""]


def _analysis(name: str, m: dict) -> str:
    """One model's analysis and planner settings: every plan of both objectives is made from them."""
    a, plans = m["analysis"], m["plans"]
    n, st = a["adapt_bn"], a["stability"]
    bn = f"BatchNorm re-estimated on {n:,} training images after each cut" if n else "without adaptive BatchNorm"
    proxy = {"top1": "top-1 (the paper's)", "confidence": "confidence (mean probability of the true class)",
             "fidelity": "fidelity (overlap of the cut network's outputs with the unpruned network's)"}
    rho = f"top-1 {st['spearman_halves']}" + "".join(f", {k} {st[f'spearman_halves_{k}']}" for k in
                                                     ("confidence", "fidelity")
                                                     if st.get(f"spearman_halves_{k}") is not None)
    return (f"- {name}: every pruned model fine-tuned {m['finetune_epochs']:g} epoch(s), all timed in one run of "
            f"{m['seconds']:g} s{_busy(m.get('bench_loaded'))}; "
            f"analysis ratios {', '.join(f'{r:g}' for r in a['ratios'])} on "
            f"{a['eval_samples']:,} validation "
            f"images, {bn}; ranking stability (Spearman between two halves of the images, at ratio 0.5): {rho}; "
            f"both objectives read each cut's cost in {proxy[plans['proxy']]}; the latency objective re-plans "
            f"at most {plans['latency_rounds']} rounds of {plans['round_seconds']:g} s, "
            + (f"its table re-timed around the plan {plans['retimes']} times ({plans['retime_seconds']:g} s each)"
               if plans.get("retimes") else "on the unpruned model's table alone (no re-timing: `--retimes 0`)")
            + ("; plans priced by the cost model fitted to the table (constant, MACs, parameters, activations), "
               f"made at every cap up to {plans['latency_max_cap']:g}" if plans.get("pricing") == "cost model"
               else "; plans priced by the table's additive model")
            + ("; both objectives choose among the plans made at each cap by measuring each cut whole after "
               "adaptive BatchNorm (`--select adaptive-bn`)" if plans.get("select") == "adaptive-bn" else ""))


def objectives_section(o: dict | None) -> list[str]:
    lines = ["## Latency objective against parameter objective (issue 17, part 4)", ""]
    if not o or not o.get("models"):
        return lines + ["Not measured yet: `python benchmarks/latency_aware.py --part objectives`.", ""]
    faster = sorted({m["faster_fraction"] for m in o["models"].values()} - {None})
    tops = ", ".join(f"{n} {m['base']['top1']:.2f}%" for n, m in o["models"].items())
    lines += [f"**Exploratory, weak baselines.** These base models were trained on {o['train_limit']:,} images for a "
              f"few epochs (test top-1: {tops}; the plain-training goals are AlexNet 93.0%, VGG16-BN 93.5%) and "
              "fine-tuned for a fraction of an epoch: they break EVALUATION.md's strong-baseline rule, show how "
              "the two objectives behave, and support no claim of the project's (the README quotes none).", ""]
    lines += [f"`python benchmarks/latency_aware.py --part objectives`: {o['what']}. Base models trained on "
              f"{o['data']} ({o['train_limit']:,} training images); one analysis per model (below); the pruned "
              f"models of one model all fine-tuned the same epochs (below); p50 with the x86-cpu target at "
              f"{o['threads']} thread, base and every seed's model interleaved in one run. `params-P` keeps P% of "
              f"the parameters (the sensitivity plan); `latency-at-params-P` aims at `params-P`'s latency "
              f"(`prune --latency-of` seed 0's model: each plan is timed beside it and re-planned until it "
              f"measures within 3%), `latency-faster` (where run) at "
              f"{' or '.join(f'{f:g}' for f in faster)}x the first of those "
              f"(`--latency-fraction`); a plan can differ by seed. "
              f"Verdicts are paired by seed (ahead/behind only beyond twice the standard error).", "",
              "Per model, the analysis both objectives plan from and the planner's settings:", "",
              *(_analysis(name, m) for name, m in o["models"].items()), "",
              f"![top-1 against p50 per objective](../{o['plot']})", "",
              "| model | objective | goal | top-1 % (test) | p50 ms | speed-up | params kept | MACs kept |",
              "|---|---|---|---|---|---|---|---|"]
    for name, m in o["models"].items():
        b = m["base"]
        lines.append(f"| {name} | unpruned | - | {b['top1']:.2f} | {_ms(b['p50_ms'])} | 1.00x | 100% | 100% |")
        for row in m["rows"]:
            t = row["top1_summary"]
            goal = f"{row['goal']:.0%} params" if row["objective"] == "params" else \
                f"{row['goal']:g}x {row['goal_of']}" if "goal_of" in row else f"{row['goal']} ms"
            lines.append(f"| {name} | {row['config']} | {goal} | {_pm(t['mean'], t['std'])} (n={t['n']}) | "
                         f"{_ms(row['p50_ms'])} | {row['speedup_vs_unpruned']:.2f}x | {row['params_kept']:.1%} | "
                         f"{row['macs_kept']:.1%} |")
    lines += ["", "Matched latency (the latency model aimed at the parameter model's p50), then every latency model "
              "that measured faster than a parameter model (shown for what it is: a slower parameter model; "
              "\"faster at the same top-1\" needs a parameter model at the faster one's latency, within 3%); "
              "\"layers apart\": the mean difference, over the layers, in the fraction of channels the two "
              "networks keep (seed 0's; near 0: both objectives chose one network, and can only tie):", "",
              "The verdict counts only the seeds the run was planned with and, at matched latency, only the "
              "seeds whose pair measured within 3% of each other; seeds added after a verdict was seen are "
              "shown beside it and never counted (EVALUATION.md sections 3 and 4).", "",
              "| model | comparison | latency model | parameter model | p50 latency / params (by seed) | "
              "seeds counted (planned) | top-1 difference (pts, paired) | verdict | layers apart |",
              "|---|---|---|---|---|---|---|---|---|"]
    for name, m in o["models"].items():
        for key, label in (("matched_latency", "matched latency"), ("faster", "faster")):
            for c in m[key]:
                se = "" if c["top1"]["se_pts"] is None else f" ± {c['top1']['se_pts']:.2f}"
                ratios = ", ".join(f"{r:.2f}" for r in c["p50_ratio_per_seed"].values())
                late = c.get("top1_all_seeds_not_counted")
                late = (f" (all {late['pairs']} seeds, more added after the verdict: {late['diff_pts']:+.2f} ± "
                        f"{late['se_pts']:.2f}, {late['verdict']}; not counted)") if late else ""
                verdict = c["top1"]["verdict"] if c["counted"] else "not counted (fewer than 2 seeds matched)"
                lines.append(f"| {name} | {label} | {c['latency']} | {c['params']} | {c['p50_ratio']:.2f}x "
                             f"({ratios}) | {c['counted_seeds']} ({c['planned_seeds']}) | "
                             f"{c['top1']['diff_pts']:+.2f}{se}{late} | {verdict} | "
                             + (f"{c['layers_apart']:.1%} |" if "layers_apart" in c else "- |"))
    twins = [(name, c) for name, m in o["models"].items() for c in m.get("against_proxy", [])]
    if twins:
        lines += ["", "One model planned in two `--proxy` measures (same base, analysis cuts, one-shot cut, fine-tune "
                  "and seeds), config by config; top-1 only, the two were timed in different runs:", "",
                  "| model | config | proxy | against | top-1 difference (pts, paired) | verdict | layers apart |",
                  "|---|---|---|---|---|---|---|"]
        for name, c in twins:
            se = "" if c["top1"]["se_pts"] is None else f" ± {c['top1']['se_pts']:.2f}"
            lines.append(f"| {name} | {c['config']} | {c['proxy']} | {c['twin']} ({c['twin_proxy']}) | "
                         f"{c['top1']['diff_pts']:+.2f}{se} | {c['top1']['verdict']} | {c['layers_apart']:.1%} |")
    return lines + [""]


NO_PROVENANCE = "**No provenance recorded**"


def provenance_line(r: dict, script: str) -> list[str]:
    """Where a section's figures came from (EVALUATION.md section 6), or a plain mark that the file
    predates the rule and says nothing of its commit, date or load."""
    p = r.get("provenance") or {}
    if not p.get("commit"):
        return [f"{NO_PROVENANCE}: these figures were measured before results files carried their commit, date "
                f"and load average (EVALUATION.md section 6); rerun `python benchmarks/{script}.py` to replace "
                "them.", ""]
    dirty = " with uncommitted code changes" if p.get("dirty") else ""
    h = p.get("host", {})
    note = f" Note: {p['note']}." if p.get("note") else ""
    return [f"Provenance: commit {p['commit']}{dirty}, {str(p.get('date'))[:10]}, {h.get('cpu', '?')}, "
            f"{h.get('cores', '?')} cores.{note}", ""]


def render() -> str:
    """docs/results.md, from the JSON files in benchmarks/results/ (a test holds the two equal)."""
    out = ["# Results", "",
           "Every figure on this page is written by `benchmarks/make_results_md.py` from the JSON files in "
           "`benchmarks/results/`, which the scripts named in each section produce. Rerun a script, then this one. "
           "CIFAR-10 is not available offline here, so the image benchmarks run on Fashion-MNIST at 32x32.", "",
           "Every figure follows shared/EVALUATION.md: decisions on a validation split carved from the training "
           "data, strong baselines, drops against the equal-budget baseline, seeds with mean ± std, paired "
           "verdicts, interleaved latency with the load recorded. The figures of the first sessions broke those "
           "rules (the analysis ranked layers on test images, baselines trained 2-3 epochs on a 20,000-image "
           "subset, one seed) and were withdrawn; they remain in the git history. A section that says "
           "\"not measured yet\" or \"quick smoke run\" has no result under the protocol yet.", ""]
    out += headline_section(_load("paper"))
    orders = {p.stem.removeprefix("prune_orders_"): json.loads(p.read_text())
              for p in sorted(RESULTS.glob("prune_orders_*.json"))}
    orders = {k: v for k, v in orders.items() if "source" not in v}  # paper_cnn.py's: in the section above
    out += orders_section(orders) if orders else ["## Plan x order (issue 12)", "",
                                                  "Not measured yet: `python benchmarks/prune_orders.py`.", ""]
    for name, section in (("baselines", baselines_section), ("paper", paper_section),
                          ("analyze_speed", analyze_section), ("quantize_speed", quantize_section),
                          ("bench_overhead", bench_section), ("zoo_breadth", breadth_section),
                          ("timm_breadth", timm_section),
                          ("emulate_root", emulate_section), ("ray", ray_section),
                          ("latency_aware", latency_section), ("proxy_stability", stability_section)):
        r = _load(name)
        script = "reproduce_paper" if name == "paper" else name
        lines = section(r) if r else [f"## {name}", "", f"Not measured yet: run `python benchmarks/{script}.py`.", ""]
        out += lines[:2] + (provenance_line(r, script) if r else []) + lines[2:]
    return "\n".join(out)


def main() -> None:
    (ROOT / "docs" / "results.md").write_text(render())
    print(f"wrote {ROOT / 'docs' / 'results.md'}")


if __name__ == "__main__":
    main()
