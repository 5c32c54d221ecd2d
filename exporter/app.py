"""The long-running exporter: HTTP server, posture sweeps, and a clean stop on SIGTERM."""

from __future__ import annotations

import asyncio
import logging
import signal
from collections.abc import Awaitable, Callable
from datetime import datetime, timezone

from exporter.engine.activity import ActivityService
from exporter.engine.monitoring_checks import MonitoringChecks
from exporter.engine.vanished import VanishedAccounts
from exporter.engine.canary import CanaryService
from exporter.activity.store import EventStore
from exporter.aws.client import Aws
from exporter.web.http import MetricsServer
from exporter.metrics.activity import activity_sections
from exporter.metrics.exposition import Exposition
from exporter.metrics.monitoring import monitoring_sections
from exporter.monitoring.coverage import Coverage, configured_sources
from exporter.metrics.reload import reload_sections
from exporter.metrics.tamper import tamper_section
from exporter.engine.reload import Reloader
from exporter.config.settings import Settings
from exporter.engine.state import ExporterState
from exporter.engine.sweep import PostureSweeper
from exporter.config.webconfig import WebConfigSource

log = logging.getLogger(__name__)


def split_address(address: str) -> tuple[str, int]:
    host, _, port = address.rpartition(":")
    return host.strip("[]") or "0.0.0.0", int(port)


def make_aws(settings: Settings, state: ExporterState) -> Aws:
    return Aws(
        region=settings.region,
        partition=settings.role_partition,
        endpoint_url=settings.endpoint_url,
        max_attempts=settings.max_attempts,
        max_pool_connections=max(settings.concurrency, 10),
        role_session_name=settings.role_session_name,
        external_id=settings.external_id,
        stats=state.api,
    )


class Exporter:
    def __init__(self, settings: Settings, load_settings: Callable[[], Settings] | None = None) -> None:
        """`load_settings` builds the settings again from their sources, for a reload."""
        self.settings = settings
        self.state = ExporterState(settings.posture_interval_seconds)
        # Also exposes the configured break-glass windows, for alerts that name the approving ticket.
        self.reloader = Reloader(settings, self.state, load_settings)
        self.exposition = Exposition(self.state)
        host, port = split_address(settings.listen_address)
        # TLS and basic auth from the web config file, re-read when it changes (see exporter/config/webconfig.py).
        self.web = WebConfigSource(settings.web_config_file) if settings.web_config_file else None
        # A broken state file stops the start with a clear error, before anything listens.
        self.store = EventStore.open(settings.state_file, datetime.now(timezone.utc))
        # Proof of sight: which canaries were made and which came back (README, Proof of sight).
        self.coverage = (
            Coverage(configured_sources(settings), settings.canary_bounds_seconds, settings.canary_interval_seconds, settings.role_session_name)
            if settings.canary_enabled
            else None
        )
        self.state.sections += [*reload_sections(self.reloader), *activity_sections(self.store), tamper_section(self.store, self.state), *monitoring_sections(self.state, settings, self.coverage)]
        self.server = MetricsServer(self.state, self.exposition, host, port, wrap=self.web.wrap if self.web else None, reload=self.reloader.reload)
        self.sweeper: PostureSweeper | None = None
        self.activity: ActivityService | None = None
        self.canary: CanaryService | None = None
        self.checks: MonitoringChecks | None = None
        # Before the first sweep publishes: it compares every snapshot with the previous one.
        self.vanished = VanishedAccounts(settings, self.state)

    @property
    def url(self) -> str:
        host = self.server.httpd.server_address[0]
        shown = "127.0.0.1" if host in ("0.0.0.0", "") else host
        scheme = "https" if self.web is not None and self.web.tls else "http"
        return f"{scheme}://{shown}:{self.server.port}"

    async def run(self, on_started: Callable[[Exporter], None] | None = None) -> None:
        """Serve and sweep until cancelled; the HTTP server is up before the first sweep."""
        self.server.start()
        log.info("listening", extra={"url": self.url + "/metrics"})
        loop = asyncio.get_running_loop()
        # A reload reads files: off the loop, so the sweeps do not wait for it.
        loop.add_signal_handler(signal.SIGHUP, lambda: loop.run_in_executor(None, self.reloader.reload))
        try:
            async with make_aws(self.settings, self.state) as aws:
                self.sweeper = PostureSweeper(aws, self.settings, self.state)
                self.activity = ActivityService(aws, self.settings, self.state, self.store, self.coverage)
                self.checks = MonitoringChecks(aws, self.settings, self.state)
                loops = [supervise("posture sweeps", self.sweeper.run), supervise("root activity", self.activity.run)]
                if self.settings.monitoring_checks_enabled:
                    loops.append(supervise("configuration checks", self.checks.run))
                if self.coverage is not None:
                    self.canary = CanaryService(aws, self.settings, self.state, self.coverage)
                    loops.append(supervise("canaries", self.canary.run))
                if on_started is not None:
                    on_started(self)
                await asyncio.gather(*loops)
        finally:
            loop.remove_signal_handler(signal.SIGHUP)
            self.server.stop()
            log.info("stopped")


async def supervise(name: str, loop: Callable[[], Awaitable[None]], delay: float = 5.0) -> None:
    """Run a loop forever; a bug that escapes it is logged and the loop restarts."""
    while True:
        try:
            await loop()
            return
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("%s stopped unexpectedly; restarting in %.0fs", name, delay)
            await asyncio.sleep(delay)


async def run_until_signalled(coro_factory: Callable[[], asyncio.Future | object]) -> None:
    """Run the main coroutine; SIGTERM or SIGINT cancels it so it can drain and close."""
    loop = asyncio.get_running_loop()
    task = asyncio.ensure_future(coro_factory())  # type: ignore[arg-type]
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, task.cancel)
    try:
        await task
    except asyncio.CancelledError:
        pass
    finally:
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(sig)
