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

from exporter.engine.activity import MANAGEMENT_EVENT_NAMES
from exporter.monitoring.canary import EVENT_NAME as CANARY_EVENT_NAME
from exporter.config.settings import ENV_PREFIX, Settings

from .prometheus_cost import PrometheusOptions, measure_prometheus

# The posture calls one account costs in one sweep, and AssumeRole when its credentials expire.
POSTURE_OPERATIONS = ("iam:GetAccountSummary", "iam:GetCredentialReport", "iam:ListVirtualMFADevices")
ASSUME_ROLE = "sts:AssumeRole"
# Read in the cold sweep, then again once security_contact_max_age_seconds has passed.
SECURITY_CONTACT = "account:GetAlternateContact"
LOOKUP_EVENTS = "cloudtrail:LookupEvents"
# What the canary sends: one GetCallerIdentity per account and monitored region per round,
# and one LookupEvents by this attribute per account and region in each LookupEvents cycle.
CALLER_IDENTITY = "sts:GetCallerIdentity"
CANARY_LOOKUP = "EventName=" + CANARY_EVENT_NAME
# The configuration checks' reads, per account and monitored region per pass.
CHECK_OPERATIONS = (
    "cloudtrail:DescribeTrails",
    "cloudtrail:GetTrailStatus",
    "cloudtrail:GetEventSelectors",
    "events:DescribeRule",
    "events:ListTargetsByRule",
)
# The benchmark's regions: the default (the partition's global-service region).
MONITORED_REGIONS = 1
# The EventBridge queue the exporter long-polls in the fake (any 12-digit account, any name).
QUEUE_URL_PATH = "/100000000000/bench-root-events"
SQS_SAMPLES = 5
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
    def __init__(self, accounts: int, latency: float, faults: dict[str, float] | None = None) -> None:
        """`faults`: fault shares and options as `--flag value` (e.g. `{"throttle": 0.05}`)."""
        flags = [x for key, value in (faults or {}).items() for x in ("--" + key.replace("_", "-"), str(value))]
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "benchmarks.fake_aws", "--accounts", str(accounts), "--latency", str(latency), *flags],
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

    def forward_canaries(self, on: bool) -> None:
        """Each canary record also goes on the SQS queue as the forwarder rule's event (on) or not (off)."""
        self._get(f"/__canary?forward={int(on)}", "POST")

    def lookup_records(self, on: bool) -> None:
        """LookupEvents answers one root console sign-in per account (on) or nothing (off)."""
        self._get(f"/__lookup_events?records={int(on)}", "POST")

    def set_faults(self, config: dict[str, float]) -> dict[str, Any]:
        """Replace the fault shares at runtime (`{}`: no faults); see fake_aws.FakeAws.set_faults."""
        request = urllib.request.Request(self.url + "/__faults", method="POST", data=json.dumps(config).encode())
        with urllib.request.urlopen(request, timeout=30) as response:
            return json.loads(response.read())

    def sqs_send(self, body: str) -> None:
        request = urllib.request.Request(self.url + "/__sqs_send", method="POST", data=body.encode())
        with urllib.request.urlopen(request, timeout=30) as response:
            response.read()

    def stop(self) -> None:
        end_process(self.proc)


def end_process(proc: subprocess.Popen) -> None:
    """SIGTERM, then SIGKILL if it has not ended 10 s later."""
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


class ExporterProcess:
    def __init__(self, endpoint_url: str, log_path: Path | None = None, **settings: Any) -> None:
        """`log_path`: keep the exporter's log (stderr) there instead of in a temporary file."""
        env = base_env(endpoint_url)
        for key, value in settings.items():
            env[ENV_PREFIX + key.upper()] = str(value)
        self.stderr = open(log_path, "w+") if log_path else tempfile.TemporaryFile(mode="w+")
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

    def _send(self, command: str) -> None:
        self.proc.stdin.write(command + "\n")
        self.proc.stdin.flush()

    def command(self, command: str) -> dict[str, Any]:
        """Send one command (see benchmarks/exporter_process.py) and read its answer."""
        self._send(command)
        return self._read()

    def start_sweep(self) -> None:
        self._send("sweep")

    def finish_sweep(self) -> dict[str, Any]:
        return self._read()

    def sweep(self) -> dict[str, Any]:
        return self.command("sweep")

    def poll(self) -> dict[str, Any]:
        """One timed LookupEvents pass over every account (after a sweep)."""
        return self.command("poll")

    def start_sqs(self) -> None:
        """Start the EventBridge SQS loop (needs eventbridge_queue_url)."""
        self.command("sqs")

    def stop(self) -> None:
        if self.proc.poll() is None:
            try:
                self._send("quit")
                self.proc.wait(15)
            except (BrokenPipeError, subprocess.TimeoutExpired):
                end_process(self.proc)
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


def requests_per_account_hour(warm_requests_per_account: float, lookup_requests_per_account: float = 0.0) -> dict[str, float]:
    """AWS requests per account per hour at the default settings, from one measured warm sweep.

    Per hour: 3600 / posture_interval_seconds sweeps (each as measured), plus one AssumeRole
    per account when its one-hour credentials run out, plus a `GenerateCredentialReport` and a
    second `GetCredentialReport` each time the cached report passes
    credential_report_max_age_seconds, plus a `GetAlternateContact` each time the account's
    security contact passes security_contact_max_age_seconds (a warm sweep reads none);
    plus 3600 / lookup_events_interval_seconds LookupEvents
    polls, each costing what one measured poll cycle cost (one request per account and
    default region when nothing new happened).
    """
    defaults = Settings.model_fields
    interval = defaults["posture_interval_seconds"].default
    report_age = defaults["credential_report_max_age_seconds"].default
    sweeps = 3600 / interval
    polls = 3600 / defaults["lookup_events_interval_seconds"].default if defaults["lookup_events_enabled"].default else 0.0
    lookup = polls * lookup_requests_per_account
    contact = 3600 / defaults["security_contact_max_age_seconds"].default if defaults["security_contact_check"].default else 0.0
    total = sweeps * warm_requests_per_account + 1 + 2 * 3600 / report_age + contact + lookup
    return {
        "sweeps_per_hour": sweeps,
        "lookup_polls_per_hour": polls,
        "lookup_requests_per_account_hour": lookup,
        "requests_per_account_hour": total,
    }


def posture_total(stats: dict[str, Any]) -> int:
    """Requests of a posture sweep: everything but the EventBridge queue's long polls."""
    return sum(n for op, n in stats["requests"].items() if not op.startswith("sqs:"))


def console_logins(conn: http.client.HTTPConnection) -> float:
    """The sum of every `aws_root_console_logins_total` series in /metrics.

    Only that family is asked for (`name[]`): fetching and parsing all of /metrics (57 MB
    at 10,000 accounts) would take the driver longer than the exporter takes to count.
    """
    conn.request("GET", "/metrics?name[]=aws_root_console_logins_total")
    response = conn.getresponse()
    body = response.read().decode()
    return sum(float(line.rsplit(" ", 1)[1]) for line in body.splitlines() if line.startswith("aws_root_console_logins_total{"))


def measure_activity(fake: FakeAwsProcess, exporter: ExporterProcess, member_ids: set[str], management_id: str) -> dict[str, Any]:
    """One LookupEvents poll cycle with nothing new, then one with a root sign-in per account."""
    out: dict[str, Any] = {}
    conn = http.client.HTTPConnection("127.0.0.1", exporter.port, timeout=60)
    try:
        for label, records in (("empty", False), ("events", True)):
            time.sleep(1.1)  # the fake's one-second windows start empty
            fake.lookup_records(records)
            fake.reset()
            logins_before = console_logins(conn)
            poll = exporter.poll()
            stats = fake.stats()
            counts = {aid: stats["by_account"].get(aid, {}).get(LOOKUP_EVENTS, 0) for aid in member_ids}
            # One request per account and region, and one for the canaries
            # (EventName=GetCallerIdentity) per account and monitored region; the management
            # account also looks up, one event name per request, the AssumeRoot calls and
            # recovery-path changes its IAM principals make.
            expected = {aid: 1 + MONITORED_REGIONS + (len(MANAGEMENT_EVENT_NAMES) if aid == management_id else 0) for aid in member_ids}
            out[label] = {
                "wall": poll["wall"],
                "cpu": poll["cpu"],
                "accounts_polled": poll["accounts"],
                "accounts_failed": poll["failed"],
                "lookup_requests": stats["requests"].get(LOOKUP_EVENTS, 0),
                "canary_lookup_requests": stats["lookups"].get(CANARY_LOOKUP, 0),
                "other_requests": {op: n for op, n in stats["requests"].items() if op != LOOKUP_EVENTS and not op.startswith("sqs:")},
                "accounts_with_unexpected_lookup_counts": sum(1 for aid in member_ids if counts[aid] != expected[aid]),
                "throttled": sum(stats["throttled"].values()),
                "max_per_second": stats["max_lookup_events_per_second"],
                "logins_counted": console_logins(conn) - logins_before,
            }
        fake.lookup_records(False)
    finally:
        conn.close()
    return out


def measure_sqs(fake: FakeAwsProcess, exporter: ExporterProcess, account_id: str, samples: int = SQS_SAMPLES) -> list[float]:
    """Milliseconds from putting one EventBridge sign-in event on the queue to
    `aws_root_console_logins_total` moving in /metrics (polled every 5 ms)."""
    from exporter.sandbox.records import eventbridge_envelope, make_record

    exporter.start_sqs()
    conn = http.client.HTTPConnection("127.0.0.1", exporter.port, timeout=60)
    time.sleep(1.5)  # the loop is up and long-polling
    delays = []
    try:
        for _ in range(samples):
            before = console_logins(conn)
            body = json.dumps(eventbridge_envelope(make_record("console-login", account_id)))
            started = time.perf_counter()
            fake.sqs_send(body)
            while console_logins(conn) <= before:
                if time.perf_counter() - started > 30:
                    raise RuntimeError("the EventBridge event never reached /metrics")
                time.sleep(0.005)
            delays.append((time.perf_counter() - started) * 1000)
            time.sleep(0.3)  # the next event arrives while the exporter is long-polling again
    finally:
        conn.close()
    return delays


def measure_canary(fake: FakeAwsProcess, exporter: ExporterProcess, accounts: int, canary_lookups_per_poll: int) -> dict[str, Any]:
    """The proof of sight, after the sweeps and apart from them (its own loops): a first
    canary round in accounts it has not tried (new accounts), with the fake forwarding each
    canary record to the SQS queue (the EventBridge path) and a LookupEvents pass right after
    it, until every account reads proven on every configured source; then a steady round
    alone (forwarding off), timed and counted; then one configuration-check pass, timed and
    counted. Needs the SQS loop running (`measure_sqs`)."""
    defaults = Settings.model_fields
    rounds = 3600 / defaults["canary_interval_seconds"].default
    polls = 3600 / defaults["lookup_events_interval_seconds"].default
    passes = 3600 / defaults["monitoring_checks_interval_seconds"].default
    fake.forward_canaries(True)
    fake.reset()
    prove = exporter.command("prove 600")
    prove_stats = fake.stats()
    fake.forward_canaries(False)
    time.sleep(1.1)  # the fake's LookupEvents windows start empty
    fake.reset()
    steady = exporter.command("canary")
    steady_stats = fake.stats()
    fake.reset()
    checks = exporter.command("checks")
    checks_stats = fake.stats()
    coverage = exporter.command("coverage")
    identity = per_account_counts(steady_stats, (CALLER_IDENTITY,))
    sqs = sum(n for op, n in prove_stats["requests"].items() if op.startswith("sqs:"))
    hourly = {
        CALLER_IDENTITY: steady_stats["requests"].get(CALLER_IDENTITY, 0) / accounts * rounds,
        LOOKUP_EVENTS + " (" + CANARY_LOOKUP + ")": canary_lookups_per_poll / accounts * polls,
        "sqs (EventBridge canaries)": sqs / accounts * rounds,
    }
    checks_hourly = {op: checks_stats["requests"].get(op, 0) / accounts * passes for op in CHECK_OPERATIONS}
    seconds = prove["account_seconds"]
    return {
        "canary_accounts": steady["accounts"],
        "canary_paths": steady["paths"],
        "canary_failed": prove["failed"] + steady["failed"],
        "canary_round_seconds": steady["wall"],
        "canary_round_cpu_seconds": steady["cpu"],
        "canary_round_requests": {op: n for op, n in steady_stats["requests"].items() if not op.startswith("sqs:")},
        "accounts_with_unexpected_canary_counts": sum(1 for counts in identity.values() if counts[CALLER_IDENTITY] != MONITORED_REGIONS)
        + (steady["accounts"] - len(identity)),
        "canary_first_round_seconds": prove["round_wall"],
        "canary_first_round_cpu_seconds": prove["round_cpu"],
        "canary_first_lookup_pass_seconds": prove["poll_wall"],
        "canary_prove_cpu_seconds": prove["cpu"],
        "canary_all_proven": prove["proven"],
        "canary_prove_all_seconds": prove["proven_after"],
        "canary_prove_account_median_seconds": statistics.median(seconds) if seconds else float("nan"),
        "canary_prove_account_max_seconds": max(seconds) if seconds else float("nan"),
        "canary_prove_by_source_max_seconds": prove["by_source"],
        "canary_first_round_requests": {op: n for op, n in prove_stats["requests"].items()},
        "canary_coverage_states": coverage["states"],
        "canary_blind_paths": coverage["problems"],
        "canary_rounds_per_hour": rounds,
        "canary_requests_per_account_hour_by_operation": hourly,
        "canary_requests_per_account_hour": sum(hourly.values()),
        "checks_pass_seconds": checks["wall"],
        "checks_pass_cpu_seconds": checks["cpu"],
        "checks_problems": checks["problems"],
        "checks_requests": {op: n for op, n in checks_stats["requests"].items() if not op.startswith("sqs:")},
        "checks_passes_per_hour": passes,
        "checks_requests_per_account_hour_by_operation": checks_hourly,
        "checks_requests_per_account_hour": sum(checks_hourly.values()),
    }


def measure(accounts: int, latency: float, scrape_interval: float = 0.05, prometheus: PrometheusOptions | None = None) -> dict[str, Any]:
    """Cold sweep (timed, counted), then a warm sweep with /metrics scraped throughout;
    then, with `prometheus`, the real Prometheus scraping the steady state (no root activity
    yet, nothing changing), before the activity and SQS measurements add login series;
    last the canary and the configuration checks, which are loops of their own."""
    fake = FakeAwsProcess(accounts, latency)
    exporter = None
    try:
        exporter = ExporterProcess(fake.url, eventbridge_queue_url=fake.url + QUEUE_URL_PATH, sqs_wait_seconds=1)
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
        ids = cold["account_ids"]
        prometheus_cost = None
        if prometheus is not None:
            print(f"  Prometheus scraping N={accounts} every {prometheus.scrape_interval:g} s ...", file=sys.stderr, flush=True)
            prometheus_cost = measure_prometheus(exporter.port, accounts, ids[0], prometheus)
        activity = measure_activity(fake, exporter, set(ids), ids[0])
        sqs = measure_sqs(fake, exporter, ids[-1])
        canary = measure_canary(fake, exporter, accounts, activity["empty"]["canary_lookup_requests"])
    finally:
        if exporter is not None:
            exporter.stop()
        fake.stop()
    result = summarize(accounts, cold, cold_stats, warm, warm_stats, scraper, after, activity["empty"]["lookup_requests"] / accounts)
    empty, events = activity["empty"], activity["events"]
    result.update(
        {
            "activity_poll_seconds": empty["wall"],
            "activity_poll_cpu_seconds": empty["cpu"],
            "activity_poll_events_seconds": events["wall"],
            "activity_poll_events_cpu_seconds": events["cpu"],
            "activity_accounts_polled": empty["accounts_polled"],
            "activity_accounts_failed": empty["accounts_failed"] + events["accounts_failed"],
            "lookup_requests_per_account": empty["lookup_requests"] / accounts,
            "lookup_events_requests_per_account": events["lookup_requests"] / accounts,
            "lookup_other_requests": {**empty["other_requests"], **events["other_requests"]},
            "accounts_with_unexpected_lookup_counts": empty["accounts_with_unexpected_lookup_counts"] + events["accounts_with_unexpected_lookup_counts"],
            "lookup_throttled_requests": empty["throttled"] + events["throttled"],
            "lookup_max_per_second": max(empty["max_per_second"], events["max_per_second"]),
            "lookup_logins_counted": events["logins_counted"],
            "lookup_logins_counted_without_events": empty["logins_counted"],
            "sqs_to_metrics_ms": statistics.median(sqs),
            "sqs_to_metrics_max_ms": max(sqs),
            "sqs_to_metrics_samples_ms": sqs,
            "lookup_canary_requests_per_account": empty["canary_lookup_requests"] / accounts,
            **canary,
        }
    )
    # The canary's LookupEvents are in the poll cycle's count already; its GetCallerIdentity
    # calls and the checks' reads are per account too. SQS stays out (per queue, not account).
    result["requests_per_account_hour"] += canary["canary_requests_per_account_hour_by_operation"][CALLER_IDENTITY] + canary["checks_requests_per_account_hour"]
    if prometheus_cost is not None:
        result["prometheus"] = prometheus_cost
    return result


def summarize(accounts, cold, cold_stats, warm, warm_stats, scraper, after, lookup_requests_per_account=0.0) -> dict[str, Any]:
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
    cold_total = posture_total(cold_stats)
    warm_total = posture_total(warm_stats)
    everything = scraper.samples["plain"] + scraper.samples["gzip"]
    hourly = requests_per_account_hour(warm_total / accounts, lookup_requests_per_account)
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
        "requests_by_operation": {op: n for op, n in cold_stats["requests"].items() if not op.startswith("sqs:")},
        "warm_requests_by_operation": {op: n for op, n in warm_stats["requests"].items() if not op.startswith("sqs:")},
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
