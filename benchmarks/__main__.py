"""`python -m benchmarks`: the exporter at organization scale against a fast fake AWS.

For each account count: a full posture sweep (wall, CPU, requests per account, throttling),
/metrics scraped throughout a second sweep (median, p99, size plain and gzip), one
LookupEvents poll cycle over every account without and with new root events (wall, CPU,
requests, throttling, the most requests in any one-second window per account and region),
the delay from an EventBridge event put on SQS to /metrics, the exporter's peak memory and
its AWS requests per account per hour at the default settings; the proof-of-sight canary
(a round's wall and CPU, its requests per account-hour, the time to prove new accounts
through LookupEvents and EventBridge->SQS) and one pass of the configuration checks; the real Prometheus
scraping the exporter's steady state (head series, samples and duration per scrape,
Prometheus's own memory, series per account);
then a sequential boto3 baseline at --baseline-accounts, extrapolated linearly to every
count, and --shards exporter processes splitting the largest organization. See
docs/performance.md.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

from .prometheus_cost import PrometheusOptions
from .run import CALLER_IDENTITY, CANARY_LOOKUP, LOOKUP_EVENTS, measure, measure_baseline, measure_shards


def _counts(text: str) -> list[int]:
    try:
        values = [int(part.replace("_", "")) for part in text.split(",") if part.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated account counts, got {text!r}") from None
    if not values or min(values) < 2:
        raise argparse.ArgumentTypeError("account counts must be at least 2 (the management account and one member)")
    return values


def _positive(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = 0.0
    if not value > 0:
        raise argparse.ArgumentTypeError(f"expected a positive number of seconds, got {text!r}")
    return value


def _scrapes(text: str) -> int:
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"expected a whole number of scrapes, at least 1, got {text!r}")
    return int(text)


def _fmt(value: float, digits: int = 1) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    return f"{value:,.{digits}f}"


def table(results: dict) -> str:
    rows = [
        ("accounts", lambda r: f"{r['accounts']:,}"),
        ("collected / failed", lambda r: f"{r['accounts_collected']:,} / {r['accounts_failed']}"),
        ("sweep_seconds", lambda r: _fmt(r["sweep_seconds"], 2)),
        ("sweep_cpu_seconds", lambda r: _fmt(r["sweep_cpu_seconds"], 2)),
        ("warm sweep seconds (cpu)", lambda r: f"{_fmt(r['warm_sweep_seconds'], 2)} ({_fmt(r['warm_sweep_cpu_seconds'], 2)})"),
        ("baseline_sweep_seconds", lambda r: _fmt(r["baseline_sweep_seconds"], 1) + (" (extrapolated)" if r["baseline_extrapolated"] else "")),
        ("speed-up vs baseline", lambda r: _fmt(r["speedup_vs_baseline"], 1) + "x"),
        ("requests per account (cold / warm)", lambda r: f"{_fmt(r['requests_per_account'], 2)} / {_fmt(r['warm_requests_per_account'], 2)}"),
        ("baseline requests per account", lambda r: _fmt(r["baseline_requests_per_account"], 2)),
        ("throttled requests", lambda r: str(r["throttled_requests"])),
        ("scrapes during sweep", lambda r: str(r["scrapes_during_sweep"])),
        ("scrape_median_ms", lambda r: _fmt(r["scrape_median_ms"], 2)),
        ("scrape_p99_ms", lambda r: _fmt(r["scrape_p99_ms"], 2)),
        ("scrape median plain / gzip ms", lambda r: f"{_fmt(r['scrape_plain_median_ms'], 2)} / {_fmt(r['scrape_gzip_median_ms'], 2)}"),
        ("scrape right after / 3 s after a sweep ms", lambda r: f"{_fmt(r['scrape_right_after_sweep_ms'], 1)} / {_fmt(r['scrape_3s_after_sweep_ms'], 1)}"),
        ("/metrics KiB plain / gzip", lambda r: f"{_fmt(r['metrics_bytes_plain'] / 1024, 0)} / {_fmt(r['metrics_bytes_gzip'] / 1024, 0)}"),
        ("peak_rss_mb", lambda r: _fmt(r["peak_rss_mb"], 1)),
        ("activity_poll_seconds (cpu), no events", lambda r: f"{_fmt(r['activity_poll_seconds'], 2)} ({_fmt(r['activity_poll_cpu_seconds'], 2)})"),
        ("activity_poll_events_seconds (cpu)", lambda r: f"{_fmt(r['activity_poll_events_seconds'], 2)} ({_fmt(r['activity_poll_events_cpu_seconds'], 2)})"),
        ("LookupEvents requests per account", lambda r: _fmt(r["lookup_requests_per_account"], 2)),
        ("LookupEvents throttled", lambda r: str(r["lookup_throttled_requests"])),
        ("lookup_max_per_second (account+region)", lambda r: str(r["lookup_max_per_second"])),
        ("root logins counted from one poll", lambda r: f"{r['lookup_logins_counted']:,.0f}"),
        ("sqs_to_metrics_ms median / max", lambda r: f"{_fmt(r['sqs_to_metrics_ms'], 1)} / {_fmt(r['sqs_to_metrics_max_ms'], 1)}"),
        ("canary round seconds (cpu)", lambda r: f"{_fmt(r['canary_round_seconds'], 2)} ({_fmt(r['canary_round_cpu_seconds'], 2)})"),
        ("canary GetCallerIdentity per account / failed", lambda r: f"{_fmt(r['canary_paths'] / r['canary_accounts'], 2)} / {r['canary_failed']}"),
        ("new accounts: first round + lookup pass s", lambda r: f"{_fmt(r['canary_first_round_seconds'], 2)} + {_fmt(r['canary_first_lookup_pass_seconds'], 2)}"),
        ("new accounts proven: median / max / all s", lambda r: f"{_fmt(r['canary_prove_account_median_seconds'], 1)} / {_fmt(r['canary_prove_account_max_seconds'], 1)} / {_fmt(r['canary_prove_all_seconds'], 1)}"),
        ("  CPU until all proven", lambda r: _fmt(r["canary_prove_cpu_seconds"], 2)),
        ("canary requests per account-hour", lambda r: _fmt(r["canary_requests_per_account_hour"], 1)),
        *[
            (f"  {op}", (lambda op: lambda r: _fmt(r["canary_requests_per_account_hour_by_operation"][op], 1))(op))
            for op in (CALLER_IDENTITY, LOOKUP_EVENTS + " (" + CANARY_LOOKUP + ")", "sqs (EventBridge canaries)")
        ],
        ("checks pass seconds (cpu) / problems", lambda r: f"{_fmt(r['checks_pass_seconds'], 2)} ({_fmt(r['checks_pass_cpu_seconds'], 2)}) / {r['checks_problems']}"),
        ("checks requests per account-hour", lambda r: _fmt(r["checks_requests_per_account_hour"], 1)),
        ("requests_per_account_hour", lambda r: _fmt(r["requests_per_account_hour"], 1)),
        ("  of which LookupEvents", lambda r: _fmt(r["lookup_requests_per_account_hour"], 1)),
        ("machine load average (1 min)", lambda r: _fmt(r["load_average"], 2)),
    ]
    per_n = results["results"]
    if all("prometheus" in r for r in per_n):
        rows += [
            ("Prometheus: head series", lambda r: f"{r['prometheus']['head_series']:,.0f}"),
            ("Prometheus: samples per scrape", lambda r: f"{r['prometheus']['samples_per_scrape']:,.0f}"),
            ("Prometheus: scrape seconds median / max", lambda r: f"{_fmt(r['prometheus']['scrape_duration_median_seconds'], 3)} / {_fmt(r['prometheus']['scrape_duration_max_seconds'], 3)}"),
            ("Prometheus: /metrics MB plain / gzip", lambda r: f"{_fmt(r['prometheus']['metrics_bytes_plain'] / 1e6, 1)} / {_fmt(r['prometheus']['metrics_bytes_gzip'] / 1e6, 2)}"),
            ("Prometheus: RSS MB after scrapes (peak)", lambda r: f"{_fmt(r['prometheus']['rss_bytes'] / 1e6, 0)} ({_fmt(r['prometheus']['rss_peak_bytes'] / 1e6, 0)}) after {r['prometheus']['scrapes']}"),
            ("series per account / median member", lambda r: f"{_fmt(r['prometheus']['series_per_account'], 1)} / {_fmt(r['prometheus']['series_per_member_median'], 0)}"),
        ]
    width = max(len(name) for name, _ in rows)
    cols = [max(14, max(len(fn(r)) for name, fn in rows) + 2) for r in per_n]
    lines = [f"{'':<{width}}" + "".join(f"{'N=' + format(r['accounts'], ','):>{c}}" for r, c in zip(per_n, cols))]
    for name, fn in rows[1:]:
        lines.append(f"{name:<{width}}" + "".join(f"{fn(r):>{c}}" for r, c in zip(per_n, cols)))
    b = results["baseline"]
    lines.append("")
    lines.append(
        f"baseline (sequential boto3) at N={b['accounts']:,}: {b['wall']:.1f} s wall, {b['cpu']:.1f} s CPU, "
        f"{b['seconds_per_account'] * 1000:.0f} ms per account; larger N extrapolated linearly"
    )
    for s in results.get("shards", []):
        lines.append(
            f"{s['shard_count']} shards (one process each) at N={s['accounts']:,}: accounts per shard {s['accounts_per_shard']}, "
            f"covered all={s['all_accounts_covered']}, overlap={s['accounts_in_two_shards']}, "
            f"shard sweeps {[round(x, 2) for x in s['shard_sweep_seconds']]} s, together {s['sweep_seconds']:.2f} s "
            f"(single process {s['single_process_sweep_seconds']:.2f} s, {s['speedup_vs_single_process']:.2f}x), "
            f"peak RSS {[round(x, 1) for x in s['shard_peak_rss_mb']]} MB"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__.splitlines()[0])
    parser.add_argument("--accounts", type=_counts, default=[100, 1000, 10000], help="comma-separated account counts (default 100,1000,10000)")
    parser.add_argument("--latency", type=float, default=0.05, help="fake AWS latency per request in seconds (default 0.05)")
    parser.add_argument("--baseline-accounts", type=int, default=100, help="accounts for the sequential baseline (default 100)")
    parser.add_argument("--shards", type=int, default=2, help="shard processes for the scale-out run at the largest count (0: skip)")
    parser.add_argument("--no-prometheus", action="store_true", help="skip the real Prometheus scraping the exporter")
    parser.add_argument("--prometheus-scrape-interval", type=_positive, default=10.0, help="Prometheus's scrape interval in seconds (default 10)")
    parser.add_argument("--prometheus-scrapes", type=_scrapes, default=9, help="scrapes before Prometheus's memory and head are read (default 9: 90 s at 10 s)")
    parser.add_argument("--json", type=Path, default=Path("benchmark-results.json"), help="where to write the results (default benchmark-results.json)")
    args = parser.parse_args(argv)

    prometheus = None if args.no_prometheus else PrometheusOptions(args.prometheus_scrape_interval, args.prometheus_scrapes)
    started = time.monotonic()
    results: dict = {
        "started_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "latency_seconds": args.latency,
        "machine": {"python": platform.python_version(), "cpus": os.cpu_count(), "platform": platform.platform(), "load_average": os.getloadavg()},
        "results": [],
    }
    print(f"baseline: sequential boto3 at N={args.baseline_accounts} ...", file=sys.stderr, flush=True)
    baseline = measure_baseline(args.baseline_accounts, args.latency)
    baseline["seconds_per_account"] = baseline["wall"] / baseline["accounts"]
    results["baseline"] = baseline
    for n in args.accounts:
        print(f"exporter at N={n} ...", file=sys.stderr, flush=True)
        r = measure(n, args.latency, prometheus=prometheus)
        r["baseline_extrapolated"] = n != baseline["accounts"]
        r["baseline_sweep_seconds"] = baseline["seconds_per_account"] * n
        r["baseline_requests_per_account"] = baseline["requests_per_account"]
        r["speedup_vs_baseline"] = r["baseline_sweep_seconds"] / r["sweep_seconds"]
        results["results"].append(r)
    if args.shards > 1:
        n = max(args.accounts)
        print(f"{args.shards} shards at N={n} ...", file=sys.stderr, flush=True)
        s = measure_shards(n, args.latency, args.shards)
        single = next(r for r in results["results"] if r["accounts"] == n)
        s["single_process_sweep_seconds"] = single["sweep_seconds"]
        s["speedup_vs_single_process"] = single["sweep_seconds"] / s["sweep_seconds"]
        s["baseline_sweep_seconds"] = baseline["seconds_per_account"] * n
        s["speedup_vs_baseline"] = s["baseline_sweep_seconds"] / s["sweep_seconds"]
        results["shards"] = [s]
    results["duration_seconds"] = time.monotonic() - started
    args.json.write_text(json.dumps(results, indent=2) + "\n")
    print(table(results))
    print(f"\nwrote {args.json} in {results['duration_seconds']:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
