"""The Raspberry Pi's software path without a Pi: an arm64 Debian userland run under qemu-user.

What fails on the device most often is software, not speed: an int8 model the device's onnxruntime
will not load (an op its aarch64 build lacks, an opset), an illegal instruction, outputs that
differ from the x86 run. This module builds a minimal arm64 Debian root once (debootstrap
`--foreign`, its .debs unpacked with dpkg-deb: no chroot, no root-only mounts), adds numpy and
onnxruntime's aarch64 wheels from PyPI, and runs the standalone bench runner there with
`qemu-aarch64-static -L ROOT`, the CPU set to the target's (`QEMU_CPU=cortex-a72` for a Pi 4).

It answers: does each model load, does the aarch64 build implement every op, do the outputs match
onnxruntime here within tolerance. Its timings are emulated, not a device figure.
"""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from . import bench_runner, data, fileio
from .errors import CompressError
from .progress import task
from .target import arch, load_target

logger = logging.getLogger(__name__)

SUITE = "bookworm"  # Debian 12: Raspberry Pi OS's base, Python 3.11
PYTHON = "usr/bin/python3.11"
SITE = "opt/compress-site"
# onnxruntime 1.28's aarch64 wheel crashes at import under Debian 12's qemu 7.2 (1.23-1.27 run);
# the newest that runs is what the emulated target checks against.
WHEELS = ("numpy", "onnxruntime<1.28")
TOOLS = {"qemu-aarch64-static": "qemu-user-static", "debootstrap": "debootstrap", "dpkg-deb": "dpkg"}
QEMU_CPUS = {"Cortex-A72": "cortex-a72", "Cortex-A76": "cortex-a76", "Cortex-A57": "cortex-a57",
             "Cortex-A53": "cortex-a53", "Cortex-A78AE": "max"}
TOLERANCE = 1e-3  # max |aarch64 - x86| over max(1, |output|): kernels differ in summation order
MISSING_OP = re.compile(r"Could not find an implementation for ([\w.]+)\((\d+)\)|([\w.:]+)\((-?\d+)\) is not a "
                        r"registered function/op")


ROOT_VERSION = 2  # 2: openssh-server and the site .pth inside (a root of version 1 is rebuilt)


def root_dir() -> Path:
    return data.CACHE_DIR / "emulate" / f"arm64-{SUITE}-v{ROOT_VERSION}"


def missing_tools() -> list[str]:
    """Debian packages to install before an arm64 root can be built here (empty when ready)."""
    return sorted({pkg for tool, pkg in TOOLS.items() if shutil.which(tool) is None})


def ensure_root() -> Path:
    """The arm64 root, built once (about a minute of downloads) and reused from the compress cache."""
    root = root_dir()
    if _ready(root) is not None:
        return root
    with fileio.writing(root, _CACHE_ADVICE):
        return _build(root)


_CACHE_ADVICE = " (the arm64 root needs about 400 MB in the compress cache: set COMPRESS_CACHE to a place that has it)"


def _build(root: Path) -> Path:
    missing = missing_tools()
    if missing:
        raise CompressError(f"emulation needs {', '.join(missing)} (apt-get install {' '.join(missing)})")
    building = root.with_name(root.name + ".building")
    shutil.rmtree(building, ignore_errors=True)
    building.parent.mkdir(parents=True, exist_ok=True)
    with task("build the arm64 root (debootstrap, onnxruntime wheel)", 3) as advance:
        _step(["debootstrap", "--foreign", "--arch=arm64", "--variant=minbase", "--include=python3,openssh-server",
               SUITE, str(building)], "debootstrap")
        advance()
        for deb in sorted((building / "var/cache/apt/archives").glob("*.deb")):
            _step(["dpkg-deb", "-x", str(deb), str(building)], f"unpacking {deb.name}")
        advance()
        _step([sys.executable, "-m", "pip", "install", "-q", "--disable-pip-version-check", "--platform",
               "manylinux_2_27_aarch64", "--only-binary=:all:", "--python-version", "3.11", "--implementation",
               "cp", "--target", str(building / SITE), *WHEELS], "pip (aarch64 wheels)")
        advance()
    probe = subprocess.run([*_python(building), "-c", "import onnxruntime; print(onnxruntime.__version__)"],
                           capture_output=True, text=True, env=_env(building, None), timeout=300)
    if probe.returncode != 0:
        raise CompressError(f"the arm64 root was built but its onnxruntime does not start under qemu: "
                            f"{(probe.stderr.strip().splitlines() or ['exit ' + str(probe.returncode)])[-1]}")
    (building / "usr/lib/python3/dist-packages/compress-site.pth").write_text(f"/{SITE}\n")  # for sshd sessions
    (building / ".ready").write_text(json.dumps({"onnxruntime": probe.stdout.strip(), "suite": SUITE,
                                                 "built": time.strftime("%Y-%m-%dT%H:%M:%S")}))
    shutil.rmtree(root, ignore_errors=True)
    building.rename(root)
    return root


def _step(cmd: list[str], what: str) -> None:
    done = subprocess.run(cmd, capture_output=True, text=True)
    if done.returncode != 0:
        last = (done.stderr.strip() or done.stdout.strip()).splitlines() or [f"exit {done.returncode}"]
        raise CompressError(f"building the arm64 root failed at {what}: {last[-1]}")


def _python(root: Path) -> list[str]:
    return ["qemu-aarch64-static", "-L", str(root), str(root / PYTHON)]


def _env(root: Path, cpu: str | None) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "VIRTUAL_ENV"))}
    env |= {"PYTHONPATH": str(root / SITE), "PYTHONNOUSERSITE": "1", "OMP_NUM_THREADS": "1"}
    if cpu:
        env["QEMU_CPU"] = QEMU_CPUS.get(cpu, "max")
    return env


def root_facts() -> dict:
    return _ready(root_dir()) or {}


def _ready(root: Path) -> dict | None:
    """The finished root's facts (`.ready`, written last), or None: not built, or a damaged marker
    (warned; the root is built again)."""
    ready = root / ".ready"
    if not ready.exists():
        return None
    try:
        facts = json.loads(ready.read_bytes().decode("utf-8"))
    except (OSError, ValueError) as e:
        logger.warning("the arm64 root's marker %s is unreadable (%s); building the root again", ready, e)
        return None
    return facts if isinstance(facts, dict) else None


def measure(cfg: dict, cpu: str | None = None) -> dict:
    """The bench runner under qemu-aarch64 on `cfg`'s models: first each model alone (does it load,
    which ops are missing, its outputs on the runner's seeded inputs, compared with onnxruntime
    here), then the interleaved timing if every model loaded. Returns the runner's result plus
    `emulation`."""
    root = ensure_root()
    cfg = dict(cfg, memory=False)  # the memory child would start the host's python, not the arm64 one
    checks = [_check(root, cfg, i, cpu) for i in range(len(cfg["models"]))]
    failed = [c for c in checks if not c["loads"]]
    raw = _run(root, cfg, cpu) if not failed else None
    if raw is None:
        why = "; ".join(f"{Path(c['path']).name}: {c['error']}" for c in failed)
        raise CompressError(f"on emulated aarch64 ({root_facts().get('onnxruntime', '?')}) {why}")
    raw["emulation"] = {"qemu_cpu": QEMU_CPUS.get(cpu or "", "max"), "root": str(root),
                        "onnxruntime": root_facts().get("onnxruntime"), "models": checks,
                        "note": "emulated: not a device figure (qemu-user translates every instruction; "
                                "only load, op coverage and parity carry over to the device)"}
    return raw


def check(paths: list[Path], input_shape: list[int] | None = None, cpu: str | None = None) -> list[dict]:
    """Load, op coverage and parity of each model on emulated aarch64 (no timing)."""
    root = ensure_root()
    cfg = {"models": [{"path": str(p)} for p in paths], "batch": 1, "input_shape": input_shape,
           "providers": ["CPUExecutionProvider"], "memory": False}
    return [_check(root, cfg, i, cpu) for i in range(len(paths))]


def _check(root: Path, cfg: dict, index: int, cpu: str | None) -> dict:
    path = cfg["models"][index]["path"]
    out = _call(root, ["--outputs", str(index)], cfg, cpu)
    row = {"path": path, "loads": "error" not in out}
    if not row["loads"]:
        row["error"] = out["error"]
        row["ops_unsupported"] = sorted({f"{a or c}" + (f"({b or d})" if int(b or d) >= 0 else "")
                                         for a, b, c, d in MISSING_OP.findall(out["error"])})
        return row
    import numpy as np

    here = bench_runner.model_outputs(cfg, index)
    diff, scale = 0.0, 1.0
    for a, b in zip(out["outputs"], here, strict=True):
        a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
        diff, scale = max(diff, float(np.abs(a - b).max())), max(scale, float(np.abs(b).max()))
    return row | {"ops_unsupported": [], "parity_max_abs": diff, "parity_max_rel": diff / scale,
                  "parity_ok": diff / scale <= TOLERANCE, "device": out.get("device", {})}


def check_target(path: Path, target_name: str, input_shape: list[int] | None = None) -> dict:
    """`compress export --check-target`: the model loads on the target's (emulated) onnxruntime,
    every op is there, and its outputs match this host's; else a CompressError naming what failed."""
    target = load_target(target_name)
    if target.arch and arch(target.arch) != arch("aarch64"):
        raise CompressError(f"--check-target emulates arm64 devices; {target.name} is {target.arch}")
    row = check([path], input_shape, target.cpu)[0]
    where = f"on {target.name} (emulated aarch64, onnxruntime {root_facts().get('onnxruntime', '?')})"
    if not row["loads"]:
        raise CompressError(f"{where} the model does not load: {row['error']}")
    if not row["parity_ok"]:
        raise CompressError(f"{where} the outputs differ from this host's by {row['parity_max_rel']:.2e} (relative), "
                            f"over {TOLERANCE}")
    return row | {"target": target.name, "onnxruntime": root_facts().get("onnxruntime")}


@contextmanager
def ssh_server(port: int, authorized_key: Path) -> Iterator[Path]:
    """An OpenSSH server inside the arm64 root, on 127.0.0.1:`port`, for `bench --host` to run its
    whole path against (scp, the device checks, the runner, memory children). Yields a known_hosts
    file for it.

    This needs what a chroot of foreign binaries needs: root, the kernel's binfmt_misc with qemu
    registered for aarch64 (mounted and registered here if missing: a machine-wide change), and
    /dev and /proc bound into the root (undone on exit)."""
    import signal

    if os.geteuid() != 0:
        raise CompressError("an sshd inside the arm64 root needs root (chroot, bind mounts)")
    root = ensure_root()
    _binfmt()
    if not (root / "usr/sbin/sshd").exists():
        raise CompressError(f"{root} has no sshd (built before openssh-server was included); delete it to rebuild")
    for rel, text in (("etc/passwd", "root:x:0:0:root:/root:/bin/sh\nsshd:x:100:65534::/run/sshd:/usr/sbin/nologin\n"
                                     "nobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin\n"),
                      ("etc/group", "root:x:0:\nnogroup:x:65534:\n"),
                      ("etc/shadow", "root:*:19000:0:99999:7:::\nsshd:*:19000:0:99999:7:::\n")):
        (root / rel).write_text(text)
    for d in ("run/sshd", "root/.ssh", "dev", "proc"):
        (root / d).mkdir(parents=True, exist_ok=True)
    os.chmod(root / "root/.ssh", 0o700)
    shutil.copyfile(authorized_key, root / "root/.ssh/authorized_keys")
    key = root / "etc/ssh/ssh_host_ed25519_key"
    if not key.exists():
        _step(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)], "ssh-keygen")
    (root / "etc/ssh/sshd_compress_config").write_text(
        f"Port {port}\nListenAddress 127.0.0.1\nHostKey /etc/ssh/ssh_host_ed25519_key\n"
        "PermitRootLogin prohibit-password\nPasswordAuthentication no\nUsePAM no\nStrictModes no\n"
        "PidFile /run/sshd.pid\nSubsystem sftp /usr/lib/openssh/sftp-server\n")
    mounts = []
    try:
        for d, how in (("dev", ["--bind", "/dev"]), ("proc", ["-t", "proc", "proc"])):
            if subprocess.run(["mountpoint", "-q", str(root / d)]).returncode != 0:
                _step(["mount", *how, str(root / d)], f"mounting /{d} in the root")
                mounts.append(root / d)
        server = subprocess.Popen(["chroot", str(root), "/usr/sbin/sshd", "-D", "-e", "-f",
                                   "/etc/ssh/sshd_compress_config"], stdout=subprocess.DEVNULL,
                                  stderr=subprocess.PIPE, text=True)
        known = root.parent / f"known_hosts-{port}"
        deadline = time.monotonic() + 120  # sshd starts in seconds under qemu
        while time.monotonic() < deadline and server.poll() is None:
            scan = subprocess.run(["ssh-keyscan", "-p", str(port), "127.0.0.1"], capture_output=True, text=True)
            if scan.stdout.strip():
                known.write_text(scan.stdout)
                break
            time.sleep(1)
        else:
            raise CompressError(f"the arm64 sshd did not start: {(server.stderr.read() or '').strip()[-200:]}")
        try:
            yield known
        finally:
            server.send_signal(signal.SIGTERM)
            server.wait(timeout=30)
    finally:
        for m in reversed(mounts):
            subprocess.run(["umount", "-l", str(m)])


def _binfmt() -> None:
    """qemu registered with the kernel for aarch64 binaries (binfmt_misc), so that a chroot runs them:
    qemu-user-static's systemd binfmt.d line written to the kernel's register (what systemd-binfmt
    does at boot; no binfmt-support needed, which Debian only recommends), else update-binfmts."""
    entry = Path("/proc/sys/fs/binfmt_misc/qemu-aarch64")
    if entry.exists():
        return
    register = Path("/proc/sys/fs/binfmt_misc/register")
    if not register.exists():
        subprocess.run(["mount", "-t", "binfmt_misc", "binfmt_misc", "/proc/sys/fs/binfmt_misc"], capture_output=True)
    conf = Path("/usr/lib/binfmt.d/qemu-aarch64.conf")
    lines = [ln for ln in conf.read_text().splitlines() if ln.startswith(":")] if conf.exists() else []
    if lines:
        try:
            register.write_text(lines[0])
        except OSError:
            pass  # refused (no privilege): said below
    elif shutil.which("update-binfmts"):
        subprocess.run(["update-binfmts", "--enable", "qemu-aarch64"], capture_output=True)
    if not entry.exists():
        raise CompressError("cannot register qemu-aarch64 with the kernel's binfmt_misc here "
                            "(no /usr/lib/binfmt.d/qemu-aarch64.conf nor update-binfmts, or a container without "
                            "that privilege)")


def _run(root: Path, cfg: dict, cpu: str | None) -> dict:
    out = _call(root, [], cfg, cpu)
    if "error" in out:
        raise CompressError(f"on emulated aarch64: {out['error']}")
    return out


def _call(root: Path, args: list[str], cfg: dict, cpu: str | None) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        cfg_file = Path(tmp) / "cfg.json"
        with fileio.writing(cfg_file):
            cfg_file.write_text(json.dumps(cfg))
        runner = Path(bench_runner.__file__)
        done = subprocess.run([*_python(root), str(runner), *args, str(cfg_file)], capture_output=True, text=True,
                              env=_env(root, cpu))
    result = bench_runner._parse(done.stdout)
    if result is None:
        last = (done.stderr.strip().splitlines() or [f"exit {done.returncode}"])[-1]
        return {"error": f"the runner died under qemu ({last})"}
    return result
