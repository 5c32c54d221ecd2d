"""The organization's centralized root access features (`iam:ListOrganizationsFeatures`).

IAM answers only when trusted access for IAM is enabled in AWS Organizations; otherwise it
refuses with ServiceAccessNotEnabledException. That is a setting of the organization, not a
failure of the exporter, so it is recorded as a reading: the features are unknown, for the
reason `trusted_access_disabled`. They are not reported as disabled: AWS documents that
enabling root access management turns trusted access on, not what becomes of the features
when trusted access is turned off later.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from exporter.aws.client import Aws, AwsError

FEATURES = ("RootCredentialsManagement", "RootSessions")
TRUSTED_ACCESS_DISABLED = "trusted_access_disabled"
# botocore's IAM model names the shape ServiceAccessNotEnabledException; the IAM API
# reference lists the error as ServiceAccessNotEnabled (as for IAM's older errors, whose
# wire code drops the suffix). Either is the same answer.
_TRUSTED_ACCESS_CODES = frozenset({"ServiceAccessNotEnabledException", "ServiceAccessNotEnabled"})


@dataclass(frozen=True, slots=True)
class OrganizationFeatures:
    # Feature -> enabled; None when IAM did not say (see `unknown_reason`).
    enabled: Mapping[str, bool] | None
    unknown_reason: str | None = None
    # AWS's message for the unknown reason, as logged (no credential ever appears in it).
    message: str | None = None

    @property
    def trusted_access(self) -> bool:
        """Whether trusted access for IAM is enabled in AWS Organizations (IAM answered)."""
        return self.unknown_reason != TRUSTED_ACCESS_DISABLED


async def read_organization_features(aws: Aws) -> OrganizationFeatures:
    """Read with the exporter's own credentials (management account or IAM delegated administrator)."""
    iam = await aws.client("iam")
    try:
        response = await aws.call(iam, "ListOrganizationsFeatures")
    except AwsError as exc:
        if exc.code not in _TRUSTED_ACCESS_CODES:
            raise
        return OrganizationFeatures(enabled=None, unknown_reason=TRUSTED_ACCESS_DISABLED, message=exc.message or exc.code)
    enabled = set(response.get("EnabledFeatures", []))
    return OrganizationFeatures(enabled={feature: feature in enabled for feature in FEATURES})
