"""The reloadable configuration as parts of /metrics: the reload status, the break-glass windows and the required sign-in factor."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from typing import Any

from exporter.engine.reload import Reloader
from exporter.engine.state import Section
from exporter.metrics.break_glass import settings_window_section
from exporter.metrics.signin_mfa import signin_mfa_section
from exporter.metrics.textformat import gauge


def reload_families(reloader: Reloader) -> Iterable[Any]:
    return [
        gauge(
            "aws_root_exporter_config_last_reload_successful",
            "1 when the last configuration reload (POST /-/reload or SIGHUP) succeeded, or none was tried; 0 when it failed and the previous configuration still runs.",
            value=int(reloader.successful),
        ),
        gauge(
            "aws_root_exporter_config_last_reload_success_timestamp_seconds",
            "When the configuration was last loaded successfully (at start or by a reload).",
            value=reloader.success_timestamp,
        ),
    ]


def reload_sections(reloader: Reloader, clock: Callable[[], float] = time.time) -> list[Section]:
    """The configured break-glass windows and required sign-in factor (they follow a reload) and the reload status."""
    return [
        settings_window_section(reloader.settings, clock),
        signin_mfa_section(reloader.settings),
        Section("config_reload", lambda: reloader.generation, lambda: reload_families(reloader)),
    ]
