"""Render the exporter's state as Prometheus metrics. No I/O, no AWS: a scrape reads memory.

Sample of the exposition (see README.md (Metrics) for every metric):

    # HELP aws_root_mfa_enabled 1 when the root user has an MFA device (AccountMFAEnabled). Refreshed every posture sweep.
    # TYPE aws_root_mfa_enabled gauge
    aws_root_mfa_enabled{account_id="222222222222"} 0.0
"""

from __future__ import annotations

import gzip
import platform
import threading
import time
import weakref
import zlib
from collections.abc import Callable, Collection, Hashable, Iterable, Iterator

from exporter import __version__
from exporter.discovery.accounts import SKIP_REASONS
from exporter.posture.collect import MFA_KINDS
from exporter.posture.organization_features import FEATURES
from exporter.metrics.scp import snapshot_scp_families
from exporter.scp.check import SCP
from exporter.engine.state import ExporterState, Section, Snapshot
from exporter.engine.sweep import DISCOVERY, POSTURE
from exporter.metrics.textformat import Family, counter, gauge, render_each

PREFIX = "aws_root_"
_PRERENDER_POLL_SECONDS = 0.2
_SWEEP_COLLECTORS = (POSTURE, DISCOVERY, SCP)


def _ts(value) -> float:
    return value.timestamp()


class ExporterFamilies:
    """The exporter's own families, from the published snapshot and the collectors' health."""

    def __init__(self, state: ExporterState) -> None:
        self.state = state

    def snapshot_families(self, snap: Snapshot | None = None) -> Iterator[Family]:
        """The published snapshot's families, or `snap`'s (rendered ahead of its publication)."""
        snap = self.state.snapshot if snap is None else snap
        yield from self._build_info()
        yield from self._accounts(snap)
        yield from self._posture(snap)
        yield from snapshot_scp_families(snap)

    def health_families(self) -> Iterator[Family]:
        yield from self._health(self.state, self.state.snapshot)

    def _build_info(self) -> Iterable[Family]:
        g = gauge(PREFIX + "exporter_build_info", "Always 1; the exporter's version.", labels=["version", "python_version"])
        g.add_metric([__version__, platform.python_version()], 1)
        yield g

    def _accounts(self, snap) -> Iterable[Family]:
        info = gauge(
            PREFIX + "account_info",
            "Always 1 for every account the exporter collects; join on account_id for name and OU.",
            labels=["account_id", "account_name", "ou_id", "ou_name", "management", "joined_method"],
        )
        for a in snap.accounts:
            info.add_metric([a.account_id, a.name, a.ou_id, a.ou_name, "true" if a.management else "false", a.joined_method], 1)
        yield info
        yield gauge(PREFIX + "accounts_discovered", "Accounts found by discovery in the last sweep, before filters.", value=snap.discovered)
        skipped = gauge(PREFIX + "accounts_skipped", "Accounts not collected in the last sweep, by reason.", labels=["reason"])
        for reason in SKIP_REASONS:
            skipped.add_metric([reason], snap.skipped.get(reason, 0))
        yield skipped
        features = gauge(
            PREFIX + "organization_feature_enabled",
            "1 when the centralized root access feature is enabled for the organization; absent while IAM does not report the features.",
            labels=["feature"],
        )
        trusted = gauge(
            PREFIX + "organization_iam_trusted_access_enabled",
            "1 when trusted access for IAM is enabled in AWS Organizations; 0 when it is not, and IAM then does not report the centralized root access features.",
        )
        # Organization-level, two series: the setting the alert compares the reading with.
        required = gauge(
            PREFIX + "organization_feature_required",
            "1 when the setting central_root_access_required lists the centralized root access feature, 0 when the organization opted out of it; beside aws_root_organization_feature_enabled.",
            labels=["feature"],
        )
        read = snap.organization_features
        if read is not None:
            for feature, enabled in (read.enabled or {}).items():
                features.add_metric([feature], 1 if enabled else 0)
            trusted.add_metric([], int(read.trusted_access))
            for feature in FEATURES:
                required.add_metric([feature], int(feature in snap.organization_features_required))
        yield features
        yield trusted
        yield required

    def _posture(self, snap) -> Iterable[Family]:
        refreshed = " Refreshed every posture sweep."
        devices = gauge(PREFIX + "mfa_devices", "Root MFA devices by kind; only for accounts audited through sts:AssumeRoot." + refreshed, labels=["account_id", "device_kind"])
        keys = gauge(PREFIX + "access_keys", "Root access keys by status." + refreshed, labels=["account_id", "status"])
        key_used = gauge(PREFIX + "access_key_last_used_timestamp_seconds", "Last time any root access key was used; absent when never used." + refreshed, labels=["account_id"])
        certs = gauge(PREFIX + "signing_certificates", "Root X.509 signing certificates by status." + refreshed, labels=["account_id", "status"])
        password = gauge(PREFIX + "password_state", "1 for the current state of the root password: present, absent or unknown (treat unknown as present); the other states have no series." + refreshed, labels=["account_id", "state"])
        pw_used = gauge(PREFIX + "password_last_used_timestamp_seconds", "Last root console sign-in with the password; absent when never used." + refreshed, labels=["account_id"])
        present = gauge(PREFIX + "credentials_present", "1 when root holds any credential (a password that exists or may exist, an access key, a signing certificate)." + refreshed, labels=["account_id"])
        report = gauge(PREFIX + "credential_report_generated_timestamp_seconds", "When the IAM credential report used for this account was generated." + refreshed, labels=["account_id"])
        controls = gauge(PREFIX + "control_compliant", "1 when the account passes the control; a root with no credentials passes the MFA controls; a recovery control not evaluated or unknown has no series." + refreshed, labels=["account_id", "control"])
        for account in snap.accounts:
            p = snap.posture.get(account.account_id)
            if p is None:
                continue
            aid = account.account_id
            if p.mfa_devices is not None:
                for kind in MFA_KINDS:
                    devices.add_metric([aid, kind], p.mfa_devices.get(kind, 0))
            keys.add_metric([aid, "active"], p.access_keys_active)
            keys.add_metric([aid, "inactive"], p.access_keys_inactive)
            if p.access_key_last_used:
                key_used.add_metric([aid], _ts(p.access_key_last_used))
            certs.add_metric([aid, "active"], p.certificates_active)
            certs.add_metric([aid, "inactive"], p.certificates_inactive)
            # Only the current state (series budget): the other two would always read 0.
            password.add_metric([aid, p.password], 1)
            if p.password_last_used:
                pw_used.add_metric([aid], _ts(p.password_last_used))
            present.add_metric([aid], int(p.credentials_present))
            if p.report_generated:
                report.add_metric([aid], _ts(p.report_generated))
            # A recovery control that was not evaluated, or is unknown, has no series.
            for control, compliant in p.controls().items():
                controls.add_metric([aid, control], int(compliant))
        yield from (devices, keys, key_used, certs, password, pw_used, present, report, controls)

    def _health(self, state: ExporterState, snap) -> Iterable[Family]:
        # Per account only what an alert reads (issue 16's series budget): success for
        # AwsRootCollectionFailing, the sweep collectors' last success (AwsRootPasswordUsed reads
        # the posture one).
        # Durations are in the debug log; an error counter appears with its first error.
        success = gauge(PREFIX + "exporter_collector_success", "1 when the collector's last run for the account succeeded.", labels=["account_id", "collector"])
        last = gauge(PREFIX + "exporter_collector_last_success_timestamp_seconds", "Last time a sweep collector (posture, discovery, scp) succeeded for the account.", labels=["account_id", "collector"])
        statuses = {**snap.status, **dict(state.live_status)}
        for (aid, collector), s in sorted(statuses.items()):
            success.add_metric([aid, collector], int(s.success))
            if s.last_success is not None and collector in _SWEEP_COLLECTORS:
                last.add_metric([aid, collector], s.last_success)
        yield from (success, last)

        errors = counter(PREFIX + "exporter_collector_errors", "Collector failures by reason.", labels=["account_id", "collector", "reason"])
        for (aid, collector, reason), count in sorted(dict(state.collector_errors).items()):
            errors.add_metric([aid, collector, reason], count)
        yield errors

        # One kind of sweep (posture, with discovery and the SCP check in it): no `sweep` label.
        sweep_duration = gauge(PREFIX + "exporter_sweep_duration_seconds", "Duration of the last complete posture sweep.")
        completed = gauge(PREFIX + "exporter_sweep_last_completed_timestamp_seconds", "When the last posture sweep completed.")
        if snap.completed_at is not None:
            sweep_duration.add_metric([], snap.sweep_duration or 0.0)
            completed.add_metric([], snap.completed_at)
        interval = gauge(PREFIX + "exporter_sweep_interval_seconds", "The configured interval between posture sweeps.", value=state.posture_interval)
        sweeps = counter(PREFIX + "exporter_sweeps", "Posture sweeps completed.", value=snap.sweeps)
        yield from (sweep_duration, completed, interval, sweeps)


def api_request_families(state: ExporterState) -> list[Family]:
    """AWS request counters: they move with every call, so they are rendered on every scrape."""
    requests = counter(PREFIX + "exporter_aws_requests", "AWS API requests the exporter made, by operation.", labels=["operation"])
    for operation, count in sorted(dict(state.api.requests).items()):
        requests.add_metric([operation], count)
    api_errors = counter(PREFIX + "exporter_aws_request_errors", "AWS API requests of the exporter that failed, by operation and reason.", labels=["operation", "reason"])
    for (operation, reason), count in sorted(dict(state.api.errors).items()):
        api_errors.add_metric([operation, reason], count)
    return [requests, api_errors]


class _Rendered:
    __slots__ = ("key", "names", "plain", "gzip")

    def __init__(self) -> None:
        self.key: Hashable = _UNRENDERED
        # One piece per family (no copy of the whole section), and the families' names.
        self.names: list[str] = []
        self.plain: list[bytes] = []
        self.gzip = b""


_UNRENDERED = object()


class Exposition:
    """The text exposition, kept as sections that are each rendered once per change.

    A sweep changes the snapshot section (posture of every account), a root event the
    sections of the activity families it moved, a failing collector the health section;
    each is rendered apart (and gzip-compressed apart: a gzip stream may hold several
    members, RFC 1952), so an event does not re-render every account's posture. The AWS
    request counters move with every call and are rendered on every scrape.
    """

    def __init__(self, state: ExporterState) -> None:
        self.state = state
        own = self._families = ExporterFamilies(state)
        # Keys read from the published snapshot itself: a section is never kept under the key
        # of a newer snapshot than the one it shows (it may show a newer one than its key,
        # and is rendered again when the key catches up).
        self._own = [
            Section("snapshot", lambda: state.snapshot.sweeps, own.snapshot_families),
            # The minute: steady successes of the activity collectors do not mark the state
            # changed, and their last-success times may lag by a minute at most.
            Section("health", lambda: (state.snapshot.sweeps, state.version, int(time.time() // 60)), own.health_families),
        ]
        self._lock = threading.Lock()
        self._rendered: dict[str, _Rendered] = {}
        # The snapshot section of a snapshot about to be published, and that snapshot
        # (`render_ahead`): taken only for that very snapshot, never for another one of the
        # same number (a sweep cancelled between the two).
        self._ahead: tuple[Snapshot, _Rendered] | None = None
        self._prerender: threading.Thread | None = None
        # Weakly: the state must not keep the exposition (and its renderer thread) alive.
        state.preparers.append(_weak_preparer(weakref.WeakMethod(self.render_ahead)))

    def render_ahead(self, snapshot: Snapshot) -> None:
        """Render the snapshot section of `snapshot` before it is published (`ExporterState.prepare`,
        on a worker thread), plain and gzip, so the scrape that follows the publication finds it
        ready. At 1,000 accounts that render is about 30 ms, at 10,000 about a second; a scrape
        arriving just after a sweep used to wait for it (docs/performance.md). The scrapes
        meanwhile go on serving the published snapshot: the lock is held only to store it."""
        ahead = _Rendered()
        for name, text in render_each(self._families.snapshot_families(snapshot)):
            ahead.names.append(name)
            ahead.plain.append(text)
        ahead.gzip = _gzip_members(ahead.plain)
        ahead.key = snapshot.sweeps
        with self._lock:
            self._ahead = (snapshot, ahead)

    def sections(self) -> list[Section]:
        return [*self._own, *self.state.sections]

    def chunks(self, want_gzip: bool = False, names: Collection[str] = ()) -> list[bytes]:
        """The exposition as consecutive pieces (plain text, or gzip members).

        `names`: only these families (as named in their HELP lines), like the `name[]`
        parameter of prometheus_client's handler; all when empty.
        """
        if self._prerender is None:
            self._prerender = threading.Thread(target=_prerender, args=(weakref.ref(self),), name="exposition", daemon=True)
            self._prerender.start()
        with self._lock:
            # A snapshot published while the sections are read may be in some of them and not
            # in others: read them again, so that a scrape shows one sweep throughout. A sweep
            # publishes once per posture interval; a third publication within one scrape is
            # not worth waiting for.
            for _ in range(3):
                published = self.state.snapshot
                parts: list[bytes] = []
                for section in self.sections():
                    rendered = self._refresh(section, want_gzip and not names)
                    if names:
                        parts += [text for name, text in zip(rendered.names, rendered.plain, strict=True) if name in names]
                    elif want_gzip:
                        parts.append(rendered.gzip)
                    else:
                        parts += rendered.plain
                if self.state.snapshot is published:
                    break
        tail = b"".join(text for name, text in render_each(api_request_families(self.state)) if not names or name in names)
        if not want_gzip:
            return [*parts, tail]
        if names:
            return [gzip.compress(b"".join([*parts, tail]), compresslevel=5)]
        return [*parts, gzip.compress(tail, compresslevel=5)]

    def render(self, want_gzip: bool = False, names: Collection[str] = ()) -> bytes:
        return b"".join(self.chunks(want_gzip, names))

    def _refresh(self, section: Section, want_gzip: bool) -> _Rendered:
        """The section, rendered again if its key moved (gzip too if wanted); the caller holds the lock."""
        rendered = self._rendered.setdefault(section.name, _Rendered())
        key = section.key()
        if key != rendered.key and section.name == "snapshot" and self._ahead is not None:
            snapshot, ahead = self._ahead
            if snapshot is self.state.snapshot and ahead.key == key:
                rendered = self._rendered[section.name] = ahead
                self._ahead = None
        if key != rendered.key:
            # Drop the old text first: at 10,000 accounts a section is tens of MB.
            rendered.names, rendered.plain, rendered.gzip = [], [], b""
            for name, text in render_each(section.families()):
                rendered.names.append(name)
                rendered.plain.append(text)
            rendered.key = key
        if want_gzip and not rendered.gzip:
            rendered.gzip = _gzip_members(rendered.plain)
        return rendered


def _weak_preparer(method: weakref.WeakMethod) -> Callable[[Snapshot], None]:
    def prepare(snapshot: Snapshot) -> None:
        render_ahead = method()
        if render_ahead is not None:
            render_ahead(snapshot)

    return prepare


def _gzip_members(pieces: list[bytes]) -> bytes:
    """One gzip member for a section, compressed piece by piece."""
    compressor = zlib.compressobj(5, zlib.DEFLATED, 31)
    return b"".join([*map(compressor.compress, pieces), compressor.flush()])


def _prerender(ref: weakref.ref[Exposition]) -> None:
    """Render each changed section soon after it changes, off the scrape path.

    At 10,000 accounts the snapshot section takes about a second; done here, the next
    scrape finds it ready (a scrape that arrives during the render waits for it rather
    than serve the old state). However often the state changes, at most about a third of
    the time goes to rendering. The thread ends when the exposition is garbage-collected.
    """
    pause = _PRERENDER_POLL_SECONDS
    while True:
        time.sleep(pause)
        exposition = ref()
        if exposition is None:
            return
        started = time.monotonic()
        for section in exposition.sections():
            with exposition._lock:
                exposition._refresh(section, want_gzip=True)
        del exposition
        pause = max(_PRERENDER_POLL_SECONDS, 2 * (time.monotonic() - started))
