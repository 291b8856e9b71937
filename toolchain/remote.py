"""Measure on the real device over SSH: copy the models and the standalone runner, run, bring back JSON.

Uses the system `ssh` and `scp` (so ~/.ssh/config, agents, ProxyJump all work as the user
expects), always through argument lists, never a local shell. The one string a remote shell sees
is built from `shlex.quote`d arguments. Host keys are checked (StrictHostKeyChecking=yes) unless
the user says otherwise with an ssh option; BatchMode=yes and a ConnectTimeout make a wrong
address, a refused key or an unknown host fail at once with a clear message instead of a prompt.

Steps: (1) probe: the device's python has numpy + onnxruntime, and makes a fresh temp dir;
(2) scp the runner, its config and the models (renamed m0.onnx, m1.onnx, ...) into it;
(3) run the runner there; (4) remove the temp dir, whatever happened.
"""

from __future__ import annotations

import base64
import json
import logging
import os
import re
import shlex
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

from . import bench_runner, fileio
from .errors import CompressError

logger = logging.getLogger(__name__)

CONNECT_TIMEOUT_S = 10
SERVER_ALIVE_S = 15  # keep-alive probe interval during a long run; 4 misses drop the connection
PROBE_TIMEOUT_S = 120  # a probe or a clean-up that takes longer than this is hung
SAFE_REMOTE_PATH = re.compile(r"^[A-Za-z0-9._/+@-]+$")  # scp's remote side may go through a shell
HOST_RE = re.compile(r"^(?:[A-Za-z0-9._+-]+@)?(?:[A-Za-z0-9._-]+|\[[0-9A-Fa-f:.%A-Za-z]+\])$")
OPTION_RE = re.compile(r"^[A-Za-z][A-Za-z0-9]*=.*$")
INSTALL_HINT = "pip install onnxruntime numpy"

# what the device's python runs first: can it import what the runner needs? and a fresh temp dir
PROBE = r"""
import json, os, sys
out = {"python": sys.version.split()[0], "missing": []}
for name in ("numpy", "onnxruntime"):
    try:
        __import__(name)
    except Exception as e:
        out["missing"].append("%s (%s)" % (name, str(e).splitlines()[0] if str(e) else type(e).__name__))
if sys.version_info < (3, 6):
    out["missing"].append("python >= 3.6 (this is %s)" % out["python"])
if not out["missing"]:
    import tempfile
    try:
        out["tmp"] = tempfile.mkdtemp(prefix="compress-bench-", dir=os.path.expanduser(sys.argv[1]))
    except OSError as e:
        out["error"] = "cannot make a temp dir under %s: %s" % (sys.argv[1], e)
print(MARK + json.dumps(out))
""".replace("MARK", repr(bench_runner.MARK))
# one line of base64 inside: no newline or quote reaches the remote shell, whatever shell it is
PROBE_ONE_LINE = f"import base64; exec(base64.b64decode('{base64.b64encode(PROBE.encode()).decode()}'))"


@dataclass(frozen=True)
class SSHDefaults:
    """A target profile's [ssh] table: what `--host` falls back to."""

    user: str | None = None
    port: int = 22
    python: str = "python3"
    workdir: str = "/tmp"


@dataclass(frozen=True)
class Remote:
    """Where to measure: `user@host` and how to reach it. Unset fields come from the target's [ssh]."""

    host: str
    port: int | None = None
    key: Path | None = None
    options: tuple[str, ...] = ()  # extra `ssh -o KEY=VALUE`, e.g. ("ProxyJump=bastion",)
    known_hosts: Path | None = None
    python: str | None = None
    workdir: str | None = None
    connect_timeout: int = CONNECT_TIMEOUT_S

    @classmethod
    def from_options(cls, host: str | None, *, port=None, key=None, options=(), known_hosts=None,
                     python=None) -> Remote | None:
        """The CLI's SSH options as a Remote (None without --host); SSH options without a host are refused."""
        given = {"--port": port, "--key": key, "--ssh-option": options, "--known-hosts": known_hosts,
                 "--remote-python": python}
        if not host:
            if any(given.values()):
                raise CompressError(f"{', '.join(k for k, v in given.items() if v)} only apply with --host user@host")
            return None
        return cls(host=host, port=port, key=Path(key) if key else None, options=tuple(options),
                   known_hosts=Path(known_hosts) if known_hosts else None, python=python)

    def validate(self) -> None:
        if not HOST_RE.match(self.host or ""):
            raise CompressError(f"--host {self.host!r} is not user@host or host")
        if self.port is not None and not 0 < self.port < 65536:
            raise CompressError(f"--port must be between 1 and 65535, not {self.port}")
        if self.key is not None and not Path(self.key).is_file():
            raise CompressError(f"--key {self.key}: no such file")
        if self.known_hosts is not None and not Path(self.known_hosts).is_file():
            raise CompressError(f"--known-hosts {self.known_hosts}: no such file")
        for opt in self.options:
            if not OPTION_RE.match(opt):
                raise CompressError(f"--ssh-option {opt!r} is not KEY=VALUE (e.g. ProxyJump=bastion)")
        if self.connect_timeout < 1:
            raise CompressError(f"connect timeout must be >= 1 s, not {self.connect_timeout}")


def _q(arg: str) -> str:
    """shlex.quote, except that a leading ~/ still expands to the remote home."""
    if arg.startswith("~/"):
        return "~/" + shlex.quote(arg[2:])
    return shlex.quote(arg)


class _Connection:
    """One device: ssh/scp argument lists, error messages that say what to do."""

    def __init__(self, remote: Remote, defaults: SSHDefaults):
        remote.validate()
        self.remote = remote
        host = remote.host
        if "@" not in host and defaults.user:
            host = f"{defaults.user}@{host}"
        self.dest = host
        self.hostname = host.rpartition("@")[2].strip("[]")
        self.port = remote.port or defaults.port
        self.python = remote.python or defaults.python
        self.workdir = remote.workdir or defaults.workdir
        user_keys = {o.split("=", 1)[0].lower() for o in remote.options}
        opts: list[str] = []
        for o in remote.options:  # the user's first: for ssh, the first value given wins
            opts += ["-o", o]
        defaults_o = {"BatchMode": "yes", "ConnectTimeout": str(remote.connect_timeout),
                      "StrictHostKeyChecking": "yes", "ServerAliveInterval": str(SERVER_ALIVE_S),
                      "ServerAliveCountMax": "4"}
        if remote.known_hosts is not None:
            defaults_o["UserKnownHostsFile"] = str(Path(remote.known_hosts).resolve())
        if remote.key is not None:
            defaults_o["IdentitiesOnly"] = "yes"
        for k, v in defaults_o.items():
            if k.lower() not in user_keys:
                opts += ["-o", f"{k}={v}"]
        if remote.key is not None:
            opts += ["-i", str(Path(remote.key).resolve())]
        self.opts = opts

    @property
    def where(self) -> str:
        return f"{self.dest} (port {self.port})"

    def ssh_argv(self, remote_argv: list[str]) -> list[str]:
        return ["ssh", *self.opts, "-p", str(self.port), "--", self.dest, " ".join(_q(a) for a in remote_argv)]

    def scp_argv(self, files: list[Path], remote_dir: str) -> list[str]:
        host = self.dest
        at, _, name = host.rpartition("@")
        if ":" in name and not name.startswith("["):
            host = (f"{at}@" if at else "") + f"[{name}]"
        return ["scp", "-q", *self.opts, "-P", str(self.port), "--", *[str(f) for f in files],
                f"{host}:{remote_dir}/"]

    def _exec(self, argv: list[str], timeout: float | None, what: str) -> subprocess.CompletedProcess:
        logger.debug("%s: %s", what, argv)
        try:
            return subprocess.run(argv, stdin=subprocess.DEVNULL, capture_output=True, text=True,
                                  timeout=timeout, check=False)
        except FileNotFoundError as e:
            raise CompressError(f"`{argv[0]}` is not installed here: install the OpenSSH client "
                                f"(apt-get install openssh-client)") from e
        except subprocess.TimeoutExpired as e:
            raise CompressError(f"{self.where}: {what} did not finish in {timeout:.0f} s") from e

    def ssh(self, remote_argv: list[str], what: str, timeout: float | None = PROBE_TIMEOUT_S):
        proc = self._exec(self.ssh_argv(remote_argv), timeout, what)
        if proc.returncode == 255:
            raise CompressError(self.explain(proc.stderr))
        return proc

    def scp(self, files: list[Path], remote_dir: str) -> None:
        proc = self._exec(self.scp_argv(files, remote_dir), None, "copy")
        if proc.returncode != 0:
            if proc.returncode == 255 or _connect_failure(proc.stderr):
                raise CompressError(self.explain(proc.stderr))
            raise CompressError(f"{self.where}: copying the models failed: {_last_line(proc.stderr)}")

    def explain(self, stderr: str) -> str:
        """The one line a user needs when ssh itself failed (exit 255)."""
        text = stderr or ""
        low = text.lower()
        if "remote host identification has changed" in low:
            return (f"{self.where}: the device's host key CHANGED; if you re-installed it, remove the old key "
                    f"with `ssh-keygen -R {self.hostname}`")
        if "host key verification failed" in low or ("no " in low and "host key is known" in low):
            kh = (" or pass --known-hosts FILE" if self.remote.known_hosts is None
                  else f" (checked against {self.remote.known_hosts})")
            return (f"{self.where}: the device's host key is not in known_hosts (or it changed): connect once "
                    f"with `ssh -p {self.port} {self.dest}` to check and accept it{kh}")
        if "permission denied" in low or "too many authentication failures" in low:
            return (f"{self.where} refused the key ({_last_line(text)}): pass --key FILE, or install your "
                    f"public key on the device with `ssh-copy-id -p {self.port} {self.dest}`")
        if "could not resolve hostname" in low or "name or service not known" in low:
            return f"{self.where}: unknown host name ({_last_line(text)})"
        if any(s in low for s in ("connection refused", "timed out", "no route to host",
                                  "network is unreachable", "connection closed", "connection reset")):
            return (f"cannot reach {self.where} over SSH ({_last_line(text)}): check the address, the port "
                    f"(--port) and that sshd runs on the device")
        return f"ssh to {self.where} failed: {_last_line(text) or 'exit 255'}"


def _connect_failure(stderr: str) -> bool:
    low = (stderr or "").lower()
    return any(s in low for s in ("connection refused", "permission denied", "host key", "timed out",
                                  "could not resolve", "connection closed"))


def _last_line(text: str) -> str:
    lines = [line.strip() for line in (text or "").splitlines() if line.strip()]
    return lines[-1] if lines else ""


def _marked(stdout: str) -> dict | None:
    for line in reversed((stdout or "").splitlines()):
        if line.startswith(bench_runner.MARK):
            try:
                return json.loads(line[len(bench_runner.MARK):])
            except json.JSONDecodeError:
                return None
    return None


def _probe(conn: _Connection) -> dict:
    proc = conn.ssh([conn.python, "-c", PROBE_ONE_LINE, conn.workdir], "the python check")
    found = _marked(proc.stdout)
    if proc.returncode == 127 or (found is None and "not found" in proc.stderr.lower()):
        raise CompressError(f"{conn.where}: `{conn.python}` is not found on the device: install Python 3 "
                            f"there (sudo apt install python3) or pass --remote-python PATH")
    if found is None:
        raise CompressError(f"{conn.where}: `{conn.python}` did not run the check (exit {proc.returncode}): "
                            f"{_last_line(proc.stderr) or _last_line(proc.stdout)}")
    if found["missing"]:
        raise CompressError(f"{conn.where}: `{conn.python}` on the device lacks {'; '.join(found['missing'])}: "
                            f"on the device run `{conn.python} -m {INSTALL_HINT}` (Raspberry Pi OS: in a venv, "
                            f"`python3 -m venv ~/ort && ~/ort/bin/{INSTALL_HINT}`, then --remote-python "
                            f"'~/ort/bin/python'; Jetson: NVIDIA's onnxruntime-gpu wheel, see docs/bench.md)")
    if "error" in found:
        raise CompressError(f"{conn.where}: {found['error']}")
    if not SAFE_REMOTE_PATH.match(found["tmp"]):
        conn.ssh(["rm", "-rf", "--", found["tmp"]], "clean-up")
        raise CompressError(f"{conn.where}: the work dir {conn.workdir!r} has characters scp cannot pass "
                            f"safely; choose another (the target's [ssh] workdir)")
    return found


def run(remote: Remote, defaults: SSHDefaults, files: list[Path], config: dict) -> dict:
    """Measure `files` on the device with the runner; return the runner's result (device facts included)."""
    conn = _Connection(remote, defaults)
    probe = _probe(conn)
    tmp = probe["tmp"]
    logger.info("measuring on %s (python %s), temp dir %s", conn.where, probe["python"], tmp)
    try:
        with tempfile.TemporaryDirectory(prefix="compress-stage-") as stage_dir:
            stage = Path(stage_dir)
            staged = []
            with fileio.writing(stage):
                for i, f in enumerate(files):
                    link = stage / f"m{i}{Path(f).suffix or '.onnx'}"
                    os.symlink(Path(f).resolve(), link)  # scp follows a link given as an argument
                    staged.append(link)
                runner = stage / "bench_runner.py"
                shutil.copyfile(bench_runner.__file__, runner)
                remote_cfg = dict(config, models=[dict(m, path=f"{tmp}/{p.name}")
                                                  for m, p in zip(config["models"], staged, strict=True)])
                cfg_file = stage / "config.json"
                cfg_file.write_text(json.dumps(remote_cfg))
            conn.scp([runner, cfg_file, *staged], tmp)
        proc = conn.ssh([conn.python, f"{tmp}/bench_runner.py", f"{tmp}/config.json"], "the benchmark",
                        timeout=None)
        result = _marked(proc.stdout)
        if result is None:
            raise CompressError(f"{conn.where}: the runner failed (exit {proc.returncode}): "
                                f"{_last_line(proc.stderr) or 'no output'}")
        if "error" in result:
            raise CompressError(f"on {conn.dest}: {result['error']}")
    finally:
        try:
            done = conn.ssh(["rm", "-rf", "--", tmp], "clean-up")
            if done.returncode != 0:
                logger.warning("could not remove %s on %s: %s", tmp, conn.where, _last_line(done.stderr))
        except CompressError as e:
            logger.warning("could not remove %s on %s: %s", tmp, conn.where, e)
    for m, local in zip(result["models"], files, strict=True):
        m["remote_path"], m["path"] = m["path"], str(local)
    result["ssh"] = {"host": conn.dest, "port": conn.port, "python": conn.python}
    return result
