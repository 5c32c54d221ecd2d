"""The container image, built from the Dockerfile as it is and run as the Helm chart runs it.

podman builds the image (tests/container.py: a Debian base image made once by mmdebstrap, the
layer cache reused between runs) and runs it with a read-only root filesystem, no
capabilities, no privilege gain, as the image's own non-root user, against the sandbox
organization of this test process. The container shares the host's network namespace
(`--network=host`): the sandbox listens on 127.0.0.1 of the host, and on the default bridge
network it would have to listen on the bridge's address instead (and podman leaves the bridge
behind); the exporter in the container listens on a free 127.0.0.1 port of the host.

A machine that cannot run containers fails these tests with what is missing; they are not
skipped.
"""

from __future__ import annotations

import os
import socket
import time
import pytest

from exporter.sandbox import SANDBOX_ENV, Sandbox, Scenario
from exporter.sandbox.records import make_record

from .conftest import http_get, parse_metrics, report_measurement, sample
from .container import IMAGE, Build, ContainerError, Podman, missing_prerequisites
from .scenario_expect import collected, expected_error
from .test_sandbox_posture import check_account

pytestmark = pytest.mark.image

UID = 65532
ACCOUNT = "210000000003"
STATE_DIR = "/var/lib/aws-root-exporter"
PROBLEMS = ("Traceback", "PermissionError", "Permission denied", "Read-only file system", "cannot write the state file")
HARDENING = ["--read-only", "--read-only-tmpfs=false", "--cap-drop=ALL", "--security-opt=no-new-privileges"]


@pytest.fixture(scope="session")
def podman(tmp_path_factory: pytest.TempPathFactory) -> Podman:
    missing = missing_prerequisites()
    if missing:
        pytest.fail("this machine cannot build and run the image; missing:\n- " + "\n- ".join(missing), pytrace=False)
    podman = Podman(tmp_path_factory.mktemp("podman"))
    try:
        podman.check_works()
        podman.remove_leftovers()
    except ContainerError as exc:
        pytest.fail(str(exc), pytrace=False)
    return podman


@pytest.fixture(scope="session")
def image(podman: Podman) -> Build:
    """One build per session; a rebuild with nothing changed takes about a second."""
    try:
        build = podman.build()
    except ContainerError as exc:
        pytest.fail(str(exc), pytrace=False)
    base = "reused" if build.base_seconds is None else f"made in {build.base_seconds:.1f} s"
    report_measurement(f"image: base image {base}, Dockerfile built in {build.build_seconds:.1f} s")
    return build


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Exporter:
    """One container of the image, serving on 127.0.0.1:`port` of the host."""

    def __init__(self, podman: Podman, sandbox: Sandbox, volume: str) -> None:
        self.podman = podman
        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        env = {
            **SANDBOX_ENV,
            "AWS_ROOT_EXPORTER_ENDPOINT_URL": sandbox.endpoint_url,
            "AWS_ROOT_EXPORTER_LISTEN_ADDRESS": f"127.0.0.1:{self.port}",
            "AWS_ROOT_EXPORTER_EVENTBRIDGE_QUEUE_URL": sandbox.events_queue_url,
            "AWS_ROOT_EXPORTER_SQS_WAIT_SECONDS": "1",
            "AWS_ROOT_EXPORTER_STATE_FILE": f"{STATE_DIR}/state.json",
            "AWS_ROOT_EXPORTER_MAX_ATTEMPTS": "2",
            "AWS_ROOT_EXPORTER_LOG_FORMAT": "text",
        }
        args = ["--network=host", *HARDENING, "--volume", f"{volume}:{STATE_DIR}"]
        for key, value in env.items():
            args += ["--env", f"{key}={value}"]
        started = time.monotonic()
        self.id = podman.start(*args, IMAGE)
        self.ready_seconds = self._wait_ready(started)

    def _wait_ready(self, started: float) -> float:
        deadline = started + 120
        while True:
            try:
                status, _, _ = http_get(self.url + "/-/ready")
            except OSError:
                status = None
            if status == 200:
                return time.monotonic() - started
            state = self.podman.state(self.id)
            assert state["Running"], f"the container exited (status {state['ExitCode']}):\n{self.podman.logs(self.id)}"
            assert time.monotonic() < deadline, f"not ready after 120 s (last /-/ready: {status}):\n{self.podman.logs(self.id)}"
            time.sleep(0.2)

    def metrics(self) -> dict:
        status, _, body = http_get(self.url + "/metrics")
        assert status == 200
        return parse_metrics(body.decode())

    def exec(self, *command: str) -> tuple[int, str]:
        proc = self.podman.run("exec", self.id, *command, check=False)
        return proc.returncode, proc.stdout + proc.stderr

    def stop(self) -> float:
        """SIGTERM (the image's stop signal) with 10 s before podman would SIGKILL; the seconds it took."""
        started = time.monotonic()
        self.podman.run("stop", "--time", "10", self.id)
        return time.monotonic() - started

    def logs(self) -> str:
        return self.podman.logs(self.id)


def logins(families: dict) -> float | None:
    return sample(families, "aws_root_console_logins_total", account_id=ACCOUNT, outcome="success", mfa="true", approved="false")


def _assert_clean_log(log: str) -> None:
    trouble = [p for p in PROBLEMS if p in log]
    assert not trouble, f"{trouble} in the container's log:\n{log}"


def test_image_metadata(podman: Podman, image: Build) -> None:
    """What the chart and Docker rely on survives the build (the OCI format would drop HEALTHCHECK)."""
    meta = podman.image(IMAGE)
    assert meta["Config"]["User"] == f"{UID}:{UID}"
    assert meta["Config"]["Entrypoint"] == ["aws-root-exporter"] and meta["Config"]["Cmd"] == ["serve"]
    assert meta["Healthcheck"]["Test"] == ["CMD", "aws-root-exporter", "healthcheck"]
    assert "9784/tcp" in meta["Config"]["ExposedPorts"]
    report_measurement(f"image: {meta['Size'] / 1e6:.0f} MB (Debian bookworm base from mmdebstrap)")


def test_container_serves_counts_keeps_state_and_stops_cleanly(
    podman: Podman, image: Build, sandbox: Sandbox, default_scenario: Scenario
) -> None:
    # A new named volume, as README's `docker run` uses. podman gives it the container's user
    # (Docker the owner of the image's mount point, hence that directory in the Dockerfile);
    # the Helm chart's emptyDir gets its group from fsGroup instead.
    volume = f"aws-root-exporter-test-state-{os.getpid()}"
    # The queue must be empty when the container stops (the login then lives only in the
    # state file): the sandbox makes no canary records, which arrive seconds after each call.
    sandbox.reset(default_scenario.model_copy(update={"monitoring": default_scenario.monitoring.model_copy(update={"canaries": False})}))
    state_dir = podman.create_volume(volume)
    first = second = None
    try:
        first = Exporter(podman, sandbox, volume)
        families = first.metrics()
        healthy = [a for a in default_scenario.all_accounts if collected(a) and expected_error(a) is None]
        assert healthy
        for account in healthy:
            check_account(families, account)
        assert logins(families) is None, "no root login in this account before the one injected below (no series yet)"

        # The image's HEALTHCHECK, as Docker or podman's timer would run it.
        proc = podman.run("healthcheck", "run", first.id, check=False)
        assert proc.returncode == 0, f"healthcheck: {proc.stdout}{proc.stderr}"

        # The hardening took effect on the exporter itself (pid 1 of the container).
        assert first.exec("id", "-u") == (0, f"{UID}\n")
        code, status = first.exec("cat", "/proc/1/status")
        assert code == 0
        fields = dict(line.split(":\t", 1) for line in status.splitlines() if ":\t" in line)
        assert fields["Uid"].split()[0] == str(UID)
        assert fields["CapEff"].strip() == "0000000000000000"
        assert fields["NoNewPrivs"].strip() == "1"
        for path in ("/probe", "/tmp/probe"):
            code, output = first.exec("touch", path)
            assert code != 0 and "Read-only file system" in output, (path, output)

        # A root console login arriving on the EventBridge queue only: after the restart below,
        # only the state file can still know it (the queue is drained, LookupEvents never had it).
        sandbox.inject(make_record("console-login", ACCOUNT), lookup=False, s3=False)
        deadline = time.monotonic() + 30
        while logins(families := first.metrics()) != 1.0:
            assert time.monotonic() < deadline, f"the injected login was not counted: {logins(families)}\n{first.logs()}"
            time.sleep(0.2)

        stop_seconds = first.stop()
        state = podman.state(first.id)
        log = first.logs()
        assert state["ExitCode"] == 0, f"exit status {state['ExitCode']} after SIGTERM (137: killed after 10 s):\n{log}"
        assert "exporter.app: stopped" in log
        _assert_clean_log(log)
        queue = sandbox.client("sqs").get_queue_attributes(
            QueueUrl=sandbox.events_queue_url, AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"]
        )["Attributes"]
        assert queue == {"ApproximateNumberOfMessages": "0", "ApproximateNumberOfMessagesNotVisible": "0"}
        saved = state_dir / "state.json"
        assert saved.is_file() and saved.stat().st_uid == UID

        second = Exporter(podman, sandbox, volume)
        assert logins(second.metrics()) == 1.0, "the login counted before the restart is kept by the state file"
        second_stop = second.stop()
        assert podman.state(second.id)["ExitCode"] == 0
        _assert_clean_log(second.logs())
    finally:
        for container in (first, second):
            if container is not None:
                podman.remove(container.id)
        podman.remove_volume(volume)
    report_measurement(
        f"image: container start to ready {first.ready_seconds:.1f} s ({second.ready_seconds:.1f} s with the state file), "
        f"stop on SIGTERM {stop_seconds:.1f} s / {second_stop:.1f} s"
    )


def test_healthcheck_fails_when_nothing_answers(podman: Podman, image: Build) -> None:
    """Guards the guard: the HEALTHCHECK command really checks (nothing listens on the port)."""
    port = _free_port()
    proc = podman.run(
        "run", "--rm", "--network=host", *HARDENING, "--env", f"AWS_ROOT_EXPORTER_LISTEN_ADDRESS=127.0.0.1:{port}", IMAGE, "healthcheck",
        check=False,
    )
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert f"not healthy: 127.0.0.1:{port}: ConnectionRefusedError" in proc.stderr


def test_a_machine_without_podman_is_told_what_is_missing(monkeypatch: pytest.MonkeyPatch) -> None:
    """The failure message of a machine that cannot run the image names each missing piece and the fix."""
    from . import container

    monkeypatch.setattr(container.os, "geteuid", lambda: 1000)
    monkeypatch.setattr(container.shutil, "which", lambda name: None if name in ("podman", "mmdebstrap") else f"/usr/bin/{name}")
    missing = container.missing_prerequisites()
    assert [m.split(":")[0] for m in missing] == ["root", "the podman command", "the mmdebstrap command"]
    assert all("install-system-packages.sh" in m for m in missing[1:])
