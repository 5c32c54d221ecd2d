"""The organization's required sign-in factor as a metric, so an alert can compare each root
console login's factor with it (setting `required_signin_mfa`).

    # HELP aws_root_console_login_mfa_kind_accepted 1 when a root console sign-in with this factor (mfa_kind of aws_root_console_logins_total) meets the organization's requirement (setting required_signin_mfa), else 0.
    # TYPE aws_root_console_login_mfa_kind_accepted gauge
    aws_root_console_login_mfa_kind_accepted{mfa_kind="u2f"} 1.0
    aws_root_console_login_mfa_kind_accepted{mfa_kind="totp"} 0.0
    aws_root_console_login_mfa_kind_accepted{mfa_kind="none"} 0.0
    aws_root_console_login_mfa_kind_accepted{mfa_kind="unknown"} 0.0

One series per factor kind, for the organization, not per account. The requirement lives in
the exporter's settings rather than in the rule files because the Helm chart ships the rule
files as they are: a chart user can set `config.required_signin_mfa`, not the generator.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from exporter.activity.classify import MFA_KINDS
from exporter.config.settings import Settings
from exporter.engine.state import Section
from exporter.metrics.textformat import gauge

# What each requirement accepts. A factor that cannot be named (`unknown`) meets only `any`:
# a requirement is met when the record shows it is, never by default.
ACCEPTED: dict[str, frozenset[str]] = {
    "any": frozenset(MFA_KINDS),
    "totp": frozenset({"totp", "u2f"}),
    "u2f": frozenset({"u2f"}),
}


def accepted_families(required: str) -> Iterable[Any]:
    accepted = gauge(
        "aws_root_console_login_mfa_kind_accepted",
        "1 when a root console sign-in with this factor (mfa_kind of aws_root_console_logins_total) meets the "
        "organization's requirement (setting required_signin_mfa), else 0.",
        labels=["mfa_kind"],
    )
    for kind in MFA_KINDS:
        accepted.add_metric([kind], int(kind in ACCEPTED[required]))
    return [accepted]


def signin_mfa_section(settings: Settings) -> Section:
    """Reads the running settings at each scrape: a reload that changes the requirement shows at once."""
    return Section(
        "signin_mfa",
        lambda: settings.required_signin_mfa,
        lambda: accepted_families(settings.required_signin_mfa),
    )
