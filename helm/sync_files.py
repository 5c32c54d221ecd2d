#!/usr/bin/env python3
"""Refresh the Helm chart's copies of the alert rules and dashboards.

Helm's `.Files` reads only inside the chart, so the chart carries copies of the
repository's `alerts/*.rules.yml` and `dashboards/*.json` in
`helm/aws-root-exporter/files/{alerts,dashboards}/`. Copies rather than symlinks: a
symlinked file is followed by Helm (and by helm-python-sdk), but a link whose target is
missing makes the whole chart fail to load, and a packaged or vendored chart must stand
on its own.

    python3 helm/sync_files.py          # copy, and delete copies whose source is gone
    python3 helm/sync_files.py --check  # exit 1 and list the drift, change nothing

tests/test_helm.py runs the same comparison.
"""

from __future__ import annotations

import argparse
import shutil
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
CHART = REPO / "helm" / "aws-root-exporter"

# (source directory, glob, chart directory)
PAIRS = (
    ("alerts", "*.rules.yml", "files/alerts"),
    ("dashboards", "*.json", "files/dashboards"),
)


def _sources(repo: Path, source: str, pattern: str) -> dict[str, Path]:
    directory = repo / source
    return {path.name: path for path in sorted(directory.glob(pattern)) if path.is_file()} if directory.is_dir() else {}


def _copies(chart: Path, target: str, pattern: str) -> dict[str, Path]:
    directory = chart / target
    return {path.name: path for path in sorted(directory.glob(pattern)) if path.is_file()} if directory.is_dir() else {}


def drift(repo: Path = REPO, chart: Path = CHART) -> list[str]:
    """Human-readable differences between the repository files and the chart's copies."""
    problems: list[str] = []
    for source, pattern, target in PAIRS:
        wanted = _sources(repo, source, pattern)
        present = _copies(chart, target, pattern)
        for name in sorted(wanted.keys() - present.keys()):
            problems.append(f"{target}/{name}: missing copy of {source}/{name}")
        for name in sorted(present.keys() - wanted.keys()):
            problems.append(f"{target}/{name}: stale copy, {source}/{name} does not exist")
        for name in sorted(wanted.keys() & present.keys()):
            if wanted[name].read_bytes() != present[name].read_bytes():
                problems.append(f"{target}/{name}: differs from {source}/{name}")
    return problems


def sync(repo: Path = REPO, chart: Path = CHART) -> list[str]:
    """Make the chart's copies equal to the repository files; return what changed."""
    changes = drift(repo, chart)
    for source, pattern, target in PAIRS:
        wanted = _sources(repo, source, pattern)
        directory = chart / target
        directory.mkdir(parents=True, exist_ok=True)
        for name, path in _copies(chart, target, pattern).items():
            if name not in wanted:
                path.unlink()
        for name, path in wanted.items():
            shutil.copyfile(path, directory / name)
    return changes


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="report drift and exit 1, change nothing")
    args = parser.parse_args(argv)
    if args.check:
        problems = drift()
        for problem in problems:
            print(problem, file=sys.stderr)
        if problems:
            print("run: python3 helm/sync_files.py", file=sys.stderr)
        return 1 if problems else 0
    for change in sync():
        print(f"synced {change}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
