"""The SCP root fence through the running exporter and the sandbox organization.

moto's Organizations API over HTTP -> collect_scp_inputs (through Aws) -> evaluation in the
posture sweep -> Snapshot -> /metrics and `audit`. Scenarios are the default one (one
account per fence case) or small ones built here; changes between two sweeps go through
boto3 against the sandbox endpoint, as an administrator would make them.
"""

from __future__ import annotations

import io
import json
import re
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.config import Config

from exporter.audit import audit_report, print_table, run_audit
from exporter.sandbox import MANAGEMENT_ACCOUNT_ID, SANDBOX_ENV, Sandbox, Scenario, ScenarioError, load_scenario
from exporter.scp.evaluate import FenceResult, FenceState
from exporter.metrics.scp import snapshot_scp_families
from exporter.scp.check import ScpResult
from exporter.config.settings import SettingsError
from exporter.engine.state import Snapshot

from .conftest import ROOT, running_exporter, sample, sandbox_settings
from .scenario_expect import collected

FENCE_DOC = ROOT / "docs" / "root-fence-scp.json"
STATES = ("fenced", "not_fenced", "not_applicable", "unknown")


def orgs_client(sandbox: Sandbox) -> Any:
    """Organizations over HTTP with the sandbox's fake credentials (an administrator's view)."""
    return boto3.client(
        "organizations",
        region_name="us-east-1",
        endpoint_url=sandbox.endpoint_url,
        aws_access_key_id=SANDBOX_ENV["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=SANDBOX_ENV["AWS_SECRET_ACCESS_KEY"],
        config=Config(retries={"max_attempts": 1}),
    )


def fence_state(families: dict[str, Any], account_id: str) -> str | None:
    """The one state whose series is 1 for the account (and check fenced and not_applicable
    are 0 otherwise, the other states absent)."""
    values = {state: sample(families, "aws_root_scp_fence_state", account_id=account_id, state=state) for state in STATES}
    if all(v is None for v in values.values()):
        return None
    current = next(state for state, v in values.items() if v == 1.0)
    assert values == {s: 1.0 if s == current else (0.0 if s in ("fenced", "not_applicable") else None) for s in STATES}, (account_id, values)
    return current


def fence_policy(families: dict[str, Any], account_id: str) -> str | None:
    """The policy in the account's aws_root_scp_fence_info series; None when it has none
    (only a fenced account has one, and never with an empty policy_id)."""
    family = families.get("aws_root_scp_fence_info")
    series = [s for s in (family.samples if family else []) if s.labels["account_id"] == account_id]
    if not series:
        return None
    assert len(series) == 1 and series[0].value == 1.0 and series[0].labels["policy_id"], series
    return series[0].labels["policy_id"]


def scenario_with(base: Scenario, **organization: Any) -> Scenario:
    data = base.model_dump(mode="json")
    data["organization"].update(organization)
    return Scenario.model_validate(data)


def small_scenario(scps: list[dict[str, Any]], accounts: list[tuple[str, str, str]], **organization: Any) -> Scenario:
    """management plus (id, name, ou) accounts, every root with hardware MFA."""
    return Scenario.model_validate(
        {
            "organization": {"scps": scps, **organization},
            "management": {"id": MANAGEMENT_ACCOUNT_ID, "name": "management", "root": {"mfa": "hardware"}},
            "accounts": [{"id": i, "name": n, "ou": ou, "root": {"mfa": "hardware"}} for i, n, ou in accounts],
        }
    )


def doc(statement: dict[str, Any]) -> dict[str, Any]:
    return {"Version": "2012-10-17", "Statement": [statement]}


ROOT_DENY = doc(
    {
        "Effect": "Deny",
        "Action": "*",
        "Resource": "*",
        "Condition": {"StringLike": {"aws:PrincipalArn": "arn:aws:iam::*:root"}},
    }
)


# -- the default scenario: one account per case ----------------------------------------------


def default_expectations(scenario: Scenario) -> dict[str, tuple[str, str | None]]:
    """account name -> (state, name of the policy reported in aws_root_scp_fence_info)."""
    want: dict[str, tuple[str, str | None]] = {
        "management": ("not_applicable", None),  # DenyRootUser is attached to it: no effect
        "log-archive": ("fenced", "DenyRootUser"),  # attached to the account itself
        "legacy-billing": ("fenced", "DenyRootExceptRootOnlyTasks"),  # NotAction fence on the account
        "security-tooling": ("not_fenced", None),  # its OU's deny tests aws:PrincipalType
        "shared-services": ("not_fenced", None),  # Infrastructure: no fence at all
        "network": ("not_fenced", None),  # its posture fails (no role); the fence is still known
        "acquired-startup": ("not_fenced", None),  # Infrastructure
        "legacy-reseller": ("not_fenced", None),  # Legacy: only legacy-billing has its own fence
    }
    for account in scenario.accounts:
        if account.ou.startswith("Workloads/"):  # inherited from Workloads, two levels up
            want[account.name] = ("fenced", "DenyRootUser")
    return want


async def test_default_scenario_reports_each_fence_case(sandbox: Sandbox, default_scenario: Scenario) -> None:
    async with running_exporter(sandbox_settings(sandbox)) as exporter:
        await exporter.wait_for_sweeps(1)
        families = await exporter.metrics()

    want = default_expectations(default_scenario)
    active = [a for a in default_scenario.all_accounts if collected(a)]
    assert {a.name for a in active} == set(want), "every collected account has an expectation"
    for account in active:
        state, policy = want[account.name]
        assert fence_state(families, account.id) == state, account.name
        assert fence_policy(families, account.id) == (sandbox.scp_ids[policy] if policy else None), account.name
    for account in default_scenario.accounts:
        if not collected(account):
            assert fence_state(families, account.id) is None  # not collected: no fence series

    assert {a.ou for a in active if want[a.name][0] == "fenced" and a.ou.startswith("Workloads/")} == {
        "Workloads/Prod",
        "Workloads/Dev",
    }
    assert sample(families, "aws_root_scp_policy_type_enabled") == 1.0
    # The collector's health, under the management account; an error series appears with its
    # first error, so a clean check shows none.
    assert sample(families, "aws_root_exporter_collector_success", account_id=MANAGEMENT_ACCOUNT_ID, collector="scp") == 1.0
    assert sample(families, "aws_root_exporter_collector_last_success_timestamp_seconds", account_id=MANAGEMENT_ACCOUNT_ID, collector="scp") > 0
    for reason in ("access_denied", "throttled", "timeout", "error"):
        assert sample(families, "aws_root_exporter_collector_errors_total", account_id=MANAGEMENT_ACCOUNT_ID, collector="scp", reason=reason) is None
    # Each policy is read once per sweep, not once per account: FullAWSAccess + the scenario's.
    policies = 1 + len(default_scenario.organization.scps)
    assert sample(families, "aws_root_exporter_aws_requests_total", operation="organizations:DescribePolicy") == policies
    assert sample(families, "aws_root_exporter_aws_requests_total", operation="organizations:ListTargetsForPolicy") == policies
    assert sample(families, "aws_root_exporter_aws_requests_total", operation="organizations:ListPolicies") == 1
    # The fence series carry no policy id: it lives in the info metric only.
    assert {frozenset(s.labels) for s in families["aws_root_scp_fence_state"].samples} == {frozenset({"account_id", "state"})}


def test_default_scenario_fence_is_the_shipped_policy(default_scenario: Scenario) -> None:
    """The sandbox's DenyRootUser is docs/root-fence-scp.json, so the demo shows what the README ships."""
    policy = next(p for p in default_scenario.organization.scps if p.name == "DenyRootUser")
    assert json.loads(policy.document()) == json.loads(FENCE_DOC.read_text())


async def test_shipped_policy_json_is_recognised_as_a_fence(sandbox: Sandbox) -> None:
    """docs/root-fence-scp.json, attached verbatim (JSON text) to the root, fences every member."""
    scenario = small_scenario(
        [{"name": "DenyRootUser", "content": FENCE_DOC.read_text(), "targets": ["root"]}],
        [("310000000001", "app", "Apps"), ("310000000002", "at-root", "")],
    )
    sandbox.reset(scenario)
    async with running_exporter(sandbox_settings(sandbox)) as exporter:
        await exporter.wait_for_sweeps(1)
        families = await exporter.metrics()
    for account_id in ("310000000001", "310000000002"):
        assert fence_state(families, account_id) == "fenced"
        assert fence_policy(families, account_id) == sandbox.scp_ids["DenyRootUser"]
    assert fence_state(families, MANAGEMENT_ACCOUNT_ID) == "not_applicable"


async def test_inheritance_through_nested_ous(sandbox: Sandbox) -> None:
    """A fence on an OU reaches accounts any number of OUs below it, and nothing beside it."""
    scenario = small_scenario(
        [
            {"name": "DenyRootUser", "content": ROOT_DENY, "targets": ["Workloads"]},
            {"name": "DenyRootDirect", "content": ROOT_DENY, "targets": ["direct"]},
        ],
        [
            ("310000000001", "deep", "Workloads/Prod/EU/Web"),
            ("310000000002", "mid", "Workloads/Prod"),
            ("310000000003", "top", "Workloads"),
            ("310000000004", "beside", "Platform/Prod/EU"),
            ("310000000005", "direct", "Platform/Prod/EU"),
            ("310000000006", "at-root", ""),
        ],
    )
    sandbox.reset(scenario)
    async with running_exporter(sandbox_settings(sandbox)) as exporter:
        await exporter.wait_for_sweeps(1)
        families = await exporter.metrics()
    fence, direct = sandbox.scp_ids["DenyRootUser"], sandbox.scp_ids["DenyRootDirect"]
    for account_id in ("310000000001", "310000000002", "310000000003"):
        assert fence_state(families, account_id) == "fenced"
        assert fence_policy(families, account_id) == fence
    assert fence_state(families, "310000000004") == "not_fenced"  # a sibling OU path of the same names
    assert fence_state(families, "310000000005") == "fenced"
    assert fence_policy(families, "310000000005") == direct
    assert fence_state(families, "310000000006") == "not_fenced"
    # 5 OUs above Web alone; still one DescribePolicy per policy.
    assert sample(families, "aws_root_exporter_aws_requests_total", operation="organizations:DescribePolicy") == 3


# -- changes between two sweeps -------------------------------------------------------------


async def test_policy_detached_between_two_sweeps(sandbox: Sandbox, default_scenario: Scenario, caplog: pytest.LogCaptureFixture) -> None:
    """Detaching the OU fence turns fenced 1 -> 0 for every account below it, on the next sweep."""
    workloads = [a.id for a in default_scenario.accounts if a.ou.startswith("Workloads/")]
    log_archive = default_scenario.account("log-archive").id
    async with running_exporter(sandbox_settings(sandbox)) as exporter:
        await exporter.wait_for_sweeps(1)
        before = await exporter.metrics()
        for account_id in workloads:
            assert sample(before, "aws_root_scp_fence_state", account_id=account_id, state="fenced") == 1.0

        orgs_client(sandbox).detach_policy(PolicyId=sandbox.scp_ids["DenyRootUser"], TargetId=sandbox.ou_ids["Workloads"])
        await exporter.exporter.sweeper.sweep()
        after = await exporter.metrics()

    for account_id in workloads:
        # The same series goes to 0 (an alert on fenced == 0 fires; it does not just vanish).
        assert sample(after, "aws_root_scp_fence_state", account_id=account_id, state="fenced") == 0.0
        assert sample(after, "aws_root_scp_fence_state", account_id=account_id, state="not_fenced") == 1.0
        assert fence_policy(after, account_id) is None
    assert fence_state(after, log_archive) == "fenced"  # attached to the account itself: untouched
    lost = [r for r in caplog.records if r.getMessage() == "SCP root fence lost"]
    assert sorted(r.account_id for r in lost) == sorted(workloads)
    assert {r.was_fenced_by for r in lost} == {sandbox.scp_ids["DenyRootUser"]}
    policies = 1 + len(default_scenario.organization.scps)
    assert sample(after, "aws_root_exporter_aws_requests_total", operation="organizations:DescribePolicy") == 2 * policies
    assert sample(after, "aws_root_exporter_sweeps_total") == 2.0


async def test_account_moved_out_of_the_fenced_ou(sandbox: Sandbox, default_scenario: Scenario) -> None:
    payments = default_scenario.account("prod-payments").id
    async with running_exporter(sandbox_settings(sandbox)) as exporter:
        await exporter.wait_for_sweeps(1)
        assert fence_state(await exporter.metrics(), payments) == "fenced"
        orgs_client(sandbox).move_account(
            AccountId=payments,
            SourceParentId=sandbox.ou_ids["Workloads/Prod"],
            DestinationParentId=sandbox.ou_ids["Infrastructure"],
        )
        await exporter.exporter.sweeper.sweep()
        assert fence_state(await exporter.metrics(), payments) == "not_fenced"


async def test_scp_type_disabled_in_the_scenario(sandbox: Sandbox, default_scenario: Scenario) -> None:
    """Policies exist and are attached, but the SCP type is off: nothing is enforced, nothing fenced."""
    sandbox.reset(scenario_with(default_scenario, scp_enabled=False))
    async with running_exporter(sandbox_settings(sandbox)) as exporter:
        await exporter.wait_for_sweeps(1)
        families = await exporter.metrics()
    assert sample(families, "aws_root_scp_policy_type_enabled") == 0.0
    active = [a for a in default_scenario.all_accounts if collected(a)]
    for account in active:
        want = "not_applicable" if account.id == MANAGEMENT_ACCOUNT_ID else "not_fenced"
        assert fence_state(families, account.id) == want, account.name
        assert sample(families, "aws_root_scp_fence_state", account_id=account.id, state="fenced") == 0.0
        assert fence_policy(families, account.id) is None
    # No policy is read when none is enforced.
    assert sample(families, "aws_root_exporter_aws_requests_total", operation="organizations:DescribePolicy") is None
    assert sample(families, "aws_root_exporter_collector_success", account_id=MANAGEMENT_ACCOUNT_ID, collector="scp") == 1.0


async def test_scp_type_disabled_between_two_sweeps(sandbox: Sandbox, default_scenario: Scenario) -> None:
    payments = default_scenario.account("prod-payments").id
    async with running_exporter(sandbox_settings(sandbox)) as exporter:
        await exporter.wait_for_sweeps(1)
        before = await exporter.metrics()
        orgs_client(sandbox).disable_policy_type(RootId=sandbox.root_id, PolicyType="SERVICE_CONTROL_POLICY")
        await exporter.exporter.sweeper.sweep()
        after = await exporter.metrics()
    assert sample(before, "aws_root_scp_policy_type_enabled") == 1.0
    assert sample(after, "aws_root_scp_policy_type_enabled") == 0.0
    assert sample(before, "aws_root_scp_fence_state", account_id=payments, state="fenced") == 1.0
    assert sample(after, "aws_root_scp_fence_state", account_id=payments, state="fenced") == 0.0
    assert not any(s.value for s in after["aws_root_scp_fence_state"].samples if s.labels["state"] == "fenced")


# -- failures: counted, never "fenced", never fatal -------------------------------------------


def _denied(*_: Any, **__: Any) -> Any:
    from moto.organizations.exceptions import OrganizationsClientError

    raise OrganizationsClientError("AccessDeniedException", "denied by the test")


async def test_unreadable_policy_is_unknown_not_fenced(sandbox: Sandbox, default_scenario: Scenario, monkeypatch: pytest.MonkeyPatch) -> None:
    from moto.organizations.models import OrganizationsBackend

    hidden = sandbox.scp_ids["DenyRootUser"]
    original = OrganizationsBackend.describe_policy

    def describe_policy(self: Any, **kwargs: Any) -> Any:
        if kwargs["PolicyId"] == hidden:
            _denied()
        return original(self, **kwargs)

    monkeypatch.setattr(OrganizationsBackend, "describe_policy", describe_policy)
    async with running_exporter(sandbox_settings(sandbox)) as exporter:
        await exporter.wait_for_sweeps(1)
        families = await exporter.metrics()

    for account in default_scenario.accounts:
        if account.ou.startswith("Workloads/"):
            assert fence_state(families, account.id) == "unknown", account.name
    assert fence_state(families, default_scenario.account("log-archive").id) == "unknown"
    # Other accounts are decided by what could be read.
    assert fence_state(families, default_scenario.account("legacy-billing").id) == "fenced"
    assert fence_state(families, default_scenario.account("shared-services").id) == "not_fenced"
    # The check itself ran; the failed read is an API error, visible per operation.
    assert sample(families, "aws_root_exporter_collector_success", account_id=MANAGEMENT_ACCOUNT_ID, collector="scp") == 1.0
    assert sample(families, "aws_root_exporter_aws_request_errors_total", operation="organizations:DescribePolicy", reason="access_denied") == 1.0


async def test_failed_check_keeps_the_last_result_and_is_counted(sandbox: Sandbox, default_scenario: Scenario, monkeypatch: pytest.MonkeyPatch) -> None:
    from moto.organizations.models import OrganizationsBackend

    payments = default_scenario.account("prod-payments").id
    async with running_exporter(sandbox_settings(sandbox)) as exporter:
        await exporter.wait_for_sweeps(1)
        first = await exporter.metrics()
        checked = sample(first, "aws_root_exporter_collector_last_success_timestamp_seconds", account_id=MANAGEMENT_ACCOUNT_ID, collector="scp")

        monkeypatch.setattr(OrganizationsBackend, "list_policies", _denied)  # discovery never lists policies
        await exporter.exporter.sweeper.sweep()
        second = await exporter.metrics()

    assert sample(second, "aws_root_exporter_collector_success", account_id=MANAGEMENT_ACCOUNT_ID, collector="scp") == 0.0
    assert sample(second, "aws_root_exporter_collector_errors_total", account_id=MANAGEMENT_ACCOUNT_ID, collector="scp", reason="access_denied") == 1.0
    assert sample(second, "aws_root_exporter_collector_last_success_timestamp_seconds", account_id=MANAGEMENT_ACCOUNT_ID, collector="scp") == checked
    assert fence_state(second, payments) == "fenced"  # the last known result, its age shown above
    # The posture sweep went on.
    assert sample(second, "aws_root_exporter_sweeps_total") == 2.0
    assert sample(second, "aws_root_exporter_collector_success", account_id=payments, collector="posture") == 1.0


def test_account_unseen_by_the_last_check_is_unknown() -> None:
    from exporter.discovery.accounts import Account

    result = ScpResult(scp_enabled=True, fences={"210000000001": FenceResult(FenceState.fenced, policy_ids=("p-fence1234",))})
    snapshot = Snapshot(accounts=(Account("210000000001"), Account("210000000099")), scp=result)
    families = {f.name: f for f in snapshot_scp_families(snapshot)}
    values = {(s.labels["account_id"], s.labels["state"]): s.value for s in families["aws_root_scp_fence_state"].samples}
    assert values[("210000000001", "fenced")] == 1.0
    assert values[("210000000099", "unknown")] == 1.0
    assert snapshot_scp_families(Snapshot(accounts=(Account("210000000001"),))) == []


# -- settings, filters, modes ------------------------------------------------------------------


async def test_fence_only_for_the_accounts_collected(sandbox: Sandbox, default_scenario: Scenario) -> None:
    payments = default_scenario.account("prod-payments").id
    async with running_exporter(sandbox_settings(sandbox, include_account_ids=[payments])) as exporter:
        await exporter.wait_for_sweeps(1)
        families = await exporter.metrics()
    assert {s.labels["account_id"] for s in families["aws_root_scp_fence_state"].samples} == {payments}
    assert fence_state(families, payments) == "fenced"


async def test_scp_check_off(sandbox: Sandbox) -> None:
    async with running_exporter(sandbox_settings(sandbox, scp_check=False)) as exporter:
        await exporter.wait_for_sweeps(1)
        families = await exporter.metrics()
    assert "aws_root_scp_fence_state" not in families
    assert "aws_root_scp_policy_type_enabled" not in families
    assert sample(families, "aws_root_exporter_collector_success", account_id=MANAGEMENT_ACCOUNT_ID, collector="scp") is None
    assert sample(families, "aws_root_exporter_aws_requests_total", operation="organizations:ListPolicies") is None


async def test_no_scp_check_outside_organization_mode(sandbox: Sandbox) -> None:
    async with running_exporter(sandbox_settings(sandbox, account_mode="single")) as exporter:
        await exporter.wait_for_sweeps(1)
        families = await exporter.metrics()
    assert "aws_root_scp_fence_state" not in families
    assert sample(families, "aws_root_exporter_aws_requests_total", operation="organizations:DescribePolicy") is None


async def test_sensitive_actions_setting(sandbox: Sandbox) -> None:
    """Deny iam:* to root is no fence by default, a fence when only IAM actions are sensitive."""
    iam_only = doc(
        {
            "Effect": "Deny",
            "Action": "iam:*",
            "Resource": "*",
            "Condition": {"ArnLike": {"aws:PrincipalArn": "arn:aws:iam::*:root"}},
        }
    )
    sandbox.reset(small_scenario([{"name": "DenyRootIam", "content": iam_only, "targets": ["root"]}], [("310000000001", "app", "Apps")]))
    async with running_exporter(sandbox_settings(sandbox)) as exporter:
        await exporter.wait_for_sweeps(1)
        assert fence_state(await exporter.metrics(), "310000000001") == "not_fenced"
    settings = sandbox_settings(sandbox, scp_sensitive_actions=["iam:CreateAccessKey", "iam:DeleteLoginProfile"])
    async with running_exporter(settings) as exporter:
        await exporter.wait_for_sweeps(1)
        assert fence_state(await exporter.metrics(), "310000000001") == "fenced"


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"scp_sensitive_actions": ["CreateAccessKey"]}, "scp_sensitive_actions: must be IAM actions"),
        ({"scp_sensitive_actions": ["iam:*"], "scp_check": False}, "scp_sensitive_actions: is only used when scp_check is true"),
    ],
)
def test_bad_scp_settings(overrides: dict[str, Any], message: str) -> None:
    from exporter.config.settings import load_settings

    with pytest.raises(SettingsError) as error:
        load_settings(None, overrides)
    assert str(error.value).startswith(message)


# -- audit --------------------------------------------------------------------------------------


async def test_audit_shows_the_fence_per_account(sandbox: Sandbox, default_scenario: Scenario) -> None:
    report = audit_report(await run_audit(sandbox_settings(sandbox)))
    by_name = {a["account_name"]: a for a in report["accounts"]}
    for name, (state, policy) in default_expectations(default_scenario).items():
        fence = by_name[name]["scp_fence"]
        assert fence["state"] == state, name
        if policy:
            assert fence["policy_ids"][0] == sandbox.scp_ids[policy]
            assert fence["policy_names"][0] == policy
    legacy = by_name["legacy-billing"]["scp_fence"]
    assert "iam:EnableMFADevice" in legacy["exceptions"]
    security = by_name["security-tooling"]["scp_fence"]
    assert security["code"] == "conditional_only"
    assert security["conditional_policy_ids"] == [sandbox.scp_ids["DenyRootByPrincipalType"]]
    assert report["scp"]["status"] == "ok" and report["scp"]["policy_type_enabled"] is True
    json.dumps(report)  # JSON-serialisable as printed by --format json

    out = io.StringIO()
    print_table(report, out)
    lines = out.getvalue().splitlines()
    header = lines[0].split()
    assert "FENCE" in header
    column = header.index("FENCE")
    rows = {line.split()[1]: line.split()[column] for line in lines[1:] if re.match(r"^\d{12}\s", line) and "ERROR" not in line}
    assert rows["management"] == "n/a"
    assert rows["prod-payments"] == "fenced"
    assert rows["security-tooling"] == "NOT-FENCED"
    assert rows["legacy-billing"] == "fenced-except"
    want = default_expectations(default_scenario)
    fenced = sum(1 for state, _ in want.values() if state == "fenced")
    not_fenced = sum(1 for state, _ in want.values() if state == "not_fenced")
    assert f"SCP root fence: {fenced} fenced, {not_fenced} not fenced, 0 unknown member accounts; SCP policy type enabled" in out.getvalue()


async def test_audit_without_scp_check(sandbox: Sandbox) -> None:
    report = audit_report(await run_audit(sandbox_settings(sandbox, scp_check=False)))
    assert report["scp"] is None
    assert all(a["scp_fence"] is None for a in report["accounts"])


# -- scenario file and docs ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("scps", "message"),
    [
        ([{"name": "P", "content": ROOT_DENY, "targets": ["Nowhere"]}], "target 'Nowhere' is neither root"),
        ([{"name": "P", "content": "{not json", "targets": []}], "is not valid JSON"),
        ([{"name": "P", "content": ROOT_DENY}, {"name": "P", "content": ROOT_DENY}], "SCP names used twice: P"),
    ],
)
def test_bad_scenario_scps(tmp_path: Path, scps: list[dict[str, Any]], message: str) -> None:
    data = {"organization": {"scps": scps}, "management": {"id": MANAGEMENT_ACCOUNT_ID, "name": "management"}}
    path = tmp_path / "scenario.yaml"
    path.write_text(json.dumps(data))
    with pytest.raises(ScenarioError, match=re.escape(message)):
        load_scenario(path)
