"""`compress check`: the CI regression gate for size, parameters, MACs, accuracy and latency.

A committed baseline file (TOML or JSON) holds per-model figures and tolerances; a report from
`compress run` (summary.json) or `compress bench --json` holds the figures now. Every figure the
baseline names is compared; it passes only when it is a real number within its limit. A figure
the report lacks, or one that is NaN, fails: a gate that passes on missing data is no gate.

Latency is never compared in milliseconds (shared CI machines are too noisy for that): each
model's p50 is divided by the p50 of a reference model timed in the same, interleaved bench
run, and that ratio is what the baseline records.

    result = check.run(Path("runs/x/summary.json"), Path(".ci/baseline.toml"))
    result.passed, result.failures, [row.status for row in result.rows]

The package: `gate` (the baseline, the report, the comparison) and `formats` (table, Markdown,
JUnit, JSON, GitHub).
"""

from .formats import (  # noqa: F401 - the package's API
    append_step_summary,
    cells,
    enforce,
    github_annotations,
    junit,
    markdown,
    table,
    to_github,
    write_json,
    write_junit,
)
from .gate import (  # noqa: F401 - the package's API
    BASELINE_VERSION,
    REPORT_KINDS,
    SIZE_FIGURES,
    STRICT_DEFAULTS,
    Baseline,
    CheckResult,
    Figure,
    ModelBaseline,
    Report,
    Row,
    Status,
    Tolerance,
    load_baseline,
    load_report,
    run,
    to_toml,
    update_baseline,
)
