"""The exporter's cost in the user's Prometheus: the real server scraping the exporter.

Debian's `prometheus` (2.42) scrapes the exporter's `/metrics` on loopback at the chosen
interval, with its data directory in a temporary directory; it is stopped by its pid and
the directory removed whatever happens. Measured: the head series
(`prometheus_tsdb_head_series`), samples per scrape (`scrape_samples_scraped`), the scrape
duration Prometheus saw (`scrape_duration_seconds`), Prometheus's own resident memory
(`process_resident_memory_bytes`), and from the exposition itself: bytes plain and gzip,
samples, series per account (total over accounts, and the median member account).
"""

from __future__ import annotations

import gzip
import json
import re
import shutil
import socket
import statistics
import subprocess
import tempfile
import time
import urllib.parse
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

JOB = "aws-root-exporter-benchmark"
# The series Prometheus adds for every target on each scrape (up, scrape_duration_seconds,
# scrape_samples_scraped, scrape_samples_post_metric_relabeling, scrape_series_added).
SYNTHETIC_SERIES = 5
# What Prometheus 2.42 asks for; the exporter answers the text format to it.
PROMETHEUS_ACCEPT = "application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1"
ACCOUNT_ID = re.compile(r'account_id="(\d{12})"')
STARTUP_SECONDS = 120


@dataclass(frozen=True)
class PrometheusOptions:
    """`scrape_interval`: seconds between scrapes (10 s, as in issue 16's trial).
    `scrapes`: completed scrapes before memory and head series are read (9 at 10 s: the
    trial's 90 s)."""

    scrape_interval: float = 10.0
    scrapes: int = 9


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _get(url: str, headers: dict[str, str] | None = None, timeout: float = 120) -> bytes:
    with urllib.request.urlopen(urllib.request.Request(url, headers=headers or {}), timeout=timeout) as response:
        return response.read()


def _query(base: str, expr: str) -> list[dict[str, Any]]:
    body = json.loads(_get(f"{base}/api/v1/query?" + urllib.parse.urlencode({"query": expr})))
    if body["status"] != "success":
        raise RuntimeError(f"query {expr!r} failed: {body}")
    return body["data"]["result"]


def _own_metric(base: str, name: str) -> float:
    """One unlabelled sample of Prometheus's own /metrics, read directly: a self-scrape job
    would add Prometheus's own series to the head being measured."""
    for line in _get(f"{base}/metrics").decode().splitlines():
        if line.startswith(name + " "):
            return float(line.split()[1])
    raise RuntimeError(f"{name} is not in Prometheus's /metrics")


def exposition_figures(body: str, management_id: str) -> dict[str, Any]:
    """Samples in one text exposition and how they fall on accounts."""
    per_account: dict[str, int] = {}
    samples = 0
    for line in body.splitlines():
        if not line or line.startswith("#"):
            continue
        samples += 1
        match = ACCOUNT_ID.search(line)
        if match:
            per_account[match.group(1)] = per_account.get(match.group(1), 0) + 1
    members = [n for aid, n in per_account.items() if aid != management_id]
    return {
        "exposition_samples": samples,
        "exposition_series_with_account_id": sum(per_account.values()),
        "exposition_series_without_account_id": samples - sum(per_account.values()),
        "accounts_in_exposition": len(per_account),
        "series_per_member_median": statistics.median(members) if members else float("nan"),
        "series_per_member_max": max(members) if members else float("nan"),
        "series_management_account": per_account.get(management_id, 0),
    }


def measure_prometheus(exporter_port: int, accounts: int, management_id: str, options: PrometheusOptions) -> dict[str, Any]:
    """Run Prometheus against the exporter (its state no longer changing) and read its cost."""
    binary = shutil.which("prometheus")
    if binary is None:
        raise RuntimeError("prometheus is not installed (Debian package prometheus; scripts/install-system-packages.sh), or run with --no-prometheus")
    metrics_url = f"http://127.0.0.1:{exporter_port}/metrics"
    plain = _get(metrics_url, {"Accept": PROMETHEUS_ACCEPT})
    gzipped = _get(metrics_url, {"Accept": PROMETHEUS_ACCEPT, "Accept-Encoding": "gzip"})
    figures = exposition_figures(plain.decode(), management_id)
    if gzip.decompress(gzipped) != plain:
        raise RuntimeError("the gzip /metrics differs from the plain one: the exporter's state moved during the measurement")
    interval = f"{options.scrape_interval:g}s"
    tmp = Path(tempfile.mkdtemp(prefix="bench-prometheus-"))
    proc = None
    try:
        (tmp / "prometheus.yml").write_text(
            json.dumps(  # JSON is YAML
                {
                    "global": {"scrape_interval": interval, "scrape_timeout": interval, "evaluation_interval": interval},
                    "scrape_configs": [{"job_name": JOB, "static_configs": [{"targets": [f"127.0.0.1:{exporter_port}"]}]}],
                }
            )
        )
        port = _free_port()
        log = open(tmp / "prometheus.log", "w")
        proc = subprocess.Popen(
            [binary, f"--config.file={tmp / 'prometheus.yml'}", f"--web.listen-address=127.0.0.1:{port}", f"--storage.tsdb.path={tmp / 'data'}"],
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        log.close()
        base = f"http://127.0.0.1:{port}"
        selector = f'{{job="{JOB}"}}'
        window = f"{int(options.scrapes * options.scrape_interval * 3 + 120)}s"
        started = time.monotonic()
        deadline = started + STARTUP_SECONDS + options.scrapes * options.scrape_interval * 3
        rss_samples: list[float] = []
        scrapes = 0
        while scrapes < options.scrapes:
            if proc.poll() is not None:
                raise RuntimeError("prometheus ended:\n" + (tmp / "prometheus.log").read_text()[-3000:])
            if time.monotonic() > deadline:
                raise RuntimeError(f"prometheus made {scrapes} of {options.scrapes} scrapes in time:\n" + (tmp / "prometheus.log").read_text()[-3000:])
            try:
                result = _query(base, f"count_over_time(up{selector}[{window}])")
                scrapes = int(float(result[0]["value"][1])) if result else 0
                if scrapes:
                    rss_samples.append(_own_metric(base, "process_resident_memory_bytes"))
            except OSError:
                pass  # not listening yet
            time.sleep(1)
        elapsed = time.monotonic() - started
        up = [float(v) for _, v in _query(base, f"up{selector}[{window}]")[0]["values"]]
        durations = [float(v) for _, v in _query(base, f"scrape_duration_seconds{selector}[{window}]")[0]["values"]]
        samples = [float(v) for _, v in _query(base, f"scrape_samples_scraped{selector}[{window}]")[0]["values"]]
        head_series = _own_metric(base, "prometheus_tsdb_head_series")
        rss = _own_metric(base, "process_resident_memory_bytes")
    finally:
        if proc is not None:
            proc.terminate()  # by its pid; a head of a million series takes a few seconds to close
            try:
                proc.wait(60)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        shutil.rmtree(tmp, ignore_errors=True)
    return {
        "scrape_interval_seconds": options.scrape_interval,
        "scrapes": len(up),
        "scrapes_failed": sum(1 for v in up if v != 1),
        "seconds_from_start": elapsed,
        "metrics_bytes_plain": len(plain),
        "metrics_bytes_gzip": len(gzipped),
        **figures,
        "series_per_account": figures["exposition_samples"] / accounts,
        "samples_per_scrape": samples[-1],
        "samples_per_scrape_all": samples,
        "scrape_duration_median_seconds": statistics.median(durations),
        "scrape_duration_max_seconds": max(durations),
        "scrape_duration_all_seconds": durations,
        "head_series": head_series,
        "rss_bytes": rss,
        "rss_peak_bytes": max(rss_samples + [rss]),
        "rss_bytes_per_second": rss_samples,
    }
