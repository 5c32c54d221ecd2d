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
    -> quit           (exits)

The LookupEvents timer does not run (the driver says `poll`), nor does the SQS loop before
`sqs`: each SQS receive marks the state changed, and the sweeps and scrapes are measured
without that.

Settings come from the environment (`AWS_ROOT_EXPORTER_*`), as in production.
"""

from __future__ import annotations

import asyncio
import json
import resource
import sys
import time

from datetime import datetime, timezone

from exporter.activity.sources import EVENTBRIDGE, LOOKUP, ActivityService
from exporter.activity.store import EventStore
from exporter.app import make_aws
from exporter.http import MetricsServer
from exporter.metrics import Exposition
from exporter.settings import load_settings
from exporter.state import ExporterState
from exporter.sweep import PostureSweeper


def _say(value: dict) -> None:
    sys.stdout.write(json.dumps(value) + "\n")
    sys.stdout.flush()


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB


async def main() -> None:
    settings = load_settings(None, {"listen_address": "127.0.0.1:0"})
    state = ExporterState(settings.posture_interval_seconds)
    exposition = Exposition(state)
    server = MetricsServer(state, exposition, "127.0.0.1", 0).start()
    loop = asyncio.get_running_loop()
    try:
        async with make_aws(settings, state) as aws:
            sweeper = PostureSweeper(aws, settings, state)
            activity = ActivityService(aws, settings, state, EventStore.open(None, datetime.now(timezone.utc)))
            background = []
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
