"""The exporter under measurement, in its own process, driven over stdin/stdout.

It is assembled from the exporter's own parts (settings, state, exposition, HTTP server,
AWS access, posture sweeper), exactly as `exporter.app.Exporter` wires them, except that
sweeps run when the driver says `sweep` instead of on the timer, so each one can be timed.
Every answer is one JSON line:

    -> (start)        {"port": 40123}
    -> sweep          {"wall": 6.1, "cpu": 4.3, "accounts": 1000, "failed": 0, "peak_rss_mb": 80.1}
    -> poll           {"wall": 1.2, "cpu": 0.8, "accounts": 1000, "failed": 0}
                      (one `ActivityService.poll_lookup_events()` pass, after a sweep)
    -> canary         {"wall": 1.9, "cpu": 1.2, "accounts": 1000, "paths": 1000, "failed": 0}
                      (one `CanaryService.round()`: a GetCallerIdentity per account and
                      monitored region)
    -> prove          {"round_wall": 2.0, "round_cpu": 1.4, "poll_wall": 20.1, "cpu": 9.8,
                       "proven_after": 21.3, "account_seconds": [...], "by_source": {...},
                       "states": {...}}
                      (for accounts the canary has not tried yet: one round, then at once
                      one LookupEvents pass, while the SQS loop (if started) takes the
                      EventBridge canaries; then waits until every account reads proven on
                      every configured source or `prove_deadline` passes. `account_seconds`:
                      per account, from its first canary attempt until its last path read
                      proven; `proven_after`: from the round's start until all did)
    -> coverage       {"states": {"lookup_events": {"proven": 1000}, ...}, "problems": 0}
    -> checks         {"wall": 3.1, "cpu": 2.0, "problems": 0}
                      (one `MonitoringChecks.check()` pass)
    -> sqs            {"started": true}
                      (the EventBridge SQS loop from now on, in the background, as
                      `ActivityService.run` runs it for `eventbridge_queue_url`)
    -> run            {"started": true}
                      (from now on the exporter runs as `exporter.app.Exporter` does: the
                      posture sweeper on its timer, `ActivityService.run` (LookupEvents
                      timer, SQS loop), the canaries and the configuration checks, each
                      under `supervise`; for the soak run)
    -> stats          {"tasks": 12, "rss_mb": 80.3, "fds": 40, "sockets": 33, "threads": 3,
                       "sweeps": 7, "last_sweep_seconds": 5.2}
                      (asyncio tasks, resident set from /proc, open file descriptors, how
                      many of them are sockets, Python threads, sweeps completed by `run`)
    -> quit           (exits)

The LookupEvents timer does not run (the driver says `poll`), nor does the SQS loop before
`sqs`: each SQS receive marks the state changed, and the sweeps and scrapes are measured
without that. Nor do the canary and the configuration checks before `run` (the driver
says `canary`, `prove`, `checks`): they are loops apart from the sweep, measured apart.
Not wired: the reload sections and SIGHUP, the web config file, the vanished-accounts
watch (exporter.engine.vanished), which the benchmark does not exercise.

Settings come from the environment (`AWS_ROOT_EXPORTER_*`), as in production.
"""

from __future__ import annotations

import asyncio
import json
import os
import resource
import sys
import threading
import time

from datetime import datetime, timezone

from exporter.engine.activity import EVENTBRIDGE, LOOKUP, ActivityService
from exporter.engine.canary import CanaryService, canary_accounts, canary_paths
from exporter.engine.monitoring_checks import MonitoringChecks
from exporter.monitoring.coverage import PROVEN, Coverage, configured_sources
from exporter.metrics.monitoring import monitoring_sections
from exporter.metrics.tamper import tamper_section
from exporter.activity.store import EventStore
from exporter.app import make_aws, supervise
from exporter.web.http import MetricsServer
from exporter.logs import setup_logging
from exporter.metrics.activity import activity_sections
from exporter.metrics.exposition import Exposition
from exporter.config.settings import load_settings
from exporter.engine.state import ExporterState
from exporter.engine.sweep import PostureSweeper


def _say(value: dict) -> None:
    sys.stdout.write(json.dumps(value) + "\n")
    sys.stdout.flush()


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB


def _rss_mb() -> float:
    """The current resident set (VmRSS), not the peak."""
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024  # KiB
    return float("nan")


def _fds() -> tuple[int, int]:
    """Open file descriptors, and how many of them are sockets."""
    fds = sockets = 0
    for name in os.listdir("/proc/self/fd"):
        try:
            target = os.readlink(f"/proc/self/fd/{name}")
        except OSError:
            continue  # closed meanwhile (the listdir's own descriptor)
        fds += 1
        sockets += target.startswith("socket:")
    return fds, sockets


class ProofClock:
    """When each canary path was first tried and first proven on each source (wall clock),
    noted from the calls `CanaryService` and `ActivityService` make on `Coverage`."""

    def __init__(self, coverage: Coverage) -> None:
        self.coverage = coverage
        self.tried: dict[tuple[str, str], float] = {}
        self.proven: dict[tuple[str, str, str], float] = {}
        attempted, seen = coverage.attempted, coverage.seen

        def noted_attempt(account_id: str, region: str, now: float) -> None:
            self.tried.setdefault((account_id, region), now)
            attempted(account_id, region, now)

        def noted_seen(account_id: str, region: str, source: str, event_id: str, event_time: float, arrival: float) -> bool:
            # A canary record made before the first attempt (the exporter's own start-up
            # GetCallerIdentity in its own account) proves nothing about this measurement.
            if (account_id, region) in self.tried:
                self.proven.setdefault((account_id, region, source), arrival)
            return seen(account_id, region, source, event_id, event_time, arrival)

        coverage.attempted = noted_attempt  # type: ignore[method-assign]
        coverage.seen = noted_seen  # type: ignore[method-assign]

    def states(self, paths: list[tuple[str, str]]) -> tuple[dict[str, dict[str, int]], int]:
        counts, problems = self.coverage.evaluate(paths, time.time())
        states: dict[str, dict[str, int]] = {}
        for (source, _region, state), n in counts.items():
            states.setdefault(source, {})
            states[source][state] = states[source].get(state, 0) + n
        return states, len(problems)

    def account_seconds(self, paths: list[tuple[str, str]]) -> tuple[list[float], dict[str, float]]:
        """Per account, first attempt to its last source's first canary; and per source the slowest path."""
        per_account: dict[str, float] = {}
        by_source: dict[str, float] = {}
        for account_id, region in paths:
            tried = self.tried[(account_id, region)]
            for source in self.coverage.sources:
                took = self.proven[(account_id, region, source)] - tried
                per_account[account_id] = max(per_account.get(account_id, 0.0), took)
                by_source[source] = max(by_source.get(source, 0.0), took)
        return sorted(per_account.values()), by_source


def _process_stats(sweeps: dict) -> dict:
    fds, sockets = _fds()
    return {
        "tasks": len(asyncio.all_tasks()),
        "rss_mb": _rss_mb(),
        "peak_rss_mb": _peak_rss_mb(),
        "fds": fds,
        "sockets": sockets,
        "threads": threading.active_count(),
        **sweeps,
    }


async def main() -> None:
    settings = load_settings(None, {"listen_address": "127.0.0.1:0"})
    setup_logging(settings.log_level, settings.log_format.value)  # as `serve` does; to stderr
    state = ExporterState(settings.posture_interval_seconds)
    exposition = Exposition(state)
    coverage = (
        Coverage(configured_sources(settings), settings.canary_bounds_seconds, settings.canary_interval_seconds, settings.role_session_name)
        if settings.canary_enabled
        else None
    )
    clock = ProofClock(coverage) if coverage is not None else None
    server = MetricsServer(state, exposition, "127.0.0.1", 0).start()
    loop = asyncio.get_running_loop()
    try:
        async with make_aws(settings, state) as aws:
            sweeper = PostureSweeper(aws, settings, state)
            store = EventStore.open(None, datetime.now(timezone.utc))
            state.sections += [*activity_sections(store), tamper_section(store, state), *monitoring_sections(state, settings, coverage)]
            activity = ActivityService(aws, settings, state, store, coverage)
            canary = CanaryService(aws, settings, state, coverage) if coverage is not None else None
            checks = MonitoringChecks(aws, settings, state)
            background = []
            sweeps = {"sweeps": 0, "last_sweep_seconds": None}
            _say({"port": server.port, "peak_rss_mb": _peak_rss_mb()})
            while True:
                line = (await loop.run_in_executor(None, sys.stdin.readline)).strip()
                if line in ("", "quit"):
                    break
                if line == "sweep":
                    cpu, wall = time.process_time(), time.monotonic()
                    snapshot = await sweeper.sweep()
                    _say(
                        {
                            "wall": time.monotonic() - wall,
                            "cpu": time.process_time() - cpu,
                            "accounts": len(snapshot.accounts),
                            "collected": len(snapshot.posture),
                            "failed": sum(1 for s in snapshot.status.values() if not s.success),
                            "account_ids": [a.account_id for a in snapshot.accounts],
                            "peak_rss_mb": _peak_rss_mb(),
                        }
                    )
                elif line == "sqs" and settings.eventbridge_queue_url:
                    background.append(asyncio.create_task(activity._sqs_loop(settings.eventbridge_queue_url, EVENTBRIDGE)))
                    _say({"started": True})
                elif line == "run":
                    plain_sweep = sweeper.sweep

                    async def counted_sweep():
                        started = time.monotonic()
                        snapshot = await plain_sweep()
                        sweeps["sweeps"] += 1
                        sweeps["last_sweep_seconds"] = time.monotonic() - started
                        return snapshot

                    sweeper.sweep = counted_sweep  # type: ignore[method-assign]
                    background.append(asyncio.create_task(supervise("posture sweeps", sweeper.run)))
                    background.append(asyncio.create_task(supervise("root activity", activity.run)))
                    if settings.monitoring_checks_enabled:
                        background.append(asyncio.create_task(supervise("configuration checks", checks.run)))
                    if canary is not None:
                        background.append(asyncio.create_task(supervise("canaries", canary.run)))
                    _say({"started": True})
                elif line == "canary" and canary is not None:
                    paths = list(canary_paths(state.snapshot, settings))
                    cpu, wall = time.process_time(), time.monotonic()
                    await canary.round()
                    _say(
                        {
                            "wall": time.monotonic() - wall,
                            "cpu": time.process_time() - cpu,
                            "accounts": len(canary_accounts(state.snapshot, settings)),
                            "paths": len(paths),
                            "failed": len(canary._failing),
                        }
                    )
                elif line.startswith("prove") and canary is not None and clock is not None:
                    deadline = float(line.split()[1]) if len(line.split()) > 1 else 600.0
                    paths = [(a.account_id, region) for a, region in canary_paths(state.snapshot, settings)]
                    cpu, wall = time.process_time(), time.monotonic()
                    started = time.time()
                    await canary.round()
                    round_wall, round_cpu = time.monotonic() - wall, time.process_time() - cpu
                    poll_started = time.monotonic()
                    await activity.poll_lookup_events()
                    poll_wall = time.monotonic() - poll_started
                    while True:
                        states, problems = clock.states(paths)
                        if all(by_state.get(PROVEN, 0) == len(paths) for by_state in states.values()) or time.monotonic() - wall > deadline:
                            break
                        await asyncio.sleep(0.05)
                    proven_after = time.time() - started
                    used = time.process_time() - cpu
                    complete = all(by_state.get(PROVEN, 0) == len(paths) for by_state in states.values())
                    account_seconds, by_source = clock.account_seconds(paths) if complete else ([], {})
                    _say(
                        {
                            "round_wall": round_wall,
                            "round_cpu": round_cpu,
                            "poll_wall": poll_wall,
                            "cpu": used,
                            "failed": len(canary._failing),
                            "proven": complete,
                            "proven_after": proven_after,
                            "account_seconds": account_seconds,
                            "by_source": by_source,
                            "states": states,
                            "problems": problems,
                        }
                    )
                elif line == "coverage" and clock is not None:
                    states, problems = clock.states([(a.account_id, region) for a, region in canary_paths(state.snapshot, settings)])
                    _say({"states": states, "problems": problems})
                elif line == "checks":
                    cpu, wall = time.process_time(), time.monotonic()
                    problems = await checks.check()
                    _say({"wall": time.monotonic() - wall, "cpu": time.process_time() - cpu, "problems": len(problems)})
                elif line == "stats":
                    _say(_process_stats(sweeps))
                elif line == "poll":
                    cpu, wall = time.process_time(), time.monotonic()
                    await activity.poll_lookup_events()
                    elapsed, used = time.monotonic() - wall, time.process_time() - cpu
                    statuses = [s for (aid, collector), s in state.live_status.items() if collector == LOOKUP]
                    _say(
                        {
                            "wall": elapsed,
                            "cpu": used,
                            "accounts": len(statuses),
                            "failed": sum(1 for s in statuses if not s.success),
                        }
                    )
            for task in background:
                task.cancel()
    finally:
        server.stop()


if __name__ == "__main__":
    asyncio.run(main())
