"""Run the sandbox organization as its own process.

    python -m exporter.sandbox [--scenario FILE] [--port N]

Prints one JSON line once moto is listening and seeded (the AWS endpoint, the control URL
for injecting root activity, the two SQS queue URLs), then serves until SIGTERM/SIGINT.
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
import threading

from exporter.sandbox.scenario import ScenarioError, load_scenario
from exporter.sandbox.control import ControlServer
from exporter.sandbox.server import Sandbox


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m exporter.sandbox")
    parser.add_argument("--scenario", help="scenario YAML file (default: the built-in scenario)")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    args = parser.parse_args(argv)
    try:
        scenario = load_scenario(args.scenario)
    except ScenarioError as exc:
        print(f"sandbox: {exc}", file=sys.stderr)
        return 2
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    sandbox = Sandbox(scenario, host=args.host, port=args.port).start()
    control = ControlServer(sandbox, host=args.host).start()
    print(
        json.dumps(
            {
                "endpoint_url": sandbox.endpoint_url,
                "region": sandbox.region,
                "control_url": control.url,
                "events_queue_url": sandbox.events_queue_url,
                "trail_queue_url": sandbox.trail_queue_url,
                "accounts": len(scenario.all_accounts),
            }
        ),
        flush=True,
    )
    try:
        stop.wait()
    finally:
        control.stop()
        sandbox.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
