"""The project's image built and run with podman, as root, on a machine with no Docker engine
and no registry (docs/deployment.md, "Building the image without Docker").

- The base image is a Debian bookworm made by mmdebstrap from the Debian mirror, imported once
  under BASE_IMAGE and reused by every later run.
- The Dockerfile is built as it is, with that base image as its PYTHON_IMAGE build argument.
  podman keeps each layer, so a rebuild with no change in the build context is all cache hits.
  The builder stage is tagged too: otherwise it would be a dangling image, and removing the
  previous build's images would take the cache of the dependency wheels with it.
- podman runs with runc (crun refuses this machine's hybrid cgroups) and ulimits that root may
  set here, from a containers.conf of our own named by CONTAINERS_CONF.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BASE_IMAGE = "localhost/aws-root-exporter-build-base:bookworm"
BUILDER_IMAGE = "localhost/aws-root-exporter-build:test"
IMAGE = "localhost/aws-root-exporter:test"
# pip in the build reaches PyPI through this machine's TLS-re-signing proxy: the machine's CA
# bundle is mounted into each build step (it is not stored in any layer).
CA_BUNDLE = Path("/etc/ssl/certs/ca-certificates.crt")
# Containers this helper starts carry this label and the pid of the pytest that started them,
# so leftovers of a killed run can be told from those of a run still going.
OWNER_LABEL = "aws-root-exporter-test-pid"
MMDEBSTRAP = [
    "mmdebstrap",
    "--variant=minbase",
    "--include=python3,python3-pip,ca-certificates",
    # Debian marks its Python externally managed; the image installs its wheels system-wide.
    '--customize-hook=rm -f "$1"/usr/lib/python3*/EXTERNALLY-MANAGED',
    "bookworm",
]
CONTAINERS_CONF = """\
[containers]
default_ulimits = ["nofile=20000:20000", "nproc=32768:32768"]

[engine]
runtime = "runc"
"""
SETUP_HINT = "run `bash scripts/install-system-packages.sh` as root (make test does)"


class ContainerError(Exception):
    """The machine cannot build or run the image; the message says what is missing."""


def missing_prerequisites() -> list[str]:
    """Why this machine cannot run the image test, empty when it can."""
    missing = []
    if os.geteuid() != 0:
        missing.append("root: the image test runs podman as root (rootless podman needs subordinate uid ranges this setup does not make)")
    for command in ("podman", "runc", "mmdebstrap"):
        if shutil.which(command) is None:
            missing.append(f"the {command} command: {SETUP_HINT}")
    if not CA_BUNDLE.is_file():
        missing.append(f"{CA_BUNDLE}: install the ca-certificates package")
    return missing


@dataclass
class Build:
    base_seconds: float | None  # None: the base image was already there
    build_seconds: float
    image_id: str


class Podman:
    def __init__(self, workdir: Path) -> None:
        conf = workdir / "containers.conf"
        conf.write_text(CONTAINERS_CONF, encoding="utf-8")
        self.env = {**os.environ, "CONTAINERS_CONF": str(conf)}

    def run(self, *args: str, check: bool = True, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        proc = subprocess.run(
            ["podman", *args], capture_output=True, text=True, env=self.env, timeout=timeout, stdin=subprocess.DEVNULL
        )
        if check and proc.returncode != 0:
            raise ContainerError(f"podman {' '.join(args[:2])} failed (exit status {proc.returncode}):\n{proc.stderr[-4000:]}")
        return proc

    def check_works(self) -> None:
        proc = self.run("info", "--format", "{{.Host.OCIRuntime.Name}}", check=False)
        if proc.returncode != 0:
            raise ContainerError(f"podman cannot run here (`podman info` failed):\n{proc.stderr[-2000:]}")
        if proc.stdout.strip() != "runc":
            raise ContainerError(f"podman uses the {proc.stdout.strip()!r} runtime, not runc as CONTAINERS_CONF says")

    def image_id(self, name: str) -> str | None:
        proc = self.run("image", "inspect", "--format", "{{.Id}}", name, check=False)
        return proc.stdout.strip() if proc.returncode == 0 else None

    def image(self, name: str) -> dict:
        return json.loads(self.run("image", "inspect", "--format", "json", name).stdout)[0]

    def make_base_image(self) -> float | None:
        """Import a Debian bookworm root filesystem as BASE_IMAGE unless it is there already."""
        if self.image_id(BASE_IMAGE):
            return None
        started = time.monotonic()
        with tempfile.TemporaryDirectory(prefix="aws-root-exporter-rootfs-") as tmp:
            rootfs = Path(tmp) / "rootfs.tar"
            proc = subprocess.run(
                [*MMDEBSTRAP, str(rootfs)], capture_output=True, text=True, timeout=900, stdin=subprocess.DEVNULL
            )
            if proc.returncode != 0:
                raise ContainerError(f"mmdebstrap could not make the base image (exit status {proc.returncode}):\n{proc.stderr[-4000:]}")
            self.run("import", "--change", "ENV LANG=C.UTF-8", str(rootfs), BASE_IMAGE, timeout=600)
        return time.monotonic() - started

    def build(self) -> Build:
        """The base image (once), then the Dockerfile, reusing podman's layer cache."""
        base_seconds = self.make_base_image()
        previous = {name: self.image_id(name) for name in (BUILDER_IMAGE, IMAGE)}
        common = [
            "build",
            "--format", "docker",  # the OCI format drops HEALTHCHECK
            "--layers",
            "--pull=never",
            "--network=host",
            "--volume", f"{CA_BUNDLE}:{CA_BUNDLE}:ro",
            "--build-arg", f"PYTHON_IMAGE={BASE_IMAGE}",
        ]
        started = time.monotonic()
        self.run(*common, "--target", "builder", "--tag", BUILDER_IMAGE, str(ROOT), timeout=900)
        self.run(*common, "--tag", IMAGE, str(ROOT), timeout=900)
        build_seconds = time.monotonic() - started
        # The previous build's images (and the layers only they used), so that the storage
        # holds one build, not one per change; an image a container still uses is kept.
        for name, old in previous.items():
            if old and old != self.image_id(name):
                self.run("rmi", old, check=False)
        return Build(base_seconds, build_seconds, self.image_id(IMAGE) or "")

    def remove_leftovers(self) -> None:
        """Containers and volumes of earlier runs of this suite whose pytest is gone (killed mid-test)."""
        proc = self.run("ps", "--all", "--filter", f"label={OWNER_LABEL}", "--format", "json")
        for container in json.loads(proc.stdout or "[]"):
            pid = int((container.get("Labels") or {}).get(OWNER_LABEL, "0"))
            if pid and not Path(f"/proc/{pid}").exists():
                self.run("rm", "--force", container["Id"], check=False)
        proc = self.run("volume", "ls", "--filter", f"label={OWNER_LABEL}", "--format", "json")
        for volume in json.loads(proc.stdout or "[]"):
            pid = int((volume.get("Labels") or {}).get(OWNER_LABEL, "0"))
            if pid and not Path(f"/proc/{pid}").exists():
                self.run("volume", "rm", "--force", volume["Name"], check=False)

    def create_volume(self, name: str) -> Path:
        """A named volume; its directory on this host."""
        self.run("volume", "create", "--label", f"{OWNER_LABEL}={os.getpid()}", name)
        return Path(self.run("volume", "inspect", "--format", "{{.Mountpoint}}", name).stdout.strip())

    def remove_volume(self, name: str) -> None:
        self.run("volume", "rm", "--force", name, check=False)

    def start(self, *args: str) -> str:
        """`podman run --detach` with our label; returns the container id."""
        proc = self.run("run", "--detach", "--label", f"{OWNER_LABEL}={os.getpid()}", *args)
        # podman also prints complaints about systemd timers (none here) on stderr: the id is stdout.
        return proc.stdout.strip().splitlines()[-1]

    def state(self, container: str) -> dict:
        return json.loads(self.run("inspect", "--format", "{{json .State}}", container).stdout)

    def logs(self, container: str) -> str:
        proc = self.run("logs", container, check=False)
        return proc.stdout + proc.stderr

    def remove(self, container: str) -> None:
        self.run("rm", "--force", container, check=False)
