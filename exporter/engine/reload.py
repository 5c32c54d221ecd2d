"""Re-read the configuration on `POST /-/reload` or SIGHUP, as Prometheus and Alertmanager do.

    aws_root_exporter_config_last_reload_successful                  1 when the last reload (or the start) succeeded
    aws_root_exporter_config_last_reload_success_timestamp_seconds   when the configuration was last loaded

The names and meaning are Prometheus' own (`prometheus_config_last_reload_successful`),
so the same alert and the same habits apply.

A reload builds the settings again from the same sources as at start (the YAML file, the
environment, the command line), validates them whole, and applies the settings the running
loops read afresh on every pass. Settings that were read once to build something long-lived
are RESTART_SETTINGS: a change to one is logged and answered, and the running value is kept
(the new file's other changes still apply). A file that does not validate changes nothing.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

from pydantic import ValidationError

from exporter.config.settings import Settings, SettingsError, describe_validation_error
from exporter.engine.state import ExporterState

log = logging.getLogger(__name__)

# Each read once at start to build something that lives as long as the process:
RESTART_SETTINGS: dict[str, str] = {
    "listen_address": "the listening socket is bound at start",
    "web_config_file": "the file's path is fixed at start (its content is re-read on every new connection)",
    "account_mode": "decides how accounts are found and which combinations of settings are valid",
    "region": "the AWS clients are built at start",
    "endpoint_url": "the AWS clients are built at start",
    "max_attempts": "the AWS clients' retry configuration is built at start",
    "role_session_name": "the AWS clients are built at start",
    "external_id": "the AWS clients are built at start",
    "assume_root_audit": "changes the AWS permissions and credential path of every account",
    "lookup_events_enabled": "the activity sources are started once",
    "canary_enabled": "the canary loop is started once",
    "eventbridge_queue_url": "the activity sources are started once",
    "s3_trail_queue_url": "the activity sources are started once",
    "monitoring_checks_enabled": "the configuration checks' loop is started once",
    "sqs_wait_seconds": "the SQS client's read timeout is derived from it at start",
    "state_file": "the event store is opened and saved to this file from start to stop",
    "log_level": "logging is set up once at start",
    "log_format": "logging is set up once at start",
}


class Reloader:
    """Holds the running settings object and applies a new configuration to it in place.

    The sweeper and the activity sources keep a reference to the same `Settings` object and
    read its fields on every pass, so assigning a field is how a change reaches them.
    """

    def __init__(self, settings: Settings, state: ExporterState, load: Callable[[], Settings] | None) -> None:
        self.settings = settings
        self.state = state
        self._load = load
        self._lock = threading.Lock()
        self.successful = True
        self.success_timestamp = time.time()
        self.generation = 0

    def reload(self) -> tuple[bool, str]:
        """Apply the configuration as it is now; (success, a one-line account of what happened)."""
        with self._lock:  # a SIGHUP and a POST at once must not interleave
            try:
                if self._load is None:
                    raise SettingsError("this exporter was started without a configuration source to reload")
                new = self._load()
                changed, restart = self._compare(new)
                if restart:
                    # Validate the mix that will actually run: the new values with the old restart-only ones.
                    try:
                        new = Settings(**{**new.model_dump(), **{name: getattr(self.settings, name) for name in restart}})
                    except ValidationError as exc:
                        raise SettingsError(f"{describe_validation_error(exc)} (with the running value of {', '.join(restart)})") from None
            except SettingsError as exc:
                self.successful = False
                self.generation += 1
                log.error("configuration reload failed; keeping the running configuration", extra={"reason": str(exc)})
                return False, f"reload failed, the running configuration is unchanged: {exc}"
            for name in changed:
                setattr(self.settings, name, getattr(new, name))
            if "posture_interval_seconds" in changed:
                self.state.posture_interval = self.settings.posture_interval_seconds
            self.successful = True
            self.success_timestamp = time.time()
            self.generation += 1
            for name in restart:
                log.warning("setting changed but needs a restart; keeping the running value", extra={"setting": name, "why": RESTART_SETTINGS[name]})
            log.info("configuration reloaded", extra={"changed": sorted(changed), "needs_restart": sorted(restart)})
            message = f"reloaded; changed: {', '.join(sorted(changed)) or 'nothing'}"
            if restart:
                message += f"; needs a restart to change (running value kept): {', '.join(sorted(restart))}"
            return True, message

    def _compare(self, new: Settings) -> tuple[list[str], list[str]]:
        changed, restart = [], []
        for name in Settings.model_fields:
            if getattr(new, name) != getattr(self.settings, name):
                (restart if name in RESTART_SETTINGS else changed).append(name)
        return changed, restart
