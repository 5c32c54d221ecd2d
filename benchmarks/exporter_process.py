"""The exporter under measurement, in its own process, driven over stdin/stdout.

It is assembled from the exporter's own parts (settings, state, exposition, HTTP server,
AWS access, posture sweeper), exactly as `exporter.app.Exporter` wires them, except that
sweeps run when the driver says `sweep` instead of on the timer, so each one can be timed.
Every answer is one JSON line:

    -> (start)        {"port": 40123}
    -> sweep          {"wall": 6.1, "cpu": 4.3, "accounts": 1000, "failed": 0, "peak_rss_mb": 80.1}
    -> quit           (exits)

Settings come from the environment (`AWS_ROOT_EXPORTER_*`), as in production.
"""

from __future__ import annotations

import asyncio
import json
import resource
import sys
import time

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
    finally:
        server.stop()


if __name__ == "__main__":
    asyncio.run(main())
