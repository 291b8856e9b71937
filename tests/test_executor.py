"""Analysis units on a real Ray cluster: a head and a second worker node, as processes on 127.0.0.1."""

import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from toolchain import analyze
from toolchain.errors import CompressError
from toolchain.executor import Executor, run_units

ray = pytest.importorskip("ray", reason="Ray is an optional extra: pip install 'compress[ray]'")
RAY = str(Path(sys.executable).with_name("ray"))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def cluster():
    """`ray start --head` plus a second node joining it: two one-CPU nodes, torn down after.

    Hermetic about Ray's token authentication: Ray >= 2.5x turns it on for a head that finds
    ~/.ray/auth_token (any earlier local `ray.init()` writes one) but not for a node joining it, so
    the cluster runs with its own token, given to both nodes and to this driver."""
    port, tmp = _free_port(), f"/tmp/rt{os.getpid()}"
    auth = {"RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": secrets.token_hex(32)}
    with pytest.MonkeyPatch.context() as mp:
        mp.delenv("RAY_AUTH_TOKEN_PATH", raising=False)
        for key, value in auth.items():
            mp.setenv(key, value)
        _reset_ray_auth()
        env = os.environ | {"RAY_USAGE_STATS_ENABLED": "0"}
        common = ["--num-cpus=1", "--disable-usage-stats"]
        _ray(["start", "--head", f"--port={port}", "--include-dashboard=false", f"--temp-dir={tmp}", *common], env)
        _ray(["start", f"--address=127.0.0.1:{port}", *common], env)
        yield f"127.0.0.1:{port}"
        if ray.is_initialized():
            ray.shutdown()
        subprocess.run([RAY, "stop", "--force"], env=env, capture_output=True)
        shutil.rmtree(tmp, ignore_errors=True)
    _reset_ray_auth()


def _reset_ray_auth() -> None:
    """Make this process re-read RAY_AUTH_* (Ray caches them at import); Ray before token auth has none."""
    try:
        from ray._private.authentication_test_utils import reset_auth_token_state
    except ImportError:
        return
    reset_auth_token_state()


def _ray(args: list[str], env: dict) -> None:
    """Run the `ray` CLI; on failure, fail with the last lines it printed (not a bare exit status)."""
    done = subprocess.run([RAY, *args], env=env, capture_output=True, text=True)
    if done.returncode:
        subprocess.run([RAY, "stop", "--force"], env=env, capture_output=True)
        tail = "\n".join((done.stdout + done.stderr).strip().splitlines()[-8:])
        pytest.fail(f"ray {args[0]} {args[1]} exited {done.returncode}:\n{tail}", pytrace=False)


def test_ray_is_refused_cleanly_when_asked_for_wrongly():
    with pytest.raises(CompressError, match="--address only applies"):
        Executor("local", address="127.0.0.1:6379").validate()
    with pytest.raises(CompressError, match="executor"):
        Executor("dask").validate()


def test_an_analysis_on_ray_equals_the_local_one(cluster, trained_lenet, tmp_path, masked_always):
    common = dict(eval_samples=150, ratios=(0.25, 0.75), include_linear=True, plots=False)
    local = analyze.run(str(trained_lenet), tmp_path / "local.json",
                        analyze.AnalyzeOptions(**common, cache_dir=tmp_path / "c1")).meta
    remote = analyze.run(str(trained_lenet), tmp_path / "ray.json",
                         analyze.AnalyzeOptions(**common, cache_dir=tmp_path / "c2", executor="ray",
                                                address=cluster)).meta
    assert remote["executor"] == "ray" and remote["reused_results"] == 0
    measured = lambda rows: [{k: v for k, v in r.items() if k != "seconds"} for r in rows]  # noqa: E731 - wall time
    assert measured(remote["layers"]) == measured(local["layers"])
    for key in ("priority", "baseline", "skipped", "stability"):
        assert remote[key] == local[key], key
    nodes = {n["NodeID"] for n in ray.nodes() if n["Alive"]}
    assert len(nodes) == 2


def test_a_worker_killed_mid_task_is_retried_and_the_results_are_whole(cluster):
    """Every unit sleeps long enough to be caught running; one of its workers is killed with
    SIGKILL; Ray runs that unit again elsewhere and every result comes back, right."""
    def slow(factor, unit):
        import time

        time.sleep(2.0)
        return unit * factor

    results, killed = [], []

    def drive():
        results.extend(run_units(Executor("ray", address=cluster), slow, 10, range(6)))

    driver = threading.Thread(target=drive)
    driver.start()
    deadline = time.monotonic() + 120
    while not killed and time.monotonic() < deadline:
        found = subprocess.run(["pgrep", "-f", "ray::_ray_unit"], capture_output=True, text=True).stdout.split()
        if found:
            os.kill(int(found[0]), signal.SIGKILL)
            killed.append(int(found[0]))
        time.sleep(0.1)
    driver.join(timeout=300)
    assert killed, "no worker was caught running a unit"
    assert sorted(results) == [u * 10 for u in range(6)]


def test_a_driver_without_the_clusters_token_gets_one_line_not_a_traceback(cluster, trained_lenet, tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith("RAY_AUTH")} | {"RAY_AUTH_MODE": "disabled"}
    done = subprocess.run([sys.executable, "-m", "toolchain.cli", "analyze", str(trained_lenet), "--executor", "ray",
                           "--address", cluster, "--ratios", "0.5", "-o", str(tmp_path / "a.json")],
                          env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 2, done.stderr[-2000:]
    assert "Traceback" not in done.stderr and "cannot reach the Ray cluster" in done.stderr
    assert not (tmp_path / "a.json").exists()
