"""Soak run: the exporter for a bounded time (default 10 minutes) against the fake AWS with
faults on, checking that nothing leaks and that every root event is counted exactly once.

    python -m benchmarks.soak                       # 10 minutes, 1,000 accounts
    python -m benchmarks.soak --minutes 2 --accounts 100 --json /tmp/soak.json

The fake (`benchmarks/fake_aws.py`) answers a share of requests with throttling, HTTP 500,
a connection reset or a hang; the exporter (`benchmarks/exporter_process.py`, `run`) sweeps
on its timer, polls LookupEvents and long-polls the EventBridge SQS queue as it does in
production. Meanwhile this driver puts root console sign-ins on the queue at a steady rate
(unique event ids), scrapes /metrics every second, and samples the exporter process (RSS,
asyncio tasks, file descriptors, sockets, threads) every `--sample-seconds` (5). At the end it
waits until the queue is empty and compares the sign-ins put on the queue with
`aws_root_console_logins_total`. Criteria (docs/soak.md); the exit status is 1 if one fails:

- events_exactly_once: sign-ins counted == sign-ins injected, and the queue is empty;
- scrapes_all_answered: every scrape answered 200;
- tasks/fds/sockets_bounded: after the first completed sweep, the smallest value sampled in
  the last third of the run (the floor, between sweeps) is at most the floor of the first
  third plus max(5, 10 %): a leak raises the floor, work in progress only the peaks;
- rss_flat: RSS grows by at most 10 % over the second half (least-squares line through the
  second half's samples, its rise over that half relative to its value at the half).
"""

from __future__ import annotations

import argparse
import collections
import http.client
import json
import random
import statistics
import sys
import threading
import time
import uuid
from pathlib import Path
from typing import Any

from benchmarks.fake_aws import FAULT_KINDS, account_ids, add_fault_arguments, fault_config
from benchmarks.run import QUEUE_URL_PATH, ExporterProcess, FakeAwsProcess, percentile
from exporter.sandbox.records import eventbridge_envelope, make_record

DEFAULT_FAULTS = {"throttle": 0.05, "server_error": 0.01, "reset": 0.005, "hang": 0.001, "hang_seconds": 15.0, "seed": 7}
GROWTH_SLACK = 5  # absolute slack for tasks, fds and sockets (and at least 10 % of the first third's max)
RSS_GROWTH_LIMIT = 0.10


def parse_metrics(text: str) -> dict[str, list[tuple[dict[str, str], float]]]:
    """Samples by metric name: [(labels, value)] (the exposition's simple text format)."""
    out: dict[str, list[tuple[dict[str, str], float]]] = collections.defaultdict(list)
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        head, _, value = line.rpartition(" ")
        name, _, rest = head.partition("{")
        labels = {}
        for part in rest.rstrip("}").split('",'):
            if "=" in part:
                key, _, val = part.partition("=")
                labels[key.strip()] = val.strip().strip('"')
        try:
            out[name].append((labels, float(value)))
        except ValueError:
            continue
    return out


def sum_by(samples: list[tuple[dict[str, str], float]], *keys: str) -> dict[str, float]:
    totals: collections.Counter[str] = collections.Counter()
    for labels, value in samples:
        totals["/".join(labels.get(k, "") for k in keys)] += value
    return {k: v for k, v in sorted(totals.items()) if v}


class Scrapes(threading.Thread):
    """GET /metrics every `interval` seconds on one keep-alive connection (reopened on error)."""

    def __init__(self, port: int, interval: float = 1.0) -> None:
        super().__init__(daemon=True)
        self.port, self.interval = port, interval
        self.samples: list[tuple[float, float]] = []  # (seconds since start, milliseconds)
        self.errors: list[tuple[float, str]] = []
        self.stop = threading.Event()
        self.started_at = time.monotonic()

    def run(self) -> None:
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
        next_at = time.monotonic()
        while not self.stop.is_set():
            started = time.perf_counter()
            try:
                conn.request("GET", "/metrics")
                response = conn.getresponse()
                response.read()
                if response.status == 200:
                    self.samples.append((time.monotonic() - self.started_at, (time.perf_counter() - started) * 1000))
                else:
                    self.errors.append((time.monotonic() - self.started_at, f"HTTP {response.status}"))
            except (OSError, http.client.HTTPException) as exc:
                self.errors.append((time.monotonic() - self.started_at, repr(exc)))
                conn.close()
                conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
            next_at += self.interval
            self.stop.wait(max(next_at - time.monotonic(), 0))
        conn.close()


class Injector(threading.Thread):
    """Puts one EventBridge root console sign-in (unique event id) on the queue every 1/rate s."""

    def __init__(self, fake: FakeAwsProcess, members: list[str], rate: float, seed: int) -> None:
        super().__init__(daemon=True)
        self.fake, self.members, self.rate = fake, members, rate
        self.random = random.Random(seed)
        self.injected = 0
        self.errors = 0
        self.stop = threading.Event()

    def run(self) -> None:
        next_at = time.monotonic()
        while not self.stop.is_set():
            record = make_record("console-login", self.random.choice(self.members), event_id=f"soak-{uuid.uuid4()}")
            body = json.dumps(eventbridge_envelope(record))
            try:
                self.fake.sqs_send(body)
                self.injected += 1
            except OSError:
                self.errors += 1  # not sent: not counted as injected
            next_at += 1 / self.rate
            self.stop.wait(max(next_at - time.monotonic(), 0))


def bounded(values: list[float]) -> dict[str, Any]:
    """First, max, last, and whether the floor of the last third stays within the floor of
    the first third plus slack.

    Tasks, descriptors and sockets swing with the work in progress (a sweep holds a task per
    account, the pools open connections for it), so a single sample says little; what a
    leak raises is the floor, the count between sweeps. `values` are the samples after the
    warm-up (the first completed sweep)."""
    third = max(len(values) // 3, 1)
    first_floor = min(values[:third])
    last_floor = min(values[-third:])
    limit = first_floor + max(GROWTH_SLACK, 0.10 * first_floor)
    return {
        "first": values[0],
        "max": max(values),
        "last": values[-1],
        "first_third_floor": first_floor,
        "last_third_floor": last_floor,
        "limit": limit,
        "ok": last_floor <= limit,
    }


def rss_trend(times: list[float], rss: list[float]) -> dict[str, Any]:
    """Least-squares line through the second half's samples: its rise over that half."""
    half = len(rss) // 2
    t, r = times[half:], rss[half:]
    if len(t) < 2 or t[-1] == t[0]:
        return {"first_mb": rss[0], "last_mb": rss[-1], "second_half_slope_mb_per_min": 0.0, "second_half_growth": 0.0, "ok": True}
    slope = statistics.linear_regression(t, r).slope  # MB per second
    start_fit = statistics.fmean(r) - slope * (statistics.fmean(t) - t[0])
    growth = slope * (t[-1] - t[0]) / start_fit
    return {
        "first_mb": rss[0],
        "last_mb": rss[-1],
        "max_mb": max(rss),
        "second_half_slope_mb_per_min": slope * 60,
        "second_half_growth": growth,
        "ok": growth <= RSS_GROWTH_LIMIT,
    }


def soak(args: argparse.Namespace) -> dict[str, Any]:
    faults = fault_config(args)
    fake = FakeAwsProcess(args.accounts, args.latency, faults)
    exporter = None
    scrapes = injector = None
    try:
        exporter = ExporterProcess(
            fake.url,
            log_path=args.exporter_log,
            log_format="json",
            eventbridge_queue_url=fake.url + QUEUE_URL_PATH,
            sqs_wait_seconds=args.sqs_wait,
            posture_interval_seconds=args.sweep_interval,
            lookup_events_interval_seconds=args.lookup_interval,
            account_timeout_seconds=args.account_timeout,
        )
        members = account_ids(args.accounts)[1:] or account_ids(args.accounts)
        started = time.monotonic()
        exporter.command("run")
        scrapes = Scrapes(exporter.port)
        injector = Injector(fake, members, args.events_per_second, args.seed)
        scrapes.start()
        injector.start()
        samples: list[dict[str, Any]] = []
        duration = args.minutes * 60
        next_sample = started

        def take_sample(at: float) -> dict[str, Any]:
            """The exporter process's figures, with the fake's open connections and queue."""
            fake_stats = fake.stats()
            return {**exporter.command("stats"), "t": at, "fake_connections": fake_stats["connections"], "queue": fake_stats["queue"]}

        while True:
            now = time.monotonic()
            if now >= next_sample:
                sample = take_sample(now - started)
                samples.append(sample)
                if args.verbose:
                    print(json.dumps(sample), file=sys.stderr, flush=True)
                next_sample += args.sample_seconds
            if now - started >= duration:
                break
            time.sleep(max(0.0, min(next_sample, started + duration) - time.monotonic()))
        injector.stop.set()
        injector.join()
        scrapes.stop.set()
        scrapes.join()
        run_seconds = time.monotonic() - started
        samples.append(take_sample(run_seconds))
        # Drain: every sign-in put on the queue is counted and deleted (a message whose delete
        # failed comes back after the 30 s visibility timeout, as a duplicate).
        conn = http.client.HTTPConnection("127.0.0.1", exporter.port, timeout=30)
        drain_started = time.monotonic()
        while True:
            conn.request("GET", "/metrics")
            metrics = parse_metrics(conn.getresponse().read().decode())
            counted = sum(v for _, v in metrics.get("aws_root_console_logins_total", []))
            queue = fake.stats()["queue"]
            if (counted >= injector.injected and queue == 0) or time.monotonic() - drain_started > args.drain_seconds:
                break
            time.sleep(0.5)
        drain_seconds = time.monotonic() - drain_started
        time.sleep(2)  # anything counted twice would show now
        conn.request("GET", "/metrics")
        metrics = parse_metrics(conn.getresponse().read().decode())
        conn.close()
        counted = sum(v for _, v in metrics.get("aws_root_console_logins_total", []))
        after = exporter.command("stats")
        fake_stats = fake.stats()
    finally:
        for thread in (injector, scrapes):
            if thread is not None:
                thread.stop.set()
        if exporter is not None:
            exporter.stop()
        fake.stop()
    return summarize(args, faults, samples, scrapes, injector, counted, metrics, fake_stats, after, run_seconds, drain_seconds)


def summarize(args, faults, samples, scrapes, injector, counted, metrics, fake_stats, after, run_seconds, drain_seconds) -> dict[str, Any]:
    per_minute = []
    minutes = collections.defaultdict(list)
    for t, ms in scrapes.samples:
        minutes[int(t // 60)].append(ms)
    for minute in sorted(minutes):
        values = minutes[minute]
        per_minute.append({"minute": minute + 1, "scrapes": len(values), "median_ms": statistics.median(values), "p99_ms": percentile(values, 0.99), "max_ms": max(values)})
    everything = [ms for _, ms in scrapes.samples]
    rss_minutes = collections.defaultdict(list)
    for sample in samples:
        rss_minutes[int(sample["t"] // 60)].append(sample["rss_mb"])
    for row in per_minute:
        values = rss_minutes.get(row["minute"] - 1, [])
        row["rss_min_mb"] = min(values) if values else float("nan")
        row["rss_max_mb"] = max(values) if values else float("nan")
    times = [s["t"] for s in samples]
    warm = [s for s in samples if s["sweeps"] > 0] or samples  # after the first completed sweep
    growth = {key: bounded([s[key] for s in warm]) for key in ("tasks", "fds", "sockets", "threads")}
    rss = rss_trend(times, [s["rss_mb"] for s in samples])
    checks = {
        "events_exactly_once": counted == injector.injected and fake_stats["queue"] == 0 and injector.injected > 0,
        "scrapes_all_answered": not scrapes.errors and len(everything) > 0,
        "tasks_bounded": growth["tasks"]["ok"],
        "fds_bounded": growth["fds"]["ok"],
        "sockets_bounded": growth["sockets"]["ok"],
        "rss_flat": rss["ok"],
    }
    return {
        "accounts": args.accounts,
        "minutes": args.minutes,
        "run_seconds": run_seconds,
        "latency": args.latency,
        "settings": {
            "posture_interval_seconds": args.sweep_interval,
            "lookup_events_interval_seconds": args.lookup_interval,
            "account_timeout_seconds": args.account_timeout,
            "sqs_wait_seconds": args.sqs_wait,
            "events_per_second": args.events_per_second,
        },
        "fault_shares": {k: faults[k] for k in FAULT_KINDS},
        "hang_seconds": faults["hang_seconds"],
        "checks": checks,
        "ok": all(checks.values()),
        "events_injected": injector.injected,
        "events_counted": counted,
        "events_send_errors": injector.errors,
        "events_duplicate": sum_by(metrics.get("aws_root_exporter_events_duplicate_total", []), "source"),
        "drain_seconds": drain_seconds,
        "queue_left": fake_stats["queue"],
        "sweeps_completed": after["sweeps"],
        "last_sweep_seconds": after["last_sweep_seconds"],
        "rss": rss,
        "growth": growth,
        "after_drain": {k: after[k] for k in ("tasks", "fds", "sockets", "threads", "rss_mb")},
        "fake_connections_max": fake_stats["max_connections"],
        "scrapes": len(everything),
        "scrape_errors": len(scrapes.errors),
        "scrape_error_samples": scrapes.errors[:10],
        "scrape_median_ms": statistics.median(everything) if everything else float("nan"),
        "scrape_p99_ms": percentile(everything, 0.99),
        "scrape_max_ms": max(everything) if everything else float("nan"),
        "scrape_per_minute": per_minute,
        "faults_injected": fake_stats["faults_total"],
        "faults_injected_by_operation": fake_stats["faults"],
        "aws_requests": sum(fake_stats["requests"].values()),
        "collector_errors": sum_by(metrics.get("aws_root_exporter_collector_errors_total", []), "collector", "reason"),
        "api_errors": sum_by(metrics.get("aws_root_exporter_aws_request_errors_total", []), "operation", "reason"),
        "samples": samples,
    }


def report(result: dict[str, Any]) -> str:
    g = result["growth"]
    lines = [
        f"soak: {result['accounts']} accounts, {result['run_seconds'] / 60:.1f} min, latency {result['latency']} s, "
        f"faults {result['fault_shares']} (hang {result['hang_seconds']} s)",
        f"{'sweeps completed':32} {result['sweeps_completed']} (last {result['last_sweep_seconds'] or 0:.1f} s)",
        f"{'AWS requests':32} {result['aws_requests']}",
        f"{'faults injected':32} {result['faults_injected']}",
        f"{'events injected / counted':32} {result['events_injected']} / {result['events_counted']:.0f} "
        f"(duplicates seen {result['events_duplicate'] or 0}, drained in {result['drain_seconds']:.1f} s, queue left {result['queue_left']})",
        f"{'RSS first / max / last (MB)':32} {result['rss']['first_mb']:.1f} / {result['rss'].get('max_mb', result['rss']['first_mb']):.1f} / {result['rss']['last_mb']:.1f}; "
        f"second half {result['rss']['second_half_slope_mb_per_min']:+.2f} MB/min ({result['rss']['second_half_growth']:+.1%})",
    ]
    for key in ("tasks", "fds", "sockets", "threads"):
        v = g[key]
        lines.append(f"{key + ' first / max / last':32} {v['first']} / {v['max']} / {v['last']} (floor first / last third {v['first_third_floor']} / {v['last_third_floor']}, limit {v['limit']:.0f})")
    lines.append(f"{'scrapes (errors)':32} {result['scrapes']} ({result['scrape_errors']}); median {result['scrape_median_ms']:.1f} ms, p99 {result['scrape_p99_ms']:.1f} ms, max {result['scrape_max_ms']:.1f} ms")
    lines.append("per minute:                  minute  scrapes  median_ms  p99_ms  max_ms  rss_min_mb  rss_max_mb")
    for m in result["scrape_per_minute"]:
        lines.append(
            f"{'':28}{m['minute']:>6}  {m['scrapes']:>7}  {m['median_ms']:>9.1f}  {m['p99_ms']:>6.1f}  {m['max_ms']:>6.1f}"
            f"  {m['rss_min_mb']:>10.1f}  {m['rss_max_mb']:>10.1f}"
        )
    lines.append(f"{'collector errors':32} {result['collector_errors']}")
    lines.append(f"{'API errors':32} {result['api_errors']}")
    lines.append("checks: " + ", ".join(f"{k} {'ok' if v else 'FAILED'}" for k, v in result["checks"].items()))
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.soak", description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--accounts", type=int, default=1000)
    parser.add_argument("--latency", type=float, default=0.05, help="seconds the fake waits per request")
    parser.add_argument("--events-per-second", type=float, default=2.0, help="root sign-ins put on the SQS queue per second")
    parser.add_argument("--sweep-interval", type=float, default=30.0, help="posture_interval_seconds (at least 10)")
    parser.add_argument("--lookup-interval", type=float, default=30.0, help="lookup_events_interval_seconds (at least 5)")
    parser.add_argument("--account-timeout", type=float, default=10.0, help="account_timeout_seconds (a hang longer than this is a timeout)")
    parser.add_argument("--sqs-wait", type=int, default=2, help="sqs_wait_seconds")
    parser.add_argument("--sample-seconds", type=float, default=5.0, help="seconds between samples of the exporter process")
    parser.add_argument("--drain-seconds", type=float, default=150.0, help="longest wait for the queue to drain at the end")
    parser.add_argument("--json", type=Path, default=Path("soak-results.json"))
    parser.add_argument("--exporter-log", type=Path, help="keep the exporter's log (JSON lines, warnings and up) in this file")
    parser.add_argument("--verbose", action="store_true", help="print every sample to stderr")
    add_fault_arguments(parser, DEFAULT_FAULTS)
    args = parser.parse_args(argv)
    result = soak(args)
    args.json.write_text(json.dumps(result, indent=2) + "\n")
    print(report(result))
    print(f"written to {args.json}")
    return 0 if result["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
