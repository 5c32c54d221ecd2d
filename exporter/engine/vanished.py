"""Notices, at every published snapshot, the accounts that left the organization without a
closure (exporter.monitoring.vanished), and publishes them as
`state.monitoring_problems["organization"]`.

Organization mode only: in `roles` and `single` mode the account list is the configuration,
and an account removed from it has not left anything. A snapshot whose discovery failed
keeps the previous account list and changes nothing.

With `state_file` set, the roster (accounts collected, accounts vanished and since when) is
kept in a small file beside it, `<state_file>.accounts.json`, written only when the roster
changes: an account that left while the exporter was stopped is still noticed after the
restart, and one already reported keeps its `since`. Without `state_file` the roster lives
in memory, and an account that leaves while the exporter is down is not noticed.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import tempfile
import time
from pathlib import Path
from types import MappingProxyType

from exporter.config.settings import AccountMode, Settings
from exporter.engine.state import ExporterState, Snapshot
from exporter.monitoring.vanished import Roster, left_organization, next_roster

log = logging.getLogger(__name__)

PRODUCER = "organization"
ROSTER_VERSION = 1


def roster_path(state_file: Path) -> Path:
    return state_file.with_name(state_file.name + ".accounts.json")


class VanishedAccounts:
    def __init__(self, settings: Settings, state: ExporterState) -> None:
        self.settings = settings
        self.state = state
        self.path = roster_path(settings.state_file) if settings.state_file is not None else None
        self.roster = self._load()
        if self.roster.vanished:
            state.monitoring_problems[PRODUCER] = left_organization(self.roster)
        state.snapshot_listeners.append(self.published)

    def published(self, snapshot: Snapshot) -> None:
        if self.settings.account_mode is not AccountMode.organization or snapshot.discovery_error is not None:
            return
        roster = next_roster(
            self.roster,
            (a.account_id for a in snapshot.accounts),
            (s.account_id for s in snapshot.skipped_accounts),
            time.time(),
            self.settings.left_organization_days * 86400,
        )
        if roster == self.roster:
            return
        names = {a.account_id: a.name for a in self.state.snapshot.accounts}
        for account_id in sorted(set(roster.vanished) - set(self.roster.vanished)):
            log.warning(
                "an account left the organization without being seen closing: every source is blind to it",
                extra={"account_id": account_id, "account_name": names.get(account_id, ""), "reason": "left_organization"},
            )
        self.roster = roster
        self.state.monitoring_problems[PRODUCER] = left_organization(roster)
        self.state.changed()
        self._save()

    def _load(self) -> Roster:
        if self.path is None or not self.path.exists():
            return Roster()
        try:
            data = json.loads(self.path.read_text(encoding="utf-8"))
            if data.get("version") != ROSTER_VERSION:
                raise ValueError(f"unknown version {data.get('version')!r}")
            vanished = {str(k): float(v) for k, v in data["vanished"].items()}
            return Roster(frozenset(str(a) for a in data["collected"]), MappingProxyType(vanished))
        except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
            # Only the vanished-account memory is lost: the file is written again at the next change.
            log.error("cannot read the account roster; accounts that left while stopped go unnoticed", extra={"path": str(self.path), "error": str(exc)})
            return Roster()

    def _save(self) -> None:
        if self.path is None:
            return
        data = {"version": ROSTER_VERSION, "collected": sorted(self.roster.collected), "vanished": dict(sorted(self.roster.vanished.items()))}
        try:
            fd, tmp = tempfile.mkstemp(dir=self.path.parent, prefix=self.path.name, suffix=".tmp")
            try:
                with os.fdopen(fd, "w", encoding="utf-8") as out:
                    json.dump(data, out)
                os.replace(tmp, self.path)
            finally:
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(tmp)
        except OSError as exc:
            log.error("cannot write the account roster", extra={"path": str(self.path), "error": str(exc)})
