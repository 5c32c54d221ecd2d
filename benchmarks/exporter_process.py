"""The exporter under measurement, in its own process, driven over stdin/stdout.

It is assembled from the exporter's own parts (settings, state, exposition, HTTP server,
AWS access, posture sweeper), exactly as `exporter.app.Exporter` wires them, except that
sweeps run when the driver says `sweep` instead of on the timer, so each one can be timed.
Every answer is one JSON line:

    -> (start)        {"port": 40123}
    -> sweep          {"wall": 6.1, "cpu": 4.3, "accounts": 1000, "failed": 0, "peak_rss_mb": 80.1}
    -> poll           {"wall": 1.2, "cpu": 0.8, "accounts": 1000, "failed": 0}
                      (one `ActivityService.poll_lookup_events()` pass, after a sweep)
    -> sqs            {"started": true}
                      (the EventBridge SQS loop from now on, in the background, as
                      `ActivityService.run` runs it for `eventbridge_queue_url`)
    -> run            {"started": true}
                      (from now on the exporter runs as `exporter.app.Exporter` does: the
                      posture sweeper on its timer and `ActivityService.run` (LookupEvents
                      timer, SQS loop), each under `supervise`; for the soak run)
    -> stats          {"tasks": 12, "rss_mb": 80.3, "fds": 40, "sockets": 33, "threads": 3,
                       "sweeps": 7, "last_sweep_seconds": 5.2}
                      (asyncio tasks, resident set from /proc, open file descriptors, how
                      many of them are sockets, Python threads, sweeps completed by `run`)
    -> quit           (exits)

The LookupEvents timer does not run (the driver says `poll`), nor does the SQS loop before
`sqs`: each SQS receive marks the state changed, and the sweeps and scrapes are measured
without that.

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
    server = MetricsServer(state, exposition, "127.0.0.1", 0).start()
    loop = asyncio.get_running_loop()
    try:
        async with make_aws(settings, state) as aws:
            sweeper = PostureSweeper(aws, settings, state)
            store = EventStore.open(None, datetime.now(timezone.utc))
            state.sections += activity_sections(store)
            activity = ActivityService(aws, settings, state, store)
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
                    _say({"started": True})
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
