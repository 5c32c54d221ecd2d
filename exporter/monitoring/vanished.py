"""Accounts that left the organization without a closure, judged purely.

An account collected in one published snapshot that is missing from a later successful
discovery, neither collected nor skipped (a SUSPENDED, PENDING_CLOSURE or CLOSED account is
skipped, so one seen closing never counts), left the organization (`LeaveOrganization`,
`RemoveAccountFromOrganization`): every source of the exporter is blind to it from then on.
It is reported as reason `left_organization` (source `all`, region "") until it comes back,
or for `left_organization_days`: an account that left on purpose stops paging by itself, and
the alert and its log line are the record that it happened.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

from exporter.monitoring.problems import ALL, PathProblem

LEFT_ORGANIZATION = "left_organization"


@dataclass(frozen=True, slots=True)
class Roster:
    # Accounts collected in the last snapshot whose discovery succeeded.
    collected: frozenset[str] = frozenset()
    # Accounts that vanished, and when they were first found missing (unix time).
    vanished: Mapping[str, float] = field(default_factory=lambda: MappingProxyType({}))


def next_roster(roster: Roster, collected: Iterable[str], present: Iterable[str], now: float, keep_seconds: float) -> Roster:
    """The roster after a successful discovery: `collected` accounts, and `present` ones
    discovery found but does not collect (skipped by state, filter or shard)."""
    collected = frozenset(collected)
    everywhere = collected | frozenset(present)
    vanished = {a: since for a, since in roster.vanished.items() if a not in everywhere and now - since < keep_seconds}
    for account_id in roster.collected - everywhere:
        vanished.setdefault(account_id, now)
    return Roster(collected, MappingProxyType(vanished))


def left_organization(roster: Roster) -> tuple[PathProblem, ...]:
    return tuple(PathProblem(a, "", (ALL,), LEFT_ORGANIZATION, since) for a, since in sorted(roster.vanished.items()))
