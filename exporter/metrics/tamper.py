"""Monitoring tamper records as a metric: calls, by any principal, that can blind the exporter.

    # HELP aws_root_monitoring_tamper_events_total CloudTrail calls, by any principal, that can blind root-activity monitoring (trail stopped, deleted or narrowed, forwarder rule or queue changed, account leaving the organization), by outcome (a denied attempt counts).
    # TYPE aws_root_monitoring_tamper_events_total counter
    aws_root_monitoring_tamper_events_total{account_id="143434273843",account_name="prod-web",event_name="StopLogging",outcome="success"} 1.0

Sparse: a series appears with the first such record of its labels (the alert rules count an
appearance as an increase), so a quiet account adds none. `account_name` comes from the
latest posture snapshot; an account outside the organization (or `unknown`, a record without
a usable account id) shows an empty name and still counts.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from exporter.activity.store import TAMPER_FAMILY, EventStore
from exporter.engine.state import ExporterState, Section
from exporter.metrics.textformat import counter


def tamper_families(store: EventStore, state: ExporterState) -> Iterable[Any]:
    names = {account.account_id: account.name for account in state.snapshot.accounts}
    family = counter(
        "aws_root_monitoring_tamper_events_total",
        "CloudTrail calls, by any principal, that can blind root-activity monitoring (trail stopped, deleted or "
        "narrowed, forwarder rule or queue changed, account leaving the organization), by outcome (a denied attempt counts).",
        labels=["account_id", "account_name", "event_name", "outcome"],
    )
    family.rows = sorted(
        ((account, names.get(account, ""), event_name, outcome), count)
        for (account, event_name, outcome), count in store.tamper_counts().items()
    )
    return [family]


def tamper_section(store: EventStore, state: ExporterState) -> Section:
    """Rendered again when a tamper record is counted or a sweep publishes new account names."""
    return Section(
        "monitoring_tamper",
        lambda: (store.family_version(TAMPER_FAMILY), state.snapshot.sweeps),
        lambda: tamper_families(store, state),
    )
