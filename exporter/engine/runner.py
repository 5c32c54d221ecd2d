"""The one way a collector runs: time-boxed, its failure classified, counted and logged once.

Every collector (discovery, posture per account, the organization's root access features,
the SCP check, and the activity sources) goes through `CollectorRunner`, so a failure has
the same reasons, the same counter (`aws_root_exporter_collector_errors_total`), the same
log line (a warning when it starts or its reason changes, then debug while it repeats) and
the same kept last success wherever it happens.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Generic, TypeVar

from exporter.aws.client import AwsError, classify_error
from exporter.engine.state import CollectorStatus, ExporterState
from exporter.posture.credential_report import CredentialReportError

log = logging.getLogger(__name__)

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class Outcome(Generic[T]):
    """What one run of a collector produced: its status and, on success, its value."""

    status: CollectorStatus
    value: T | None = None


# Reasons whose fix is not in IAM or the network: the failure's log line says what to do.
FIXES = {
    "not_all_features": (
        "the organization has only the consolidated billing features (OrganizationNotInAllFeaturesModeException);"
        " enable all features in AWS Organizations (`aws organizations enable-all-features`, approved by every"
        " invited member account), or set account_mode: roles"
    ),
}


def failure_reason(exc: BaseException) -> str:
    """The `reason` label of a failure (a fixed set: see README, Collection errors)."""
    if isinstance(exc, CredentialReportError):
        return "invalid_response"
    return classify_error(exc)


class CollectorRunner:
    def __init__(self, state: ExporterState) -> None:
        self.state = state

    async def run(
        self,
        account_id: str,
        collector: str,
        work: Callable[[], Awaitable[T]],
        *,
        previous: CollectorStatus | None,
        timeout: float | None,
        failed: str,
    ) -> Outcome[T]:
        """Run `work` within `timeout` seconds; on failure count it for (account, collector)
        and log `failed` with the reason. `previous` gives the last success to keep."""
        value, error = await attempt(work, timeout)
        if error is not None:
            return Outcome(self.failure(account_id, collector, error, previous, timeout, failed))
        if previous is not None and not previous.success:
            log.info("collector recovered", extra={"account_id": account_id, "collector": collector, "after": previous.reason})
        return Outcome(CollectorStatus(True, time.time()), value)

    def failure(
        self,
        account_id: str,
        collector: str,
        error: BaseException,
        previous: CollectorStatus | None,
        timeout: float | None,
        failed: str,
    ) -> CollectorStatus:
        reason = failure_reason(error)
        if timeout is not None and isinstance(error, TimeoutError) and not isinstance(error, AwsError):
            message = f"no answer within {timeout:g}s"
        else:
            message = str(error)
        self.count(account_id, collector, reason)
        # A warning when the failure starts or its reason changes; while it repeats unchanged,
        # every pass, the counter and the status metrics carry it and the log says it at debug.
        # Missing credentials fail every collector on every retry: Aws logs that once, at error.
        repeated = previous is not None and not previous.success and previous.reason == reason
        level = logging.DEBUG if repeated or reason == "no_credentials" else logging.WARNING
        text = f"{failed}: {FIXES[reason]}" if reason in FIXES else failed
        log.log(level, text, extra={"account_id": account_id, "collector": collector, "reason": reason, "error": message})
        return CollectorStatus(False, previous.last_success if previous else None, reason, message)

    def count(self, account_id: str, collector: str, reason: str) -> None:
        self.state.collector_errors[(account_id, collector, reason)] += 1
        self.state.changed()


async def attempt(work: Callable[[], Awaitable[T]], timeout: float | None) -> tuple[T | None, Exception | None]:
    """`work()`'s value, or the exception that ended it (a timeout is a TimeoutError)."""
    try:
        async with asyncio.timeout(timeout):
            return await work(), None
    except asyncio.CancelledError:
        raise
    except Exception as exc:
        return None, exc
