"""The three ways to choose accounts, the filters and sharding, against the sandbox."""

from __future__ import annotations

from exporter.discovery.accounts import discover, shard_of
from exporter.app import make_aws
from exporter.sandbox import MANAGEMENT_ACCOUNT_ID, Sandbox, Scenario
from exporter.engine.state import ExporterState

from .conftest import running_exporter, sample, sandbox_settings
from .scenario_expect import collected, skip_reason


async def _discover(settings):
    state = ExporterState(settings.posture_interval_seconds)
    async with make_aws(settings, state) as aws:
        return await discover(aws, settings), state


def _active_ids(scenario: Scenario) -> set[str]:
    return {a.id for a in scenario.all_accounts if collected(a)}


async def test_organization_mode_lists_active_accounts_with_ou(sandbox: Sandbox, default_scenario: Scenario) -> None:
    found, _ = await _discover(sandbox_settings(sandbox))
    assert {a.account_id for a in found.accounts} == _active_ids(default_scenario)
    # Skipped by Organizations State, each under its own reason; PENDING_ACTIVATION is collected.
    for reason in ("suspended", "pending_closure", "closed"):
        assert found.skipped[reason] == sum(1 for a in default_scenario.all_accounts if skip_reason(a) == reason) == 1, reason
    pending = [a.id for a in default_scenario.all_accounts if a.state == "PENDING_ACTIVATION"]
    assert pending and set(pending) <= {a.account_id for a in found.accounts}
    assert found.management_account_id == MANAGEMENT_ACCOUNT_ID
    by_id = {a.account_id: a for a in found.accounts}
    management = by_id[MANAGEMENT_ACCOUNT_ID]
    assert management.management and management.role_arn is None
    payments = by_id["210000000001"]
    assert payments.name == "prod-payments" and payments.ou_name == "Prod"
    assert payments.role_arn == "arn:aws:iam::210000000001:role/AwsRootExporterReadOnly"
    # root -> Workloads -> Prod
    assert len(payments.ou_path) == 3 and payments.ou_path[-1] == payments.ou_id == sandbox.ou_ids["Workloads/Prod"]
    assert payments.ou_names == ("Workloads", "Prod") and management.ou_names == ()
    # JoinedMethod and JoinedTimestamp as Organizations reports them.
    for account in default_scenario.all_accounts:
        if collected(account):
            assert by_id[account.id].joined_method == account.joined_method, account.id
            if account.joined is not None:
                assert by_id[account.id].joined == account.joined, account.id


async def test_filters_by_account_and_ou(sandbox: Sandbox, default_scenario: Scenario) -> None:
    workloads = sandbox.ou_ids["Workloads"]
    dev = sandbox.ou_ids["Workloads/Dev"]
    settings = sandbox_settings(sandbox, include_ou_ids=[workloads], exclude_ou_ids=[dev], exclude_account_ids=["210000000005"])
    found, _ = await _discover(settings)
    want = {a.id for a in default_scenario.accounts if a.ou == "Workloads/Prod" and a.id != "210000000005"}
    assert {a.account_id for a in found.accounts} == want
    assert found.skipped["filtered"] == len(_active_ids(default_scenario)) - len(want)

    found, _ = await _discover(sandbox_settings(sandbox, include_account_ids=["210000000002", "210000000004"]))
    assert [a.account_id for a in found.accounts] == ["210000000002", "210000000004"]


async def test_shards_split_accounts_disjointly(sandbox: Sandbox, default_scenario: Scenario) -> None:
    seen: list[str] = []
    for index in range(3):
        found, _ = await _discover(sandbox_settings(sandbox, shard_count=3, shard_index=index))
        ids = [a.account_id for a in found.accounts]
        assert all(shard_of(i, 3) == index for i in ids)
        assert found.skipped["other_shard"] == len(_active_ids(default_scenario)) - len(ids)
        seen += ids
    assert sorted(seen) == sorted(_active_ids(default_scenario))


async def test_roles_mode_collects_the_listed_accounts(sandbox: Sandbox) -> None:
    arns = [
        "arn:aws:iam::210000000002:role/CustomAuditRole",
        "arn:aws:iam::210000000009:role/CustomAuditRole",
    ]
    # Without the canary: it assumes the roles too, and the AssumeRole count below is the sweep's.
    settings = sandbox_settings(sandbox, account_mode="roles", role_arns=arns, canary_enabled=False)
    async with running_exporter(settings) as exporter:
        await exporter.wait_for_sweeps(1)
        families = await exporter.metrics()
    # prod-web: a password with a virtual device (MFA, not hardware).
    assert sample(families, "aws_root_credentials_present", account_id="210000000002") == 1.0
    assert sample(families, "aws_root_control_compliant", account_id="210000000002", control="mfa_enabled") == 1.0
    assert sample(families, "aws_root_control_compliant", account_id="210000000002", control="mfa_hardware") == 0.0
    assert sample(families, "aws_root_exporter_collector_success", account_id="210000000009", collector="posture") == 0.0
    assert sample(families, "aws_root_control_compliant", account_id="210000000001", control="mfa_enabled") is None
    assert sample(families, "aws_root_account_info", account_id="210000000001") is None
    # No Organizations calls and no organization features in this mode.
    assert not any(s.labels.get("operation", "").startswith("organizations:") for s in families["aws_root_exporter_aws_requests"].samples)
    assert families["aws_root_organization_feature_enabled"].samples == []
    assert families["aws_root_organization_iam_trusted_access_enabled"].samples == []
    assert exporter.state.api.requests["sts:AssumeRole"] == 2


async def test_single_mode_collects_the_callers_account(sandbox: Sandbox) -> None:
    settings = sandbox_settings(sandbox, account_mode="single")
    async with running_exporter(settings) as exporter:
        await exporter.wait_for_sweeps(1)
        families = await exporter.metrics()
    assert [s.labels["account_id"] for s in families["aws_root_account_info"].samples] == [MANAGEMENT_ACCOUNT_ID]
    assert sample(families, "aws_root_credentials_present", account_id=MANAGEMENT_ACCOUNT_ID) == 1.0
    assert sample(families, "aws_root_control_compliant", account_id=MANAGEMENT_ACCOUNT_ID, control="mfa_hardware") == 1.0
    assert exporter.state.api.requests["sts:AssumeRole"] == 0
