"""The exporter works on a read-only root filesystem as a non-root user, as the Deployment runs it.

`aws-root-exporter sandbox` runs as a real process as uid/gid 65534 (via `setpriv` when the
suite runs as root, since root ignores file permissions), with its working directory and HOME
in read-only directories owned by root and only TMPDIR writable (the state file lives there).
It must serve the posture of the sandbox accounts, write its state file, write nothing
anywhere else, report no permission error, and stop with status 0 on SIGTERM.
"""

from __future__ import annotations

import os
import queue
import re
import shutil
import signal
import site
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from exporter.sandbox import Scenario

from .conftest import ROOT, http_get, parse_metrics, report_measurement, sample
from .test_sandbox_posture import check_account
from .scenario_expect import collected as is_collected, expected_error

NOBODY = 65534
METRICS_LINE = re.compile(r"Exporter metrics:\s+(http://127\.0\.0\.1:\d+)/metrics")
WORLD_WRITABLE = ("/tmp", "/var/tmp", "/dev/shm")
PROBLEMS = ("PermissionError", "Permission denied", "Read-only", "read-only file system", "Traceback", "cannot write the state file")


def _listing(top: Path) -> dict[str, tuple[int, int, int]]:
    """Every path under `top` with (mode, size, mtime_ns), to compare before and after."""
    found = {}
    for dirpath, dirnames, filenames in os.walk(top):
        for name in dirnames + filenames:
            path = Path(dirpath, name)
            st = path.lstat()
            found[str(path.relative_to(top))] = (st.st_mode, st.st_size, st.st_mtime_ns)
    return found


def _owned_by_nobody_since(marker: float) -> list[str]:
    """Files and directories uid 65534 created or changed in the world-writable places, except
    /tmp/ro-exporter-* (ours is compared by listing; another run's is not ours to judge)."""
    found = []
    for top in WORLD_WRITABLE:
        for dirpath, dirnames, filenames in os.walk(top, onerror=lambda _: None):
            if Path(dirpath) == Path("/tmp"):
                dirnames[:] = [d for d in dirnames if not d.startswith("ro-exporter-")]
            for name in dirnames + filenames:
                path = Path(dirpath, name)
                try:
                    st = path.lstat()
                except OSError:
                    continue
                if st.st_uid == NOBODY and st.st_mtime >= marker:
                    found.append(str(path))
    return found


@pytest.fixture
def readonly_layout() -> Iterator[dict[str, Path]]:
    """/tmp/ro-exporter-*/{cwd,home} read-only and root-owned; tmp writable by uid 65534 only."""
    base = Path(tempfile.mkdtemp(prefix="ro-exporter-", dir="/tmp"))
    layout = {"base": base, "cwd": base / "cwd", "home": base / "home", "tmp": base / "tmp"}
    for key in ("cwd", "home", "tmp"):
        layout[key].mkdir()
    as_root = os.geteuid() == 0
    if as_root:
        os.chown(layout["tmp"], NOBODY, NOBODY)
    layout["tmp"].chmod(0o700)
    for key in ("cwd", "home", "base"):
        layout[key].chmod(0o555)
    try:
        yield layout
    finally:
        for key in ("base", "cwd", "home", "tmp"):
            layout[key].chmod(0o755)
        shutil.rmtree(base)


_PROBE = (
    "import subprocess, sys, exporter.cli, exporter.sandbox.server, moto.server; "
    # The exporter starts the sandbox as `sys.executable -m exporter.sandbox`: that must work too.
    "subprocess.run([sys.executable, '-c', 'import exporter.sandbox.server'], check=True); "
    "print('%d.%d' % sys.version_info[:2])"
)


def _interpreter(prefix: list[str], cwd: Path, env: dict[str, str]) -> tuple[str, str]:
    """The first interpreter (this one, else the same Python version on PATH) the user can run."""
    version = "%d.%d" % sys.version_info[:2]
    candidates = [sys.executable]
    for name in (f"/usr/local/bin/python{version}", f"/usr/bin/python{version}", shutil.which(f"python{version}", path=env["PATH"])):
        if name and name not in candidates and os.path.exists(name):
            candidates.append(name)
    failures = []
    for candidate in candidates:
        probe = subprocess.run([*prefix, candidate, "-c", _PROBE], cwd=cwd, env=env, capture_output=True, text=True, timeout=120)
        if probe.returncode == 0 and probe.stdout.strip() == version:
            note = "" if candidate == sys.executable else (
                f"{sys.executable} is not executable by uid {NOBODY} (a parent directory without o+x); "
                f"ran {candidate} (Python {version}) with {os.pathsep.join(site.getsitepackages())} on PYTHONPATH"
            )
            return candidate, note
        failures.append(f"{candidate}: exit {probe.returncode}, {probe.stdout.strip()} {probe.stderr.strip()[-800:]}")
    pytest.fail(
        f"uid {NOBODY} cannot run the exporter from {ROOT} with any Python {version} "
        "(a parent directory without o+x or files without o+r?):\n" + "\n".join(failures)
    )


def _reader(stream, lines: queue.Queue[str], sink: list[str]) -> None:
    for line in stream:
        sink.append(line)
        lines.put(line)
    lines.put("")


def _children(pid: int) -> list[int]:
    try:
        return [int(p) for p in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except OSError:
        return []


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def test_exporter_runs_on_a_read_only_filesystem_as_nobody(readonly_layout: dict[str, Path], default_scenario: Scenario) -> None:
    as_root = os.geteuid() == 0
    prefix: list[str] = []
    if as_root:
        setpriv = shutil.which("setpriv")
        assert setpriv, "setpriv (util-linux) is needed to run the exporter as an unprivileged user"
        prefix = [setpriv, f"--reuid={NOBODY}", f"--regid={NOBODY}", "--clear-groups"]
    cwd, home, tmp = readonly_layout["cwd"], readonly_layout["home"], readonly_layout["tmp"]
    state_file = tmp / "state.json"
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(home),
        "TMPDIR": str(tmp),
        "PYTHONDONTWRITEBYTECODE": "1",
        "PYTHONUNBUFFERED": "1",
        "AWS_ROOT_EXPORTER_STATE_FILE": str(state_file),
        "AWS_ROOT_EXPORTER_STATE_SAVE_INTERVAL_SECONDS": "1",
        "AWS_ROOT_EXPORTER_SQS_WAIT_SECONDS": "1",
    }
    # The code and its dependencies must be readable by the unprivileged user (every parent
    # directory o+x). PYTHONPATH names them, so that an interpreter of the same version can stand
    # in when the venv's own interpreter is not reachable (a venv made from /root/.pyenv, say).
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), *site.getsitepackages()])
    python, note = _interpreter(prefix, cwd, env)
    watched = {"cwd": cwd, "home": home}
    before = {name: _listing(path) for name, path in watched.items()}
    repo_before = _listing(ROOT / "exporter")
    marker = time.time() - 1
    stdout_lines: list[str] = []
    stderr_lines: list[str] = []
    lines: queue.Queue[str] = queue.Queue()
    started = time.monotonic()
    process = subprocess.Popen(
        [*prefix, python, "-m", "exporter", "sandbox", "--web.listen-address", "127.0.0.1:0"],
        cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    threading.Thread(target=_reader, args=(process.stdout, lines, stdout_lines), daemon=True).start()
    threading.Thread(target=_reader, args=(process.stderr, queue.Queue(), stderr_lines), daemon=True).start()
    children: list[int] = []
    try:
        url = None
        deadline = time.monotonic() + 120
        while url is None and time.monotonic() < deadline:
            try:
                line = lines.get(timeout=max(0.1, deadline - time.monotonic()))
            except queue.Empty:
                break
            if line == "":
                break
            match = METRICS_LINE.search(line)
            if match:
                url = match.group(1)
        assert url, f"no metrics URL printed\nstdout:\n{''.join(stdout_lines)}\nstderr:\n{''.join(stderr_lines)}"
        children = _children(process.pid)
        assert children, "the sandbox runs in a child process"

        collected = [a for a in default_scenario.all_accounts if is_collected(a) and expected_error(a) is None]
        families: dict = {}
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            status, _, body = http_get(url + "/metrics")
            assert status == 200
            families = parse_metrics(body.decode())
            if all(sample(families, "aws_root_exporter_collector_success", account_id=a.id, collector="posture") == 1.0 for a in collected) and state_file.exists():
                break
            assert process.poll() is None, f"the exporter exited\nstderr:\n{''.join(stderr_lines)}"
            trouble = [n for n in PROBLEMS if n.lower() in "".join(stderr_lines).lower()]
            assert not trouble, f"{trouble} in stderr:\n{''.join(stderr_lines)}"
            time.sleep(0.5)
        ready = time.monotonic() - started
        for account in collected:
            check_account(families, account)
        assert state_file.is_file(), f"no state file in {tmp}: {os.listdir(tmp)}"
        if as_root:
            assert state_file.stat().st_uid == NOBODY
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
        try:
            code = process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
            raise
    stopped = time.monotonic()
    while any(_alive(c) for c in children) and time.monotonic() - stopped < 10:
        time.sleep(0.1)

    stderr = "".join(stderr_lines)
    assert code == 0, f"exit status {code}\nstderr:\n{stderr}"
    assert not [c for c in children if _alive(c)], "the sandbox child outlived the exporter"
    for needle in PROBLEMS:
        assert needle.lower() not in stderr.lower(), f"{needle!r} in stderr:\n{stderr}"
    # Nothing written outside TMPDIR: the read-only directories, the code, anywhere else.
    assert {name: _listing(path) for name, path in watched.items()} == before
    assert _listing(ROOT / "exporter") == repo_before, "nothing written next to the code (bytecode, caches)"
    written = sorted(os.listdir(tmp))
    # The state file and, beside it, the account roster (accounts that leave the organization).
    assert written == ["state.json", "state.json.accounts.json"], f"only the state files in TMPDIR (temporary files removed): {written}"
    if as_root:
        assert _owned_by_nobody_since(marker) == []
    if note:
        report_measurement(f"read-only filesystem test: {note}")
    report_measurement(
        f"read-only filesystem, uid {os.geteuid() if not as_root else NOBODY}: posture of {len(collected)} sandbox accounts "
        f"in /metrics {ready:.1f} s after start; TMPDIR holds {written}"
    )
