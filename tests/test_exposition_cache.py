"""The cached exposition: request counters stay live, gzip matches plain, renders happen off the scrape."""

from __future__ import annotations

import dataclasses
import gzip
import json
import time
import types
from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st

from exporter.discovery.accounts import Account
from exporter.metrics.activity import activity_sections
from exporter.metrics.exposition import Exposition
from exporter.engine.state import ExporterState, Section, Snapshot

# The activity service without AWS: these tests feed it records and never poll.
_NO_AWS = types.SimpleNamespace(assume_root_listeners=[])


def test_request_counters_are_live_while_the_rest_is_cached() -> None:
    state = ExporterState(600)
    exposition = Exposition(state)
    exposition.render()
    state.api.record("iam:GetAccountSummary", None)
    state.api.record("iam:GetAccountSummary", "throttled")
    text = exposition.render().decode()
    assert 'aws_root_exporter_aws_requests_total{operation="iam:GetAccountSummary"} 2.0' in text
    assert 'aws_root_exporter_aws_request_errors_total{operation="iam:GetAccountSummary",reason="throttled"} 1.0' in text
    # Two gzip members (cached body, live counters) read back as one stream.
    assert gzip.decompress(exposition.render(want_gzip=True)) == exposition.render()


def test_a_snapshot_published_during_a_scrape_is_in_every_section_or_in_none() -> None:
    """A sweep that publishes between two sections of one scrape: the scrape reads the
    sections again and shows the new sweep throughout, never its count beside the
    previous sweep's accounts."""
    state = ExporterState(600)
    state.publish(Snapshot(accounts=(Account("111111111111", name="one"),)))
    second = Snapshot(accounts=(Account("111111111111", name="one"), Account("222222222222", name="two")))
    exposition = Exposition(state)
    original = exposition._own[0]
    assert original.name == "snapshot"  # the accounts; the sweep count is in `health`, after it

    def accounts_then_a_sweep():  # the sweep publishes right after this section is read
        yield from original.families()
        if state.sweeps == 1:
            state.publish(second)

    exposition._own[0] = Section(original.name, original.key, accounts_then_a_sweep)
    text = exposition.render().decode()
    assert "aws_root_exporter_sweeps_total 2.0" in text
    assert 'account_id="222222222222"' in text


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


def test_a_root_login_renders_only_the_families_it_moved() -> None:
    from datetime import UTC, datetime

    from exporter.engine.activity import ActivityService
    from exporter.activity.store import EventStore
    from exporter.sandbox.records import make_record
    from exporter.config.settings import load_settings

    state = ExporterState(600)
    store = EventStore(datetime.now(UTC))
    service = ActivityService(_NO_AWS, load_settings(None, {}), state, store)  # type: ignore[arg-type]
    state.sections += activity_sections(store)
    exposition = Exposition(state)
    state.publish(Snapshot(accounts=(Account(account_id="123456789012", name="one"),)))
    before = exposition.render()
    kept = {name: rendered.plain for name, rendered in exposition._rendered.items()}
    service.take(make_record("console-login", "123456789012"), "eventbridge_sqs")
    after = exposition.render()
    assert b'aws_root_console_logins_total{account_id="123456789012",approved="false",mfa="true",mfa_kind="totp",outcome="success"} 1.0' in after
    # The account is known (its login count is at 0), but the counter had no series before
    # its first login (issue 16's series budget).
    assert b'aws_root_console_logins_90d{account_id="123456789012"} 0.0' in before
    assert b"aws_root_console_logins_total{" not in before
    assert b'aws_root_console_logins_90d{account_id="123456789012"} 1.0' in after
    assert exposition._rendered["snapshot"].plain is kept["snapshot"]
    assert exposition._rendered["health"].plain is kept["health"]
    assert exposition._rendered["activity:api_calls"].plain is kept["activity:api_calls"]
    assert exposition._rendered["activity:console_logins"].plain is not kept["activity:console_logins"]
    assert gzip.decompress(exposition.render(want_gzip=True)) == after


_FIXTURES = sorted((Path(__file__).parent / "fixtures" / "cloudtrail").glob("*.json"))
_ACCOUNTS = ["111111111111", "222222222222", "333333333333"]


@settings(max_examples=60)
@given(st.lists(st.tuples(
    st.sampled_from(["ingest", "ingest", "ingest", "register", "reject", "publish"]),
    st.sampled_from(_FIXTURES),
    st.sampled_from(_ACCOUNTS),
    st.integers(min_value=-120, max_value=60),  # minutes from the store's start: history or live
    st.integers(min_value=0, max_value=5),  # event id: repeats are duplicates
), max_size=25))
def test_the_sectioned_exposition_always_equals_a_fresh_render(steps) -> None:
    """Whatever happens in whatever order, the cached pieces add up to what a full render writes."""
    from datetime import UTC, datetime, timedelta

    from exporter.activity.classify import classify
    from exporter.engine.activity import ActivityService
    from exporter.activity.store import EventStore
    from exporter.config.settings import load_settings

    start = datetime.now(UTC)
    state = ExporterState(600)
    store = EventStore(start)
    ActivityService(_NO_AWS, load_settings(None, {}), state, store)  # type: ignore[arg-type]
    state.sections += activity_sections(store)
    exposition = Exposition(state)
    fresh = Exposition(state)
    for action, fixture, account, minutes, event in steps:
        if action == "register":
            store.register_accounts([account])
        elif action == "reject":
            store.reject("s3_trail", "malformed_record")
        elif action == "publish":
            state.publish(Snapshot(accounts=tuple(Account(a) for a in _ACCOUNTS[: 1 + event % 3])))
        else:
            verdict = classify(json.loads(fixture.read_text()))
            if verdict is None:
                continue
            when = start + timedelta(minutes=minutes)
            store.ingest(dataclasses.replace(verdict, account_id=account, event_id=f"e-{event}", event_time=when), "eventbridge_sqs", max(when, start))
        fresh._rendered.clear()
        assert exposition.render() == fresh.render()
        assert gzip.decompress(exposition.render(want_gzip=True)) == fresh.render()


def test_name_filter_serves_only_the_named_families() -> None:
    state = ExporterState(600)
    exposition = Exposition(state)
    state.publish(Snapshot(accounts=(Account(account_id="123456789012", name="one"),)))
    state.api.record("iam:GetAccountSummary", None)
    names = {"aws_root_account_info", "aws_root_exporter_aws_requests_total"}
    text = exposition.render(names=names).decode()
    helps = {line.split()[2] for line in text.splitlines() if line.startswith("# HELP")}
    assert helps == names
    assert 'aws_root_exporter_aws_requests_total{operation="iam:GetAccountSummary"} 1.0' in text
    assert gzip.decompress(exposition.render(want_gzip=True, names=names)).decode() == text
    # Unknown names give an empty (valid) exposition; no filter gives everything.
    assert exposition.render(names={"aws_root_no_such_metric"}) == b""
    assert len(exposition.render()) > len(text)


async def test_a_sweep_renders_each_section_once_however_often_it_is_scraped(sandbox) -> None:
    """Scrapes during a sweep are served from the cache: nothing the sweep does before it
    publishes (each account collected, each security contact read) moves a section's key,
    and the publication renders the snapshot section once, ahead of it (off the scrapes), and
    health once. A per-account `state.changed()` would re-render every account's health
    series on every scrape."""
    import asyncio
    import threading
    from collections import Counter

    from exporter.app import make_aws
    from exporter.engine.sweep import PostureSweeper

    from .conftest import sandbox_settings

    settings = sandbox_settings(sandbox)
    state = ExporterState(600)
    exposition = Exposition(state)
    renders: Counter[str] = Counter()
    for i, section in enumerate(exposition._own):
        def counted(section=section):
            renders[section.name] += 1
            return section.families()
        exposition._own[i] = Section(section.name, section.key, counted)
    snapshot_families = exposition._families.snapshot_families

    def counted_ahead(snap=None):
        renders["snapshot ahead"] += 1
        return snapshot_families(snap)

    exposition._families.snapshot_families = counted_ahead  # type: ignore[method-assign]
    scrapes = 0
    stop = threading.Event()

    def scrape() -> None:
        nonlocal scrapes
        while not stop.is_set():
            exposition.render(want_gzip=scrapes % 2 == 1)
            scrapes += 1
            stop.wait(0.005)

    async with make_aws(settings, state) as aws:
        sweeper = PostureSweeper(aws, settings, state)
        await sweeper.sweep()
        exposition.render()
        renders.clear()
        errors = sum(state.collector_errors.values())
        scraper = threading.Thread(target=scrape)
        scraper.start()
        try:
            await sweeper.sweep()
            await asyncio.sleep(0.1)  # scrapes after the publication too
        finally:
            stop.set()
            scraper.join()
    assert scrapes >= 10
    assert renders["snapshot ahead"] == 1
    assert renders["snapshot"] == 0
    # Health: once for the publication, and at most once more per failure the sweep counted
    # (the default scenario has failing accounts; their counter is in the health section).
    counted = sum(state.collector_errors.values()) - errors
    assert counted > 0
    assert renders["health"] <= 1 + counted, (renders, counted)


def test_a_sweeps_snapshot_is_rendered_before_it_is_published() -> None:
    """The sweep prepares its snapshot (`ExporterState.prepare`, on a worker thread) and then
    publishes it: the scrapes in between still show the published one, and the first scrape
    after it takes the render made ahead instead of rendering the snapshot itself."""
    state = ExporterState(600)
    exposition = Exposition(state)
    state.publish(Snapshot(accounts=(Account("111111111111", name="one"),)))
    exposition.render()
    coming = state.number(Snapshot(accounts=(Account("111111111111", name="one"), Account("222222222222", name="two"))))
    state.prepare(coming)
    assert b'account_id="222222222222"' not in exposition.render()
    ahead = exposition._ahead[1]
    state.publish(coming)
    text = exposition.render()
    assert exposition._rendered["snapshot"] is ahead and exposition._ahead is None
    assert b'account_id="222222222222"' in text
    # Byte for byte what rendering the published snapshot on the scrape gives, gzip too.
    fresh = ExporterState(600)
    fresh.publish(Snapshot(accounts=state.snapshot.accounts))
    fresh.publish(state.snapshot)
    assert Exposition(fresh).render() == text
    assert gzip.decompress(exposition.render(want_gzip=True)) == text


def test_a_snapshot_prepared_and_never_published_is_never_served() -> None:
    """A sweep cancelled between preparing and publishing: the next sweep's snapshot has the
    same number, and must not be shown with the abandoned one's render."""
    state = ExporterState(600)
    exposition = Exposition(state)
    exposition.render()
    state.prepare(state.number(Snapshot(accounts=(Account("111111111111", name="abandoned"),))))
    state.publish(Snapshot(accounts=(Account("222222222222", name="published"),)))
    text = exposition.render()
    assert b'account_id="222222222222"' in text
    assert b'account_id="111111111111"' not in text


def test_the_state_does_not_keep_the_exposition_alive() -> None:
    """The state holds the exposition's preparer weakly: an exposition dropped is freed at
    once (its renderer thread then ends), and preparing a snapshot afterwards is a no-op."""
    import weakref

    state = ExporterState(600)
    exposition = Exposition(state)  # not scraped: its renderer thread, not started, holds nothing
    gone = weakref.ref(exposition)
    del exposition
    assert gone() is None
    state.prepare(state.number(Snapshot(accounts=(Account("111111111111", name="one"),))))
