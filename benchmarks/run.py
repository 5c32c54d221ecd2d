"""Drive one benchmark: the fake AWS and the exporter in their own processes, timed from here."""

from __future__ import annotations

import http.client
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from exporter.settings import ENV_PREFIX, Settings

# The posture calls one account costs in one sweep, and AssumeRole when its credentials expire.
POSTURE_OPERATIONS = ("iam:GetAccountSummary", "iam:GetCredentialReport", "iam:ListVirtualMFADevices")
ASSUME_ROLE = "sts:AssumeRole"
# Subprocesses run `-m benchmarks.*` from the checkout, whatever the caller's directory.
REPO = Path(__file__).resolve().parent.parent


def base_env(endpoint_url: str) -> dict[str, str]:
    """A clean environment: fake credentials, no profile, no setting leaking in from the shell."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(ENV_PREFIX) and not k.startswith("AWS_")}
    env.update(
        {
            "AWS_ACCESS_KEY_ID": "AKIDEXPORTER00000000",
            "AWS_SECRET_ACCESS_KEY": "secret",
            "AWS_DEFAULT_REGION": "us-east-1",
            "AWS_CONFIG_FILE": "/dev/null",
            "AWS_SHARED_CREDENTIALS_FILE": "/dev/null",
            "AWS_EC2_METADATA_DISABLED": "true",
            ENV_PREFIX + "ENDPOINT_URL": endpoint_url,
            ENV_PREFIX + "LOG_LEVEL": "warning",
        }
    )
    return env


class FakeAwsProcess:
    def __init__(self, accounts: int, latency: float) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "benchmarks.fake_aws", "--accounts", str(accounts), "--latency", str(latency)],
            stdout=subprocess.PIPE,
            text=True,
            cwd=REPO,
        )
        line = self.proc.stdout.readline()
        if not line.startswith("LISTENING"):
            self.stop()
            raise RuntimeError(f"fake AWS did not start: {line!r}")
        self.url = f"http://127.0.0.1:{int(line.split()[1])}"

    def _get(self, path: str, method: str = "GET") -> dict[str, Any]:
        request = urllib.request.Request(self.url + path, method=method, data=b"" if method == "POST" else None)
        with urllib.request.urlopen(request, timeout=30) as response:
            return json.loads(response.read())

    def stats(self) -> dict[str, Any]:
        return self._get("/__stats")

    def reset(self) -> None:
        self._get("/__reset", "POST")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


class ExporterProcess:
    def __init__(self, endpoint_url: str, **settings: Any) -> None:
        env = base_env(endpoint_url)
        for key, value in settings.items():
            env[ENV_PREFIX + key.upper()] = str(value)
        self.stderr = tempfile.TemporaryFile(mode="w+")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "benchmarks.exporter_process"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self.stderr,
            text=True,
            env=env,
            cwd=REPO,
        )
        started = self._read()
        self.metrics_url = f"http://127.0.0.1:{started['port']}/metrics"
        self.port = started["port"]

    def _read(self) -> dict[str, Any]:
        line = self.proc.stdout.readline()
        if not line:
            self.stderr.seek(0)
            raise RuntimeError("exporter process ended:\n" + self.stderr.read()[-3000:])
        return json.loads(line)

    def start_sweep(self) -> None:
        self.proc.stdin.write("sweep\n")
        self.proc.stdin.flush()

    def finish_sweep(self) -> dict[str, Any]:
        return self._read()

    def sweep(self) -> dict[str, Any]:
        self.start_sweep()
        return self.finish_sweep()

    def stop(self) -> None:
        if self.proc.poll() is None:
            try:
                self.proc.stdin.write("quit\n")
                self.proc.stdin.flush()
                self.proc.wait(15)
            except (BrokenPipeError, subprocess.TimeoutExpired):
                self.proc.terminate()
                try:
                    self.proc.wait(10)
                except subprocess.TimeoutExpired:
                    self.proc.kill()
                    self.proc.wait()
        self.stderr.close()


@dataclass
class Scraper:
    """Scrapes /metrics in a loop on a thread (like Prometheus, alternately gzip and plain)."""

    port: int
    interval: float = 0.1
    max_scrapes: int = 5000
    samples: dict[str, list[float]] = field(default_factory=lambda: {"plain": [], "gzip": []})
    sizes: dict[str, int] = field(default_factory=dict)
    errors: int = 0

    def __post_init__(self) -> None:
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)

    def scrape(self, kind: str, conn: http.client.HTTPConnection) -> None:
        headers = {"Accept-Encoding": "gzip"} if kind == "gzip" else {}
        started = time.perf_counter()
        conn.request("GET", "/metrics", headers=headers)
        response = conn.getresponse()
        body = response.read()
        elapsed = (time.perf_counter() - started) * 1000
        if response.status != 200:
            self.errors += 1
            return
        self.samples[kind].append(elapsed)
        self.sizes[kind] = len(body)

    def _loop(self) -> None:
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=60)
        try:
            for i in range(self.max_scrapes):
                if self._stop.is_set():
                    break
                try:
                    self.scrape("gzip" if i % 2 else "plain", conn)
                except (OSError, http.client.HTTPException):
                    self.errors += 1
                    conn.close()
                    conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=60)
                self._stop.wait(self.interval)
        finally:
            conn.close()

    def __enter__(self) -> Scraper:
        self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._stop.set()
        self._thread.join(timeout=120)


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))]


def per_account_counts(stats: dict[str, Any], operations: tuple[str, ...]) -> dict[str, dict[str, int]]:
    return {aid: {op: counts.get(op, 0) for op in operations} for aid, counts in stats["by_account"].items()}


def requests_per_account_hour(warm_requests_per_account: float) -> dict[str, float]:
    """AWS requests per account per hour at the default settings, from one measured warm sweep.

    Per hour: 3600 / posture_interval_seconds sweeps (each as measured), plus one AssumeRole
    per account when its one-hour credentials run out, plus a `GenerateCredentialReport` and a
    second `GetCredentialReport` each time the cached report passes
    credential_report_max_age_seconds.
    """
    defaults = Settings.model_fields
    interval = defaults["posture_interval_seconds"].default
    report_age = defaults["credential_report_max_age_seconds"].default
    sweeps = 3600 / interval
    total = sweeps * warm_requests_per_account + 1 + 2 * 3600 / report_age
    return {"sweeps_per_hour": sweeps, "requests_per_account_hour": total}


def measure(accounts: int, latency: float, scrape_interval: float = 0.05) -> dict[str, Any]:
    """Cold sweep (timed, counted), then a warm sweep with /metrics scraped throughout."""
    fake = FakeAwsProcess(accounts, latency)
    exporter = None
    try:
        exporter = ExporterProcess(fake.url)
        conn = http.client.HTTPConnection("127.0.0.1", exporter.port, timeout=60)
        before = Scraper(exporter.port)
        before.scrape("gzip", conn)  # as Prometheus would, before the first sweep completes
        cold = exporter.sweep()
        cold_stats = fake.stats()
        fake.reset()
        # The first sweep has just been published: a scrape right now waits for the
        # exposition being rendered (the worst case); one a few seconds later does not.
        after = Scraper(exporter.port)
        after.scrape("plain", conn)
        time.sleep(3)
        after.scrape("gzip", conn)
        conn.close()
        with Scraper(exporter.port, interval=scrape_interval) as scraper:
            warm = exporter.sweep()
        warm_stats = fake.stats()
    finally:
        if exporter is not None:
            exporter.stop()
        fake.stop()
    return summarize(accounts, cold, cold_stats, warm, warm_stats, scraper, after)


def summarize(accounts, cold, cold_stats, warm, warm_stats, scraper, after) -> dict[str, Any]:
    member_ids = set(cold["account_ids"])
    cold_counts = per_account_counts(cold_stats, POSTURE_OPERATIONS + (ASSUME_ROLE,))
    warm_counts = per_account_counts(warm_stats, POSTURE_OPERATIONS + (ASSUME_ROLE,))
    expected_cold = {op: 1 for op in POSTURE_OPERATIONS}
    irregular = [
        aid
        for aid in member_ids
        if {op: cold_counts.get(aid, {}).get(op, 0) for op in POSTURE_OPERATIONS} != expected_cold
        or {op: warm_counts.get(aid, {}).get(op, 0) for op in POSTURE_OPERATIONS} != expected_cold
    ]
    cold_total = sum(cold_stats["requests"].values())
    warm_total = sum(warm_stats["requests"].values())
    everything = scraper.samples["plain"] + scraper.samples["gzip"]
    hourly = requests_per_account_hour(warm_total / accounts)
    return {
        "accounts": accounts,
        "accounts_collected": cold["collected"],
        "accounts_failed": cold["failed"],
        "accounts_with_unexpected_request_counts": len(irregular),
        "sweep_seconds": cold["wall"],
        "sweep_cpu_seconds": cold["cpu"],
        "warm_sweep_seconds": warm["wall"],
        "warm_sweep_cpu_seconds": warm["cpu"],
        "requests_per_account": cold_total / accounts,
        "warm_requests_per_account": warm_total / accounts,
        "requests_by_operation": cold_stats["requests"],
        "warm_requests_by_operation": warm_stats["requests"],
        "throttled_requests": sum(cold_stats["throttled"].values()) + sum(warm_stats["throttled"].values()),
        "max_lookup_events_per_second_per_account_region": max(
            cold_stats["max_lookup_events_per_second"], warm_stats["max_lookup_events_per_second"]
        ),
        "scrapes_during_sweep": len(everything),
        "scrape_errors": scraper.errors,
        "scrape_median_ms": statistics.median(everything) if everything else float("nan"),
        "scrape_p99_ms": percentile(everything, 0.99),
        "scrape_max_ms": max(everything) if everything else float("nan"),
        "scrape_plain_median_ms": statistics.median(scraper.samples["plain"]) if scraper.samples["plain"] else float("nan"),
        "scrape_gzip_median_ms": statistics.median(scraper.samples["gzip"]) if scraper.samples["gzip"] else float("nan"),
        "scrape_right_after_sweep_ms": after.samples["plain"][0] if after.samples["plain"] else float("nan"),
        "scrape_3s_after_sweep_ms": after.samples["gzip"][0] if after.samples["gzip"] else float("nan"),
        "metrics_bytes_plain": scraper.sizes.get("plain", 0),
        "metrics_bytes_gzip": scraper.sizes.get("gzip", 0),
        "peak_rss_mb": warm["peak_rss_mb"],
        "fake_aws_cpu_seconds": cold_stats["cpu_seconds"],
        "load_average": os.getloadavg()[0],
        **hourly,
    }


def measure_shards(accounts: int, latency: float, shard_count: int = 2) -> dict[str, Any]:
    """`shard_count` exporters (one process each, so they use separate cores) sweep at once."""
    fake = FakeAwsProcess(accounts, latency)
    exporters: list[ExporterProcess] = []
    try:
        for index in range(shard_count):
            exporters.append(ExporterProcess(fake.url, shard_index=index, shard_count=shard_count))
        started = time.monotonic()
        for exporter in exporters:
            exporter.start_sweep()
        results = [exporter.finish_sweep() for exporter in exporters]
        wall = time.monotonic() - started
        stats = fake.stats()
    finally:
        for exporter in exporters:
            exporter.stop()
        fake.stop()
    sets = [set(r["account_ids"]) for r in results]
    union = set().union(*sets)
    overlap = sum(len(a & b) for i, a in enumerate(sets) for b in sets[i + 1 :])
    return {
        "accounts": accounts,
        "shard_count": shard_count,
        "accounts_per_shard": [len(s) for s in sets],
        "collected_per_shard": [r["collected"] for r in results],
        "all_accounts_covered": len(union) == accounts,
        "accounts_in_two_shards": overlap,
        "shard_sweep_seconds": [r["wall"] for r in results],
        "shard_cpu_seconds": [r["cpu"] for r in results],
        "shard_peak_rss_mb": [r["peak_rss_mb"] for r in results],
        "sweep_seconds": wall,
        "requests_per_account": sum(stats["requests"].values()) / accounts,
    }


def measure_baseline(accounts: int, latency: float) -> dict[str, Any]:
    fake = FakeAwsProcess(accounts, latency)
    try:
        env = base_env(fake.url)
        out = subprocess.run(
            [sys.executable, "-m", "benchmarks.baseline", "--endpoint-url", fake.url],
            env=env,
            capture_output=True,
            text=True,
            timeout=3600,
            cwd=REPO,
            check=True,
        )
        result = json.loads(out.stdout.strip().splitlines()[-1])
        result["requests_per_account"] = sum(fake.stats()["requests"].values()) / accounts
    finally:
        fake.stop()
    return result
