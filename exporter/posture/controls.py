"""Where each control of the exporter stands in AWS Security Hub CSPM, AWS Config and CIS.

The one place this mapping lives: `audit` names these ids on every finding, README's control
table is checked against it (tests/test_controls.py). Sources:

- Security Hub CSPM control reference, IAM controls (IAM.4 "IAM root user access key should
  not exist", IAM.6 "Hardware MFA should be enabled for the root user", IAM.9 "MFA should be
  enabled for the root user"): https://docs.aws.amazon.com/securityhub/latest/userguide/iam-controls.html;
  Account.1 "Security contact information should be provided for an AWS account" (Config rule
  `security-account-information-provided`, related requirement CIS v5.0.0 1.2):
  https://docs.aws.amazon.com/securityhub/latest/userguide/account-controls.html
- AWS Config managed rules, each "NOT_APPLICABLE if root user credentials are not present"
  where `not_applicable_without_credentials` says so:
  https://docs.aws.amazon.com/config/latest/developerguide/root-account-mfa-enabled.html,
  .../root-account-hardware-mfa-enabled.html, .../iam-root-access-key-check.html
- CIS Amazon Web Services Foundations Benchmark v5.0.0 (section 1, Identity and Access
  Management: 1.2 security contact information registered, 1.3 no root access key, 1.4 root
  MFA, 1.5 root hardware MFA) and v7.0.0 (section 2: 2.3, 2.4, 2.5, 2.6),
  https://www.cisecurity.org/benchmark/amazon_web_services

None means "no counterpart": signing certificates and the root email's domain have no
Security Hub control, Config rule or CIS recommendation, and no number is made up for them.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from exporter.posture.collect import RootPosture


@dataclass(frozen=True, slots=True)
class ControlIds:
    security_hub: str | None
    config_rule: str | None
    cis_v5: str | None
    cis_v7: str | None

    def as_dict(self) -> dict[str, str | None]:
        return asdict(self)


CONTROL_IDS: dict[str, ControlIds] = {
    "mfa_enabled": ControlIds("IAM.9", "root-account-mfa-enabled", "1.4", "2.5"),
    "mfa_hardware": ControlIds("IAM.6", "root-account-hardware-mfa-enabled", "1.5", "2.6"),
    "no_access_keys": ControlIds("IAM.4", "iam-root-access-key-check", "1.3", "2.4"),
    "no_signing_certificates": ControlIds(None, None, None, None),
    "root_email_domain_allowed": ControlIds(None, None, None, None),
    "security_contact_present": ControlIds("Account.1", "security-account-information-provided", "1.2", "2.3"),
}

# The Config rules that answer NOT_APPLICABLE for a root without credentials (Security Hub
# then shows the control NOT_AVAILABLE and archives the finding after 3 days). The exporter
# reads the same root as compliant: it cannot sign in, so it needs no MFA.
NOT_APPLICABLE_WITHOUT_CREDENTIALS = frozenset({"mfa_enabled", "mfa_hardware"})

def config_rule_result(control: str, posture: RootPosture) -> str | None:
    """What the control's AWS Config rule reports for the root as the exporter read it.

    None when the control has no Config rule. A password the exporter cannot see
    (`unknown`) counts as a credential here too, so for such a root this says
    NON_COMPLIANT where Config, which sees the root itself, may say NOT_APPLICABLE.
    """
    if CONTROL_IDS[control].config_rule is None:
        return None
    if control in NOT_APPLICABLE_WITHOUT_CREDENTIALS and posture.partition == "aws-us-gov":
        # The rule pages' "AWS Region" lists every region "except ... AWS GovCloud (US-East),
        # AWS GovCloud (US-West)": Config gives no answer there to reconcile with.
        return None
    if control in NOT_APPLICABLE_WITHOUT_CREDENTIALS and not posture.credentials_present:
        return "NOT_APPLICABLE"
    if control in posture.waived():
        return "NON_COMPLIANT"  # the waiver is this exporter's setting; Config knows none
    return "COMPLIANT" if posture.controls()[control] else "NON_COMPLIANT"


def control_results(posture: RootPosture) -> list[dict[str, Any]]:
    """Every evaluated control of one root: passed or not, waived or not, Config's answer, and the control's ids."""
    waived = posture.waived()
    return [
        {
            "control": control,
            "compliant": compliant,
            "config_rule_result": config_rule_result(control, posture),
            # Why a control that failed as measured passes (`scp_fence`); None when not waived.
            "waived": waived.get(control),
            "ids": CONTROL_IDS[control].as_dict(),
        }
        for control, compliant in posture.controls().items()
    ]


def findings(posture: RootPosture) -> list[dict[str, Any]]:
    """The failed controls, each with its ids."""
    return [{"control": control, "ids": CONTROL_IDS[control].as_dict()} for control in posture.findings()]
