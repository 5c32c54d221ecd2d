"""The cached exposition: request counters stay live, gzip matches plain, renders happen off the scrape."""

from __future__ import annotations

import gzip
import time

from exporter.accounts import Account
from exporter.metrics import Exposition
from exporter.state import ExporterState, Snapshot


def test_request_counters_are_live_while_the_rest_is_cached() -> None:
    state = ExporterState(600)
    exposition = Exposition(state)
    exposition.render()
    state.api.record("iam:GetAccountSummary", None)
    state.api.record("iam:GetAccountSummary", "throttled")
    text = exposition.render().decode()
    assert 'aws_root_api_requests_total{operation="iam:GetAccountSummary"} 2.0' in text
    assert 'aws_root_api_errors_total{operation="iam:GetAccountSummary",reason="throttled"} 1.0' in text
    # Two gzip members (cached body, live counters) read back as one stream.
    assert gzip.decompress(exposition.render(want_gzip=True)) == exposition.render()


def test_a_published_state_is_rendered_before_the_next_scrape() -> None:
    state = ExporterState(600)
    exposition = Exposition(state)
    exposition.render()  # the first scrape starts the background renderer
    state.publish(Snapshot(accounts=(Account(account_id="123456789012", name="one"),)))
    deadline = time.monotonic() + 5
    while exposition._rendered["snapshot"].key != state.sweeps:
        assert time.monotonic() < deadline, "the new state was not rendered in the background"
        time.sleep(0.05)
    assert b'account_id="123456789012"' in exposition.render()


def test_a_root_event_renders_only_the_activity_section_again() -> None:
    from datetime import UTC, datetime

    from exporter.activity.sources import ActivityService
    from exporter.activity.store import EventStore
    from exporter.sandbox.records import make_record
    from exporter.settings import load_settings

    state = ExporterState(600)
    service = ActivityService(None, load_settings(None, {}), state, EventStore(datetime.now(UTC)))  # type: ignore[arg-type]
    exposition = Exposition(state)
    state.publish(Snapshot(accounts=(Account(account_id="123456789012", name="one"),)))
    before = exposition.render()
    kept = {name: rendered.plain for name, rendered in exposition._rendered.items()}
    service.take(make_record("console-login", "123456789012"), "eventbridge_sqs")
    after = exposition.render()
    assert b'aws_root_console_logins_total{account_id="123456789012",approved="false",mfa="true",outcome="success"} 1.0' in after
    assert b'mfa="true",outcome="success"} 0.0' in before
    assert exposition._rendered["snapshot"].plain is kept["snapshot"]
    assert exposition._rendered["health"].plain is kept["health"]
    assert exposition._rendered["activity"].plain is not kept["activity"]
    assert gzip.decompress(exposition.render(want_gzip=True)) == after
