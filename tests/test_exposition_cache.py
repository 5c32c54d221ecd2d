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
    while exposition._key is None or exposition._key[0] != state.version:
        assert time.monotonic() < deadline, "the new state was not rendered in the background"
        time.sleep(0.05)
    assert b'account_id="123456789012"' in exposition.render()
