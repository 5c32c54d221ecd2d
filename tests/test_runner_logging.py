"""A collector failing the same way on every pass logs one warning, not one per pass (issue 22)."""

from __future__ import annotations

import logging

import pytest

from exporter.engine.runner import CollectorRunner
from exporter.engine.state import CollectorStatus, ExporterState


async def _fail(error: Exception) -> None:
    raise error


async def _succeed() -> str:
    return "collected"


async def test_a_repeated_failure_is_a_warning_once_then_debug_until_it_changes_or_recovers(caplog: pytest.LogCaptureFixture) -> None:
    runner = CollectorRunner(ExporterState(600))
    caplog.set_level(logging.DEBUG, logger="exporter.engine.runner")
    previous: CollectorStatus | None = None
    seen: list[tuple[str, str, str | None]] = []
    # Three passes time out, two fail on a bad answer, one succeeds, one times out again.
    for error in (TimeoutError(), TimeoutError(), TimeoutError(), ValueError("bad"), ValueError("bad"), None, TimeoutError()):
        caplog.clear()
        work = _succeed if error is None else (lambda error=error: _fail(error))
        outcome = await runner.run("210000000009", "posture", work, previous=previous, timeout=5, failed="posture collection failed")
        previous = outcome.status
        (record,) = [r for r in caplog.records if r.name == "exporter.engine.runner"] or [None]
        seen.append((record.levelname, record.getMessage(), getattr(record, "reason", None)) if record else ("-", "-", None))
    assert seen == [
        ("WARNING", "posture collection failed", "timeout"),
        ("DEBUG", "posture collection failed", "timeout"),
        ("DEBUG", "posture collection failed", "timeout"),
        ("WARNING", "posture collection failed", "invalid_response"),
        ("DEBUG", "posture collection failed", "invalid_response"),
        ("INFO", "collector recovered", None),
        ("WARNING", "posture collection failed", "timeout"),
    ]
    # Every failure is still counted, whatever its log level.
    assert runner.state.collector_errors[("210000000009", "posture", "timeout")] == 4
