"""Recovery exposure: who can take a root over without its password.

Two controls, each evaluated only where the exporter can read what it needs:

- `root_email_domain_allowed`: the account's root email (Organizations `Account.Email`, read
  by discovery) is the password-recovery channel of the root user; whoever controls its
  mailbox can reset the password. The control passes when the address's domain is one of
  the setting `allowed_root_email_domains` (exact domain, case-insensitive: a subdomain is
  a different mail system and is listed on its own). Not evaluated (no series, no finding)
  while the setting is empty or outside the `organization` account mode. Only the domain is
  kept: the address is personal data and never becomes a label or a log line.
- `security_contact_present`: the account has a security alternate contact
  (`account:GetAlternateContact`, `AlternateContactType=SECURITY`), Security Hub Account.1,
  Config rule `security-account-information-provided`, CIS v5.0 1.2 / v7.0 2.3. Botocore's
  `account` model: `ResourceNotFoundException` means no contact of that type is set (the
  control fails); the management account (or delegated administrator) reads a member with
  `AccountId`, which needs trusted access for AWS Account Management in AWS Organizations,
  and reads its own account without `AccountId` ("The management account can't specify its
  own AccountId"). Any other answer (access denied, trusted access off, throttling) leaves
  the control unknown: no series, never compliant, the reason in `audit`.
"""

from __future__ import annotations

from dataclasses import dataclass

from exporter.aws.client import Aws, AwsError, classify_error

RECOVERY_CONTROLS = ("root_email_domain_allowed", "security_contact_present")
TRUSTED_ACCESS_DISABLED = "trusted_access_disabled"
# AWS answers a member's GetAlternateContact with AccessDeniedException when trusted access
# for AWS Account Management is off; only the message tells it from a missing permission
# ("... (Your organization must first enable trusted access with AWS Account Management.)").
_TRUSTED_ACCESS_HINT = "trusted access"


def domain_allowed(domain: str, allowed: list[str]) -> bool:
    return bool(domain) and domain.lower() in allowed


@dataclass(frozen=True, slots=True)
class SecurityContact:
    # True: a security contact is set; False: none (ResourceNotFoundException); None: unknown.
    present: bool | None
    # Why it is unknown: trusted_access_disabled, or a collector reason (access_denied, ...).
    reason: str | None = None
    # AWS's error code and message, as logged (never a credential, never the contact itself).
    message: str | None = None
    # When AWS answered (epoch seconds): an answer is reused until it is older than
    # security_contact_max_age_seconds.
    read_at: float | None = None

    def reusable(self, now: float, max_age: float) -> bool:
        """An answer (a contact or none) younger than `max_age`; a failed read never is, so it is tried again at the next sweep."""
        return self.reason is None and self.read_at is not None and now - self.read_at < max_age


@dataclass(frozen=True, slots=True)
class Recovery:
    """What an account's root can be recovered through, as far as the exporter read it."""

    # The root email's domain (organization mode); None when not known.
    email_domain: str | None = None
    # None: not evaluated (no allowed domains configured, or the email is unknown).
    email_domain_allowed: bool | None = None
    # None: not read (setting off, or an account mode where it is not read).
    security_contact: SecurityContact | None = None

    def controls(self) -> dict[str, bool]:
        """The recovery controls that were evaluated; an unknown one is left out, never passed."""
        results: dict[str, bool] = {}
        if self.email_domain_allowed is not None:
            results["root_email_domain_allowed"] = self.email_domain_allowed
        if self.security_contact is not None and self.security_contact.present is not None:
            results["security_contact_present"] = self.security_contact.present
        return results


async def read_security_contact(aws: Aws, account_id: str, own_account: bool, now: float) -> SecurityContact:
    """The account's security alternate contact, read with the exporter's own credentials at `now`."""
    client = await aws.client("account")
    params = {"AlternateContactType": "SECURITY"}
    if not own_account:
        params["AccountId"] = account_id
    try:
        await aws.call(client, "GetAlternateContact", **params)
    except AwsError as exc:
        if exc.code == "ResourceNotFoundException":
            return SecurityContact(present=False, read_at=now)
        message = f"{exc.code}: {exc.message}" if exc.message else exc.code
        if exc.reason == "access_denied" and _TRUSTED_ACCESS_HINT in (exc.message or "").lower():
            return SecurityContact(present=None, reason=TRUSTED_ACCESS_DISABLED, message=message)
        return SecurityContact(present=None, reason=classify_error(exc), message=message)
    return SecurityContact(present=True, read_at=now)
