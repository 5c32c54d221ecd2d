"""Prometheus scraping during shutdown: every scrape either gets a complete exposition or
is refused at once; none hangs, none gets a 5xx or a truncated body; the state file is
written on the way out."""

from __future__ import annotations

import asyncio
import contextlib
import json
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

from exporter.sandbox import Sandbox
from exporter.sandbox.records import make_record

from ..conftest import parse_metrics, report_measurement, running_exporter, sample, sandbox_settings

ACCOUNT = "210000000003"


def _scraper(url: str, stop: threading.Event, results: list) -> None:
    while not stop.is_set():
        started = time.monotonic()
        try:
            with urllib.request.urlopen(url, timeout=3) as response:
                body = response.read().decode()
                families = parse_metrics(body)
                complete = "aws_root_exporter_build_info" in families and body.endswith("\n")
                results.append(("ok", response.status, complete, time.monotonic() - started))
        except urllib.error.HTTPError as exc:
            results.append(("http_error", exc.code, False, time.monotonic() - started))
        except (urllib.error.URLError, ConnectionError, TimeoutError, OSError) as exc:
            reason = getattr(exc, "reason", exc)
            kind = "timeout" if isinstance(reason, TimeoutError) or "timed out" in str(reason) else "refused"
            results.append((kind, 0, False, time.monotonic() - started))
        time.sleep(0.005)


async def test_scrapes_during_shutdown(sandbox: Sandbox, tmp_path: Path) -> None:
    state_file = tmp_path / "state.json"
    settings = sandbox_settings(
        sandbox, include_account_ids=[ACCOUNT], eventbridge_queue_url=sandbox.events_queue_url, sqs_wait_seconds=1,
        state_file=state_file, state_save_interval_seconds=600,
    )
    results: list = []
    stop = threading.Event()
    async with contextlib.AsyncExitStack() as stack:
        exporter = await stack.enter_async_context(running_exporter(settings))
        await exporter.wait_for_sweeps(1)
        sandbox.inject(make_record("console-login", ACCOUNT), lookup=False, s3=False)
        async with asyncio.timeout(20):
            while sample(await exporter.metrics(), "aws_root_console_logins_total", account_id=ACCOUNT, outcome="success", mfa="true", approved="false") != 1.0:
                await asyncio.sleep(0.1)
        threads = [threading.Thread(target=_scraper, args=(exporter.url + "/metrics", stop, results)) for _ in range(4)]
        for thread in threads:
            thread.start()
        await asyncio.sleep(0.5)
        before = len(results)
        stopping = time.monotonic()
    # Leaving the stack cancelled the exporter task: the same path as SIGTERM.
    stopped = time.monotonic() - stopping
    await asyncio.sleep(0.5)
    stop.set()
    for thread in threads:
        thread.join(timeout=10)
    kinds = {r[0] for r in results}
    report_measurement(
        f"scrapes during shutdown: {len(results)} scrapes by 4 scrapers, stop took {stopped * 1000:.0f} ms, "
        f"outcomes {sorted(kinds)}, slowest {max(r[3] for r in results) * 1000:.0f} ms"
    )
    assert before >= 20
    assert kinds <= {"ok", "refused"}, [r for r in results if r[0] not in ("ok", "refused")][:5]
    assert all(r[1] == 200 and r[2] for r in results if r[0] == "ok"), "every answered scrape is complete"
    assert results[-1][0] == "refused", "the port is closed once stopped"
    assert max(r[3] for r in results) < 2.0
    assert stopped < 5.0
    saved = json.loads(state_file.read_text())
    assert [row[-1] for row in saved["counters"]["console_logins"] if row[:4] == [ACCOUNT, "success", "true", "false"]] == [1.0]
