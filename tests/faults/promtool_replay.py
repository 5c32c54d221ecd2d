"""Replay an exposition into `promtool test rules` against the shipped rules."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import yaml

from ..conftest import ROOT

RULES = ROOT / "alerts" / "aws-root-exporter.rules.yml"
JOB = {"job": "aws-root-exporter", "instance": "exporter:9784"}


def series(families: dict) -> list[dict]:
    """Every sample as a promtool input series held for 40 minutes (1 m steps); a collector
    error counter keeps rising from the value scraped, as it does when every sweep fails
    again. It starts at that value, not at 0: an error series appears with its first error
    (issue 16), so the rules never see it at 0."""
    out = []
    for family in families.values():
        for s in family.samples:
            labels = {**s.labels, **JOB}
            selector = s.name + "{" + ",".join(f"{k}={json.dumps(v)}" for k, v in sorted(labels.items())) + "}"
            if s.name == "aws_root_exporter_collector_errors_total" and s.value > 0:
                values = f"{s.value:.17g}+1x40"  # fails again every sweep (1 m apart)
            else:
                # Every digit: `:g` kept six, and turned timestamps into other times.
                values = f"{s.value:.17g}x40"
            out.append({"series": selector, "values": values})
    return out


def replay(families: dict, alert_rule_test: list[dict], tmp_path: Path) -> None:
    """Assert the shipped rules give exactly `alert_rule_test` on this exposition."""
    promtool = shutil.which("promtool")
    assert promtool, "promtool is needed (apt-get install prometheus)"
    test = {
        "rule_files": [str(RULES)],
        "evaluation_interval": "1m",
        "tests": [{"interval": "1m", "input_series": series(families), "alert_rule_test": alert_rule_test}],
    }
    path = tmp_path / "replay.yml"
    path.write_text(yaml.safe_dump(test, sort_keys=False))
    result = subprocess.run([promtool, "test", "rules", str(path)], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
