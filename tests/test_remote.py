"""toolchain/remote.py: `compress bench --host` against a real OpenSSH server on 127.0.0.1.

The test starts its own sshd (own host key, authorized key and known_hosts, in tmp_path) in the
foreground on a free port, as the current user, and measures a tiny model on "the device"
(localhost over SSH) end to end. Needs /usr/sbin/sshd, ssh, scp and ssh-keygen:
`apt-get install -y openssh-server openssh-client`.
"""

import getpass
import json
import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import onnxruntime as ort
import pytest
import torch
from click.testing import CliRunner
from torch import nn

from toolchain import bench, remote
from toolchain.cli import main
from toolchain.convert import export_onnx
from toolchain.errors import CompressError

SSHD = Path("/usr/sbin/sshd")
MISSING = [tool for tool in ("ssh", "scp", "ssh-keygen") if shutil.which(tool) is None]
needs_sshd = pytest.mark.skipif(
    not SSHD.exists() or bool(MISSING),
    reason="needs a real OpenSSH server and client (/usr/sbin/sshd, ssh, scp, ssh-keygen): "
           "apt-get install -y openssh-server openssh-client")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _keygen(path: Path) -> None:
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "compress-test", "-f", str(path)],
                   check=True, capture_output=True)


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    path = tmp_path_factory.mktemp("remote_models") / "tiny.onnx"
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 10))
    export_onnx(net.eval(), (3, 16, 16), path, simplify=False)
    return path


@pytest.fixture(scope="module")
def sshd(tmp_path_factory):
    """A real sshd in the foreground on 127.0.0.1:<free port>, key-only, for the current user."""
    if not SSHD.exists() or MISSING:
        pytest.skip("needs /usr/sbin/sshd, ssh, scp and ssh-keygen: apt-get install -y openssh-server openssh-client")
    d = tmp_path_factory.mktemp("sshd")
    for name in ("host_key", "client_key", "stranger_key"):
        _keygen(d / name)
    (d / "authorized_keys").write_text((d / "client_key.pub").read_text())
    port = _free_port()
    (d / "sshd_config").write_text(f"""\
Port {port}
ListenAddress 127.0.0.1
HostKey {d / 'host_key'}
AuthorizedKeysFile {d / 'authorized_keys'}
PidFile {d / 'sshd.pid'}
PermitRootLogin prohibit-password
PubkeyAuthentication yes
PasswordAuthentication no
KbdInteractiveAuthentication no
StrictModes no
UsePAM no
PrintMotd no
Subsystem sftp internal-sftp
""")
    host_pub = " ".join((d / "host_key.pub").read_text().split()[:2])
    (d / "known_hosts").write_text(f"[127.0.0.1]:{port} {host_pub}\n")
    (d / "empty_known_hosts").write_text("")
    if os.geteuid() == 0:
        Path("/run/sshd").mkdir(mode=0o755, exist_ok=True)  # sshd's privilege separation dir, as root
    log = open(d / "sshd.log", "w")
    proc = subprocess.Popen([str(SSHD), "-D", "-e", "-f", str(d / "sshd_config")], stdout=log,
                            stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 15
    while True:
        if proc.poll() is not None:
            log.close()
            pytest.fail(f"sshd exited with {proc.returncode}: {(d / 'sshd.log').read_text()}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            break
        except OSError:
            if time.monotonic() > deadline:
                proc.kill()
                pytest.fail(f"sshd did not listen on {port}: {(d / 'sshd.log').read_text()}")
            time.sleep(0.05)
    device = d / "device"
    device.mkdir()
    yield SimpleNamespace(dir=d, port=port, host=f"{getpass.getuser()}@127.0.0.1", key=d / "client_key",
                          stranger=d / "stranger_key", known_hosts=d / "known_hosts",
                          empty_known_hosts=d / "empty_known_hosts", workdir=device)
    proc.terminate()
    try:
        proc.wait(timeout=5)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
    log.close()


def _remote(sshd, **kw):
    base = dict(host=sshd.host, port=sshd.port, key=sshd.key, known_hosts=sshd.known_hosts,
                python=sys.executable, workdir=str(sshd.workdir))
    return remote.Remote(**(base | kw))


def _cli_args(sshd, *extra):
    return ["bench", "--host", sshd.host, "--port", str(sshd.port), "--key", str(sshd.key),
            "--known-hosts", str(sshd.known_hosts), "--remote-python", sys.executable, *extra]


def _one_line_error(result, *needles):
    assert result.exit_code == 2, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    for needle in needles:
        assert needle in lines[0], lines[0]
    return lines[0]


# ---------------------------------------------------------------- end to end on "the device"

@needs_sshd
def test_bench_on_the_device_over_ssh_end_to_end(sshd, model, tmp_path):
    second = tmp_path / "copy.onnx"
    shutil.copyfile(model, second)
    report = bench.run([model, second], None, bench.BenchOptions(runs=15, warmup=2, remote=_remote(sshd))).meta
    assert report["where"] == "remote" and report["ssh"]["host"] == sshd.host
    assert report["measured_on"].startswith(f"measured on {sshd.host} (")
    host = report["host"]
    for key in ("cpu", "machine", "cores", "onnxruntime", "providers", "python", "hostname"):
        assert host[key], key
    assert "CPUExecutionProvider" in host["providers"]
    for m, local in zip(report["models"], (model, second), strict=True):
        assert m["path"] == str(local) and m["remote_path"].startswith(str(sshd.workdir))
        assert m["runs"] == 15 and len(m["latencies_ms"]) == 15 and 0 < m["p50_ms"] <= m["p90_ms"] <= m["p99_ms"]
        assert m["peak_mem_bytes"] > 0  # measured on the device, in a child there
    assert report["models"][1]["bytes_ratio"] == 1.0
    assert list(sshd.workdir.iterdir()) == []  # the remote temp dir is gone


@needs_sshd
def test_cli_remote_json_and_a_target_of_another_kind(sshd, model, tmp_path):
    out = tmp_path / "remote.json"
    result = CliRunner().invoke(main, _cli_args(sshd, str(model), "--runs", "10", "--warmup", "1",
                                                "--no-memory", "--target", "jetson-nano", "--json", str(out)))
    assert result.exit_code == 0, result.output
    report = json.loads(out.read_text())
    assert report["models"][0]["p50_ms"] > 0 and report["host"]["onnxruntime"]
    assert report["target"]["name"] == "jetson-nano" and report["threads"] == 4
    if report["host"]["machine"] != "aarch64":
        assert report["target_mismatch"] and "not a jetson-nano" in report["measured_on"]
    # no CUDA/TensorRT on this "device": the runner fell back there and said so
    assert any("not available" in w for w in report["warnings"])
    assert list(sshd.workdir.iterdir()) == []


@needs_sshd
def test_strict_error_on_the_device_comes_back_as_one_line(sshd, model):
    if "TensorrtExecutionProvider" in ort.get_available_providers():
        pytest.skip("this onnxruntime has TensorRT")
    result = CliRunner().invoke(main, _cli_args(sshd, str(model), "--runs", "3", "--provider", "tensorrt",
                                                "--strict", "--no-memory"))
    _one_line_error(result, f"on {sshd.host}", "TensorrtExecutionProvider is not available")
    assert list(sshd.workdir.iterdir()) == []


# ---------------------------------------------------------------- what goes wrong, said plainly

@needs_sshd
def test_refused_key(sshd, model):
    with pytest.raises(CompressError, match="refused the key.*--key"):
        bench.run([model], None, bench.BenchOptions(runs=2, remote=_remote(sshd, key=sshd.stranger)))


@needs_sshd
def test_unknown_host_key_is_not_accepted_silently(sshd, model):
    result = CliRunner().invoke(main, ["bench", str(model), "--host", sshd.host, "--port", str(sshd.port),
                                       "--key", str(sshd.key), "--known-hosts", str(sshd.empty_known_hosts)])
    _one_line_error(result, "host key", "known_hosts")


@needs_sshd
def test_device_without_onnxruntime_says_what_to_install(sshd, model, tmp_path):
    bare = tmp_path / "bare-python"  # the same interpreter without site-packages: no numpy, no onnxruntime
    bare.write_text(f'#!/bin/sh\nexec "{sys.executable}" -S "$@"\n')
    bare.chmod(0o755)
    with pytest.raises(CompressError, match="lacks numpy.*onnxruntime.*pip install onnxruntime numpy"):
        bench.run([model], None, bench.BenchOptions(runs=2, remote=_remote(sshd, python=str(bare))))


@needs_sshd
def test_remote_arguments_are_quoted(sshd, model, tmp_path):
    """A python path with a space works; one with shell syntax is a name, never a command."""
    spaced = tmp_path / "my python"
    spaced.mkdir()
    wrapper = spaced / "py"
    wrapper.write_text(f'#!/bin/sh\nexec "{sys.executable}" "$@"\n')
    wrapper.chmod(0o755)
    report = bench.run([model], None, bench.BenchOptions(runs=3, warmup=0, runtime=bench.Runtime(memory=False),
                                                   remote=_remote(sshd, python=str(wrapper)))).meta
    assert report["models"][0]["runs"] == 3
    canary = tmp_path / "pwned"
    with pytest.raises(CompressError, match="not found on the device"):
        bench.run([model], None, bench.BenchOptions(runs=2, remote=_remote(sshd, python=f"python3; touch {canary}")))
    assert not canary.exists()


# ---------------------------------------------------------------- no server needed

def test_unreachable_host_fails_fast_with_one_line(model):
    start = time.monotonic()
    result = CliRunner().invoke(main, ["bench", str(model), "--host", "nobody@127.0.0.1",
                                       "--port", str(_free_port()), "--runs", "2"])
    if MISSING:
        _one_line_error(result, "not installed")
        return
    _one_line_error(result, "cannot reach", "127.0.0.1")
    assert time.monotonic() - start < 15


def test_missing_key_file(model, tmp_path):
    result = CliRunner().invoke(main, ["bench", str(model), "--host", "pi@rpi", "--key", str(tmp_path / "id_nope")])
    _one_line_error(result, "--key", "no such file")


@pytest.mark.parametrize("host", ["-oProxyCommand=touch /tmp/x", "pi@host;reboot", "pi@ho st", ""])
def test_a_host_that_is_not_a_host_is_rejected(model, host):
    with pytest.raises(CompressError, match="is not user@host"):
        remote.Remote(host=host).validate()


def test_ssh_argv_checks_host_keys_and_quotes_every_remote_argument():
    conn = remote._Connection(remote.Remote(host="rpi", options=("ProxyJump=bastion",)),
                              remote.SSHDefaults(user="pi", port=2222))
    argv = conn.ssh_argv(["python3", "-c", "print('hi'); import os", "/tmp/a b"])
    assert argv[0] == "ssh" and "pi@rpi" in argv and argv[argv.index("-p") + 1] == "2222"
    for opt in ("BatchMode=yes", "StrictHostKeyChecking=yes", "ConnectTimeout=10", "ProxyJump=bastion"):
        assert opt in argv
    assert argv[-1] == "python3 -c 'print('\"'\"'hi'\"'\"'); import os' '/tmp/a b'"
    assert argv.index("ProxyJump=bastion") < argv.index("BatchMode=yes")  # the user's options first
    relaxed = remote._Connection(remote.Remote(host="pi@rpi", options=("StrictHostKeyChecking=accept-new",)),
                                 remote.SSHDefaults())
    assert "StrictHostKeyChecking=yes" not in relaxed.ssh_argv(["true"])
    assert remote._q("~/ort/bin/python") == "~/ort/bin/python" and remote._q("~/a b") == "~/'a b'"


def test_bad_ssh_option_is_rejected(model):
    with pytest.raises(CompressError, match="KEY=VALUE"):
        remote.Remote(host="pi@rpi", options=("-oProxyCommand",)).validate()
