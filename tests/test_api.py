"""docs/api.md is true: its Python examples run, in order, in one fresh folder."""

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_the_api_page_examples_run(tmp_path, monkeypatch, capsys):
    blocks = re.findall(r"```python\n(.*?)```", (ROOT / "docs" / "api.md").read_text(), re.S)
    assert len(blocks) >= 4
    monkeypatch.chdir(tmp_path)
    scope: dict = {}
    for block in blocks:
        exec(compile(block, "docs/api.md", "exec"), scope)  # noqa: S102 - the page's own examples
    out = capsys.readouterr().out
    assert "least hurt first:" in out and "gate: PASS" in out and "rpi4" in out
    assert (tmp_path / "api-demo" / "model.onnx").exists()


def test_importing_the_package_loads_no_stage():
    import subprocess
    import sys

    code = "import sys, toolchain as c; c.__version__; print(sorted(m for m in sys.modules if m == 'torch'))"
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT).stdout.strip() == "[]"


def test_bench_and_check_start_without_torch():
    """A CI runner or a device that only benches and gates needs no torch: their modules do not load it."""
    import subprocess
    import sys

    code = "import sys; from toolchain import bench, check; print('torch' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT).stdout.strip() == \
        "False"
