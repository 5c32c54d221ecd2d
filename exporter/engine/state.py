"""What the exporter knows: the last complete posture snapshot and its cumulative counters.

The sweeper builds a new `Snapshot` and swaps it in whole; the HTTP thread only reads the
current reference, so a scrape never sees half a sweep and never waits for one.
"""

from __future__ import annotations

import logging
import threading
from collections import Counter
from collections.abc import Callable, Hashable, Iterable
from dataclasses import dataclass, field, replace
from types import MappingProxyType
from typing import Any, Mapping

from exporter.discovery.accounts import Account, SkippedAccount
from exporter.aws.client import ApiStats
from exporter.monitoring.problems import PathProblem
from exporter.posture.collect import RootPosture
from exporter.posture.organization_features import OrganizationFeatures
from exporter.scp.check import ScpResult

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class CollectorStatus:
    success: bool
    last_success: float | None
    reason: str | None = None
    # What went wrong, as logged (AWS's error code and message; never a credential).
    message: str | None = None


@dataclass(frozen=True, slots=True)
class Snapshot:
    accounts: tuple[Account, ...] = ()
    # Last successful posture per account: a failed sweep of one account keeps what was known
    # (its age shows in aws_root_exporter_collector_last_success_timestamp_seconds).
    posture: Mapping[str, RootPosture] = field(default_factory=lambda: MappingProxyType({}))
    status: Mapping[tuple[str, str], CollectorStatus] = field(default_factory=lambda: MappingProxyType({}))
    discovered: int = 0
    skipped: Mapping[str, int] = field(default_factory=lambda: MappingProxyType({}))
    # Each account not collected, with its reason (the `skipped` counts, named: for `audit`).
    skipped_accounts: tuple[SkippedAccount, ...] = ()
    organization_features: OrganizationFeatures | None = None
    # The features the organization must have enabled (setting central_root_access_required,
    # as it was at this sweep): published beside the reading, so the alert compares the two.
    organization_features_required: tuple[str, ...] = ()
    management_account_id: str | None = None
    # Reason the last discovery failed (the account list is then the previous one).
    discovery_error: str | None = None
    sweep_duration: float | None = None
    completed_at: float | None = None
    # Sweeps published so far, this one included (set by `ExporterState.publish`): read from
    # the snapshot, a count can never be paired with another sweep's results.
    sweeps: int = 0
    # Last successful SCP root-fence check (a failed check keeps the previous one); None
    # when the check is off or does not apply (not in organization mode).
    scp: ScpResult | None = None


@dataclass(frozen=True, slots=True)
class Section:
    """A part of /metrics that changes on its own: rendered again only when `key()` changes.

    `key` must be cheap (it is read on every scrape); `families` returns the metric
    families (`exporter.metrics.textformat`, or prometheus_client's for small ones).
    """

    name: str
    key: Callable[[], Hashable]
    families: Callable[[], Iterable[Any]]


class ExporterState:
    """Shared between the asyncio loop (writer) and the HTTP threads (readers)."""

    def __init__(self, posture_interval: float) -> None:
        self.snapshot = Snapshot()
        self.posture_interval = posture_interval
        self.sweeps = 0
        self.collector_errors: Counter[tuple[str, str, str]] = Counter()
        self.api = ApiStats()
        self.ready = threading.Event()
        # Parts of /metrics kept by other components (the activity store), each with its own key.
        self.sections: list[Section] = []
        # Status of collectors that run continuously (activity sources), by (account, collector).
        self.live_status: dict[tuple[str, str], CollectorStatus] = {}
        # Called with the accounts of every published snapshot (e.g. to create counters at 0).
        self.listeners: list[Any] = []
        # Called with every snapshot about to be published (e.g. to notice accounts that vanished).
        self.snapshot_listeners: list[Callable[[Snapshot], None]] = []
        # Called from a worker thread with each numbered snapshot before it is published: the
        # exposition renders it then, so no scrape waits for that render (`prepare`).
        self.preparers: list[Callable[[Snapshot], None]] = []
        # Proof of sight: what each producer ("checks", "organization") found blinding, each
        # tuple replaced whole by its producer, which then calls changed(). The canary's own
        # problems live in its Coverage (exporter.monitoring.coverage).
        self.monitoring_problems: dict[str, tuple[PathProblem, ...]] = {}
        self._version = 0
        self._lock = threading.Lock()

    @property
    def version(self) -> int:
        """Moves when a snapshot is published, or a collector's status or error count changes."""
        return self._version

    def changed(self) -> None:
        with self._lock:
            self._version += 1

    def number(self, snapshot: Snapshot) -> Snapshot:
        """The snapshot as the next one to be published (its `sweeps`)."""
        return replace(snapshot, sweeps=self.sweeps + 1)

    def prepare(self, snapshot: Snapshot) -> None:
        """Run the preparers for a numbered snapshot about to be published (on a worker thread:
        at 10,000 accounts rendering it takes about a second). A preparer that fails is
        logged; the snapshot is published all the same, and rendered on the next scrape."""
        for preparer in self.preparers:
            try:
                preparer(snapshot)
            except Exception:
                log.exception("preparing the snapshot for /metrics failed; it is rendered on the next scrape instead")

    def publish(self, snapshot: Snapshot) -> Snapshot:
        if snapshot.sweeps != self.sweeps + 1:
            snapshot = self.number(snapshot)
        for listener in self.listeners:
            listener(snapshot.accounts)
        for snapshot_listener in self.snapshot_listeners:
            snapshot_listener(snapshot)
        self.snapshot = snapshot
        self.sweeps = snapshot.sweeps
        self.changed()
        self.ready.set()
        return snapshot
