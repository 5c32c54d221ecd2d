"""The AWS side of the deployment: CloudFormation templates and IAM policy files.

cfn-lint must find nothing in any template. The policies must grant exactly the actions
listed per principal in deploy/iam/actions.json (the JSON files and the templates agree),
README's permission table must list exactly those, with no wildcard action, and the only
actions that change anything are the four the exporter needs: iam:GenerateCredentialReport,
sqs:DeleteMessage, sts:AssumeRole (the member role only) and sts:AssumeRoot (the audit task
policy only). tests/test_permissions_recorded.py holds the third side: what the exporter
really calls.
"""

from __future__ import annotations

import json
import re
import subprocess
from importlib import resources
from pathlib import Path
from typing import Any, Iterator

import pytest
import yaml

from exporter.activity.classify import classify, eventbridge_pattern

from .conftest import tool

ROOT = Path(__file__).resolve().parents[1]
CFN = ROOT / "deploy" / "cloudformation"
IAM = ROOT / "deploy" / "iam"
TEMPLATES = sorted(CFN.glob("*.yaml"))
POLICY_FILES = sorted(IAM.glob("*.json"))
ACTIONS = json.loads((IAM / "actions.json").read_text(encoding="utf-8"))

WRITE_ACTIONS = {
    "iam:GenerateCredentialReport",
    "sqs:DeleteMessage",
    "sts:AssumeRole",
    "sts:AssumeRoot",
}
MEMBER_ACTIONS = {
    "iam:GetAccountSummary",
    "iam:GenerateCredentialReport",
    "iam:GetCredentialReport",
    "iam:ListVirtualMFADevices",
    "cloudtrail:LookupEvents",
    "cloudtrail:DescribeTrails",
    "cloudtrail:GetTrailStatus",
    "cloudtrail:GetEventSelectors",
    "events:DescribeRule",
    "events:ListTargetsByRule",
}
READ_VERBS = ("Get", "List", "Describe", "Lookup", "Receive", "Decrypt")
AUDIT_TASK_POLICY = "arn:${AWS::Partition}:iam::aws:policy/root-task/IAMAuditRootUserCredentials"
ROOT_PATTERN = eventbridge_pattern()


# ---------------------------------------------------------------- template loading


class _CfnLoader(yaml.SafeLoader):
    """YAML loader that turns CloudFormation short-form tags into their long form."""


def _construct_tag(loader: yaml.SafeLoader, suffix: str, node: yaml.Node) -> dict[str, Any]:
    if isinstance(node, yaml.ScalarNode):
        value: Any = loader.construct_scalar(node)
    elif isinstance(node, yaml.SequenceNode):
        value = loader.construct_sequence(node, deep=True)
    else:
        value = loader.construct_mapping(node, deep=True)
    if suffix == "GetAtt" and isinstance(value, str):
        value = value.split(".", 1)
    name = "Ref" if suffix == "Ref" else "Condition" if suffix == "Condition" else f"Fn::{suffix}"
    return {name: value}


_CfnLoader.add_multi_constructor("!", _construct_tag)


def _template(name: str) -> dict[str, Any]:
    return yaml.load((CFN / name).read_text(encoding="utf-8"), Loader=_CfnLoader)  # noqa: S506 - SafeLoader subclass


def _branches(value: Any) -> Iterator[Any]:
    """Every concrete value Fn::If can take (all conditions considered), without NoValue."""
    if isinstance(value, dict) and "Fn::If" in value:
        _, when_true, when_false = value["Fn::If"]
        yield from _branches(when_true)
        yield from _branches(when_false)
    elif value == {"Ref": "AWS::NoValue"}:
        return
    else:
        yield value


def _statements(document: Any) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = []
    for doc in _branches(document):
        if isinstance(doc, dict) and "Fn::Sub" in doc:  # a JSON policy string with ${} variables
            sub = doc["Fn::Sub"]
            doc = json.loads(sub if isinstance(sub, str) else sub[0])
        statements = doc["Statement"] if isinstance(doc, dict) and "Statement" in doc else doc
        if isinstance(statements, dict):
            statements = [statements]
        for statement in statements:
            found.extend(_branches(statement))
    return found


def _as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


def _actions(statements: list[dict[str, Any]], effect: str = "Allow") -> set[str]:
    return {action for s in statements if s.get("Effect") == effect for action in _as_list(s.get("Action", []))}


def _resource_policies(template: dict[str, Any]) -> dict[str, list[dict[str, Any]]]:
    """Identity policies (ManagedPolicy, Role inline policies) by resource name."""
    result: dict[str, list[dict[str, Any]]] = {}
    for name, resource in template["Resources"].items():
        properties = resource.get("Properties", {})
        if resource["Type"] == "AWS::IAM::ManagedPolicy":
            result[name] = _statements(properties["PolicyDocument"])
        elif resource["Type"] == "AWS::IAM::Role" and properties.get("Policies"):
            result[name] = [s for p in properties.get("Policies", []) for s in _statements(p["PolicyDocument"])]
    return result


def _json_policy(name: str) -> list[dict[str, Any]]:
    return _as_list(json.loads((IAM / name).read_text(encoding="utf-8"))["Statement"])


def _is_read(action: str) -> bool:
    return action.split(":", 1)[1].startswith(READ_VERBS)


# --------------------------------------------------------------------------- cfn-lint


def test_templates_exist() -> None:
    names = {path.name for path in TEMPLATES}
    assert {"exporter-principal.yaml", "member-role.yaml", "root-activity-eventbridge.yaml"} <= names


@pytest.mark.parametrize("template", TEMPLATES, ids=[t.name for t in TEMPLATES])
def test_cfn_lint_finds_nothing(template: Path) -> None:
    proc = subprocess.run([tool("cfn-lint"), "--format", "json", str(template)], capture_output=True, text=True)
    findings = json.loads(proc.stdout or "[]")
    assert findings == [], "\n".join(
        f"{f['Rule']['Id']} line {f['Location']['Start']['LineNumber']}: {f['Message']}" for f in findings
    )
    assert proc.returncode == 0, proc.stderr


def test_cfn_lint_detects_a_bad_template(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text(
        "AWSTemplateFormatVersion: '2010-09-09'\nResources:\n  Q:\n    Type: AWS::SQS::Queue\n"
        "    Properties:\n      NoSuchProperty: 1\n",
        encoding="utf-8",
    )
    proc = subprocess.run([tool("cfn-lint"), "--format", "json", str(bad)], capture_output=True, text=True)
    assert json.loads(proc.stdout) and proc.returncode != 0


# --------------------------------------------------------------------- JSON policies


@pytest.mark.parametrize("path", POLICY_FILES, ids=[p.name for p in POLICY_FILES])
def test_json_files_parse(path: Path) -> None:
    document = json.loads(path.read_text(encoding="utf-8"))
    if path.name != "actions.json":
        assert document["Version"] == "2012-10-17"
        assert document["Statement"]
        for statement in document["Statement"]:
            assert statement["Effect"] == "Allow" and "NotAction" not in statement and "NotResource" not in statement
            assert statement.get("Sid")


def test_member_role_policy_file_grants_exactly_the_member_actions() -> None:
    statements = _json_policy("member-role-policy.json")
    assert _actions(statements) == MEMBER_ACTIONS
    assert set(ACTIONS["principals"]["member_role"]["actions"]) == MEMBER_ACTIONS


def test_exporter_policy_file_matches_actions_json() -> None:
    assert _actions(_json_policy("exporter-policy.json")) == set(ACTIONS["principals"]["exporter"]["actions"])


def test_member_trust_policy_file_names_the_exporter_only() -> None:
    (statement,) = _json_policy("member-role-trust-policy.json")
    assert statement["Action"] == "sts:AssumeRole"
    assert statement["Principal"] == {"AWS": "arn:aws:iam::<EXPORTER_ACCOUNT_ID>:root"}
    assert statement["Condition"]["ArnEquals"] == {"aws:PrincipalArn": "<EXPORTER_PRINCIPAL_ARN>"}
    assert statement["Condition"]["StringEquals"] == {"sts:ExternalId": "<EXTERNAL_ID>"}


# ------------------------------------------------------------------ least privilege


def _all_identity_statements() -> list[tuple[str, dict[str, Any]]]:
    result = []
    for name in ("exporter-principal.yaml", "member-role.yaml"):
        for resource, statements in _resource_policies(_template(name)).items():
            result.extend((f"{name}:{resource}", s) for s in statements)
    for name in ("exporter-policy.json", "member-role-policy.json"):
        result.extend((name, s) for s in _json_policy(name))
    return result


def test_no_wildcard_actions_anywhere() -> None:
    every = [(where, s) for where, s in _all_identity_statements()]
    for name in [t.name for t in TEMPLATES]:
        for resource in _template(name)["Resources"].values():
            document = resource.get("Properties", {}).get("PolicyDocument")
            if document is not None:
                every.extend((name, s) for s in _statements(document))
    for where, statement in every:
        assert "NotAction" not in statement, where
        for action in _as_list(statement.get("Action", [])):
            if statement["Effect"] == "Deny":
                continue  # deny-all statements (e.g. insecure transport) may use sqs:*
            assert "*" not in action and "?" not in action, f"{where}: wildcard action {action}"


def test_member_role_allows_only_the_read_actions() -> None:
    template = _template("member-role.yaml")
    policies = _resource_policies(template)
    assert list(policies) == ["MemberRole"]
    assert _actions(policies["MemberRole"]) == MEMBER_ACTIONS
    assert not template["Resources"]["MemberRole"]["Properties"].get("ManagedPolicyArns")
    assert [r["Type"] for r in template["Resources"].values()] == ["AWS::IAM::Role"]


def test_member_role_trust_is_limited_to_the_exporter_principal() -> None:
    role = _template("member-role.yaml")["Resources"]["MemberRole"]["Properties"]
    (statement,) = _statements(role["AssumeRolePolicyDocument"])
    assert statement["Effect"] == "Allow" and statement["Action"] == "sts:AssumeRole"
    principal = statement["Principal"]["AWS"]["Fn::Sub"]
    assert principal[0] == "arn:${AWS::Partition}:iam::${ExporterAccount}:root"
    assert principal[1]["ExporterAccount"] == {"Fn::Select": [4, {"Fn::Split": [":", {"Ref": "ExporterPrincipalArn"}]}]}
    assert statement["Condition"]["ArnEquals"] == {"aws:PrincipalArn": {"Ref": "ExporterPrincipalArn"}}
    external = statement["Condition"]["StringEquals"]["Fn::If"]
    assert external[0] == "HasExternalId" and external[1] == {"sts:ExternalId": {"Ref": "ExternalId"}}
    parameters = _template("member-role.yaml")["Parameters"]
    assert parameters["ExternalId"]["NoEcho"] is True
    assert "Default" not in parameters["ExporterPrincipalArn"], "the trusted principal must be given explicitly"


def test_exporter_principal_matches_actions_json() -> None:
    policies = _resource_policies(_template("exporter-principal.yaml"))
    assert list(policies) == ["ExporterPolicy"], "all exporter permissions live in one managed policy"
    assert _actions(policies["ExporterPolicy"]) == set(ACTIONS["principals"]["exporter"]["actions"])


def test_only_the_four_write_actions() -> None:
    assert set(ACTIONS["write_actions"]) == WRITE_ACTIONS
    for principal in ("exporter", "member_role"):
        writes = {a for a in ACTIONS["principals"][principal]["actions"] if not _is_read(a)}
        assert writes <= WRITE_ACTIONS, writes - WRITE_ACTIONS
    for where, statement in _all_identity_statements():
        for action in _as_list(statement["Action"]):
            assert _is_read(action) or action in WRITE_ACTIONS, f"{where}: {action} changes something"


def test_assume_role_only_into_the_member_role() -> None:
    for where, statement in _all_identity_statements():
        if "sts:AssumeRole" in _as_list(statement["Action"]):
            assert _as_list(statement["Action"]) == ["sts:AssumeRole"], where
            resource = statement["Resource"]
            if isinstance(resource, dict):
                assert resource == {"Fn::Sub": "arn:${AWS::Partition}:iam::*:role/${MemberRoleName}"}, where
            else:
                assert resource == "arn:aws:iam::*:role/AwsRootExporterReadOnly", where


def test_assume_root_only_with_the_audit_task_policy() -> None:
    found = 0
    for where, statement in _all_identity_statements():
        if "sts:AssumeRoot" in _as_list(statement["Action"]):
            found += 1
            assert _as_list(statement["Action"]) == ["sts:AssumeRoot"], where
            condition = statement["Condition"]["StringEquals"]["sts:TaskPolicyArn"]
            if isinstance(condition, dict):
                assert condition == {"Fn::Sub": AUDIT_TASK_POLICY}
                assert statement["Resource"] == {"Fn::Sub": "arn:${AWS::Partition}:iam::*:root"}
            else:
                assert condition == AUDIT_TASK_POLICY.replace("${AWS::Partition}", "aws")
    assert found == 2  # the template and the JSON file
    # In the template the statement exists only when EnableAssumeRootAudit is true.
    statements = _template("exporter-principal.yaml")["Resources"]["ExporterPolicy"]["Properties"]["PolicyDocument"]["Statement"]
    guarded = [s["Fn::If"] for s in statements if isinstance(s, dict) and "Fn::If" in s]
    assert any(g[0] == "AssumeRootAudit" and g[1]["Action"] == "sts:AssumeRoot" for g in guarded)
    assert _template("exporter-principal.yaml")["Parameters"]["EnableAssumeRootAudit"]["Default"] == "false"


def test_star_resources_only_for_reads_without_resource_scope() -> None:
    """Queue, bucket and key actions name their resources; "*" only where IAM offers nothing finer."""
    for where, statement in _all_identity_statements():
        actions = set(_as_list(statement["Action"]))
        if statement["Resource"] == "*":
            assert not actions & {"sts:AssumeRole", "sts:AssumeRoot", "s3:GetObject", "kms:Decrypt"}, where
            assert not any(a.startswith("sqs:") for a in actions), where


def test_actions_are_real_iam_actions() -> None:
    """Catch typos: every action exists in cfn-lint's copy of the IAM service reference."""
    policies = json.loads((resources.files("cfnlint.data.AdditionalSpecs") / "Policies.json").read_text())
    every = set()
    for group in (ACTIONS["principals"], ACTIONS["infrastructure"]):
        for principal in group.values():
            if isinstance(principal, dict) and "actions" in principal:
                every |= set(principal["actions"])
    every |= set(ACTIONS["no_permission_needed"])
    for action in sorted(every):
        service, name = action.split(":")
        assert name.lower() in policies[service]["Actions"], action


def test_actions_json_shape() -> None:
    for name, principal in ACTIONS["principals"].items():
        assert principal["description"]
        for action, when in principal["actions"].items():
            assert ":" in action and when
        for policy in principal["policies"]:
            assert (ROOT / policy).is_file(), f"{name}: {policy} does not exist"
    assert ACTIONS["no_permission_needed"] == ["sts:GetCallerIdentity"]
    session = ACTIONS["principals"]["assume_root_session"]
    assert session["granted_by"].endswith("root-task/IAMAuditRootUserCredentials")
    assert "iam:GetCredentialReport" not in session["actions"], "the audit task policy does not allow it"


# ------------------------------------------------------------ README's permission table

# Row labels in README's first column, and the principal of deploy/iam/actions.json each names.
README_PRINCIPALS = {"exporter": "exporter", "member role": "member_role", "`sts:AssumeRoot` session": "assume_root_session"}
IAM_ACTION = re.compile(r"`([a-z0-9-]+:[A-Za-z0-9]+)`")


def _readme_permission_rows(readme: str) -> list[tuple[str, list[str]]]:
    """(principal, cells) of each row of README's permission table."""
    section = readme.split("\n### AWS permissions it needs", 1)[1].split("\n### ", 1)[0]
    rows = []
    for line in section.splitlines():
        if not line.startswith("| ") or line.startswith("| principal ") or set(line) <= {"|", "-", " "}:
            continue
        cells = [cell.strip() for cell in line.strip("|").split(" | ")]
        label = next((p for prefix, p in README_PRINCIPALS.items() if cells[0].startswith(prefix)), None)
        assert label is not None, f"README permission table: unknown principal {cells[0]!r}"
        rows.append((label, cells))
    return rows


def _readme_actions(readme: str) -> dict[str, set[str]]:
    """Per principal, the IAM actions README's table names in its actions column."""
    found: dict[str, set[str]] = {}
    for principal, cells in _readme_permission_rows(readme):
        found.setdefault(principal, set()).update(IAM_ACTION.findall(cells[1]))
    return found


def test_readme_permission_table_lists_exactly_the_granted_actions() -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    expected = {name: set(principal["actions"]) for name, principal in ACTIONS["principals"].items()}
    assert _readme_actions(readme) == expected


def test_readme_table_comparison_sees_a_missing_or_extra_action() -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    assert "`kms:Decrypt`" in readme and "`organizations:ListRoots`, " in readme
    without = _readme_actions(readme.replace("`kms:Decrypt`", "KMS", 1))
    assert "kms:Decrypt" not in without["exporter"]
    extra = _readme_actions(readme.replace("`organizations:ListRoots`, ", "`organizations:ListRoots`, `organizations:ListAccounts`, ", 1))
    assert extra["exporter"] - set(ACTIONS["principals"]["exporter"]["actions"]) == {"organizations:ListAccounts"}


def test_not_recorded_permissions_are_granted_explained_and_conditioned() -> None:
    """A permission no recorded call shows (AWS checks it on a request another service makes)
    is granted only with its reason in actions.json and in README, and under a condition."""
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    rows = _readme_permission_rows(readme)
    for name, principal in ACTIONS["principals"].items():
        for action, reason in principal.get("not_recorded", {}).items():
            assert action in principal["actions"], f"{name}: {action} is not granted"
            assert len(reason) > 40, f"{name}: {action} needs its reason"
            (row,) = [cells for p, cells in rows if p == name and f"`{action}`" in cells[1]]
            assert "Not among the recorded calls" in row[3], row
    assert set(ACTIONS["principals"]["exporter"]["not_recorded"]) == {"kms:Decrypt"}
    decrypts = [s for _, s in _all_identity_statements() if "kms:Decrypt" in _as_list(s["Action"])]
    assert len(decrypts) == 2  # the template and the JSON file
    for statement in decrypts:
        assert _as_list(statement["Action"]) == ["kms:Decrypt"]
        assert statement["Condition"] == {"StringLike": {"kms:ViaService": "s3.*"}}
        assert statement["Resource"] in ({"Ref": "TrailKmsKeyArn"}, "<TRAIL_KMS_KEY_ARN>")


def test_queue_policy_grants_the_exporter_what_its_own_policy_does() -> None:
    resources_ = _template("root-activity-eventbridge.yaml")["Resources"]
    statements = _statements(resources_["QueuePolicy"]["Properties"]["PolicyDocument"])
    (consumer,) = [s for s in statements if s.get("Sid") == "ExporterConsumes"]
    sqs = {a for a in ACTIONS["principals"]["exporter"]["actions"] if a.startswith("sqs:")}
    assert set(_as_list(consumer["Action"])) == sqs == {"sqs:ReceiveMessage", "sqs:DeleteMessage"}


# ------------------------------------------------------------- EventBridge and SQS


def test_eventbridge_rule_on_default_bus_to_the_queue() -> None:
    template = _template("root-activity-eventbridge.yaml")
    resources_ = template["Resources"]
    rule = resources_["RootActivityRule"]["Properties"]
    assert rule["EventBusName"] == "default"
    assert rule["State"] == "ENABLED_WITH_ALL_CLOUDTRAIL_MANAGEMENT_EVENTS"
    assert rule["EventPattern"] == ROOT_PATTERN
    (target,) = rule["Targets"]
    assert target["Arn"] == {"Fn::GetAtt": ["Queue", "Arn"]}
    assert target["DeadLetterConfig"]["Arn"] == {"Fn::GetAtt": ["DeadLetterQueue", "Arn"]}


def test_queues_are_encrypted_with_redrive() -> None:
    resources_ = _template("root-activity-eventbridge.yaml")["Resources"]
    queue, dlq = resources_["Queue"]["Properties"], resources_["DeadLetterQueue"]["Properties"]
    assert queue["SqsManagedSseEnabled"] is True and dlq["SqsManagedSseEnabled"] is True
    assert queue["RedrivePolicy"]["deadLetterTargetArn"] == {"Fn::GetAtt": ["DeadLetterQueue", "Arn"]}
    assert queue["RedrivePolicy"]["maxReceiveCount"] == {"Ref": "MaxReceiveCount"}
    assert dlq["MessageRetentionPeriod"] >= 1209600


def test_queue_policy_allows_eventbridge_from_the_rule_only() -> None:
    resources_ = _template("root-activity-eventbridge.yaml")["Resources"]
    for policy_name, queue in (("QueuePolicy", "Queue"), ("DeadLetterRedriveAllowPolicy", "DeadLetterQueue")):
        properties = resources_[policy_name]["Properties"]
        assert properties["Queue"] == {"Ref": queue}
        statements = _statements(properties["PolicyDocument"])
        events = [s for s in statements if s.get("Principal") == {"Service": "events.amazonaws.com"}]
        assert len(events) == 1
        (allow,) = events
        assert allow["Action"] == "sqs:SendMessage" and allow["Effect"] == "Allow"
        source = allow["Condition"]["ArnEquals"]["aws:SourceArn"]
        values = [v for v in _branches(source)]
        rule_arn = {"Fn::GetAtt": ["RootActivityRule", "Arn"]}
        assert rule_arn in values or any(rule_arn in _as_list(v) for v in values)
        for value in values:
            for arn in _as_list(value):
                assert arn in (rule_arn, {"Fn::GetAtt": ["CentralBusRule", "Arn"]})
        assert any(
            s["Effect"] == "Deny" and s["Condition"] == {"Bool": {"aws:SecureTransport": "false"}} for s in statements
        )
        for statement in statements:
            if statement["Effect"] == "Allow":
                assert statement["Principal"] != "*"


def test_central_bus_accepts_only_the_organization() -> None:
    resources_ = _template("root-activity-eventbridge.yaml")["Resources"]
    statement = resources_["CentralBusPolicy"]["Properties"]["Statement"]
    assert statement["Action"] == "events:PutEvents"
    assert statement["Condition"] == {"StringEquals": {"aws:PrincipalOrgID": {"Ref": "OrganizationId"}}}
    rule = resources_["CentralBusRule"]["Properties"]
    # Read-only events (the canary) forwarded from the organization must reach it too.
    assert rule["EventPattern"] == ROOT_PATTERN and rule["State"] == "ENABLED_WITH_ALL_CLOUDTRAIL_MANAGEMENT_EVENTS"


def test_forwarder_sends_root_activity_to_the_central_bus() -> None:
    resources_ = _template("root-activity-forwarder.yaml")["Resources"]
    rule = resources_["ForwardRule"]["Properties"]
    assert rule["EventBusName"] == "default"
    assert rule["State"] == "ENABLED_WITH_ALL_CLOUDTRAIL_MANAGEMENT_EVENTS"
    assert rule["EventPattern"] == ROOT_PATTERN
    assert "RoleName" not in resources_["ForwardRole"]["Properties"], "a StackSet deploys it once per region"
    statements = _resource_policies(_template("root-activity-forwarder.yaml"))["ForwardRole"]
    assert _actions(statements) == set(ACTIONS["infrastructure"]["eventbridge_forwarder"]["actions"])
    assert all(s["Resource"] == {"Ref": "CentralBusArn"} for s in statements)


def _matches(pattern: Any, event: Any) -> bool:
    """EventBridge matching for the subset the rule uses: `$or`, nested objects, value lists."""
    if "$or" in pattern:
        return any(_matches(p, event) for p in pattern["$or"])
    for key, expected in pattern.items():
        if not isinstance(event, dict) or key not in event:
            return False
        if isinstance(expected, list):
            if event[key] not in expected:
                return False
        elif not _matches(expected, event[key]):
            return False
    return True


def test_the_rule_delivers_every_record_the_classifier_uses_and_nothing_else() -> None:
    fixtures = Path(__file__).parent / "fixtures" / "cloudtrail"
    used = ignored = 0
    for path in sorted(fixtures.glob("*.json")):
        record = json.loads(path.read_text())
        event = {"detail-type": "AWS API Call via CloudTrail", "detail": record}
        if classify(record) is not None:
            assert _matches(ROOT_PATTERN, event), path.name
            used += 1
        elif record["userIdentity"].get("type") != "Root":
            assert not _matches(ROOT_PATTERN, event), path.name
            ignored += 1
    assert used >= 20 and ignored >= 1


def test_readme_shows_the_rule_pattern_the_templates_use() -> None:
    readme = (Path(__file__).parent.parent / "README.md").read_text()
    blocks = [b.split("```", 1)[0] for b in readme.split("```json\n")[1:]]
    assert [json.loads(b) for b in blocks if '"$or"' in b] == [ROOT_PATTERN]


def test_the_checked_rule_is_named_as_the_exporter_looks_for_it_and_only_it_is_readable() -> None:
    """The configuration checks read one rule by name: both templates name their default-bus
    rule with the exporter's `forwarder_rule_name` default, and the events grants name that rule."""
    from exporter.config.settings import Settings

    default = Settings.model_fields["forwarder_rule_name"].default
    for name, resource in (("root-activity-forwarder.yaml", "ForwardRule"), ("root-activity-eventbridge.yaml", "RootActivityRule")):
        template = _template(name)
        assert template["Resources"][resource]["Properties"]["Name"] == {"Ref": "RuleName"}
        assert template["Parameters"]["RuleName"]["Default"] == default
    rule_reads = [(where, s) for where, s in _all_identity_statements() if set(_as_list(s["Action"])) & {"events:DescribeRule", "events:ListTargetsByRule"}]
    assert len(rule_reads) == 4  # member role and exporter, template and JSON file
    for where, statement in rule_reads:
        assert sorted(_as_list(statement["Action"])) == ["events:DescribeRule", "events:ListTargetsByRule"], where
        if where.endswith(".json"):
            assert statement["Resource"] == f"arn:aws:events:*:*:rule/{default}", where
        else:
            assert statement["Resource"] == {"Fn::Sub": "arn:${AWS::Partition}:events:*:${AWS::AccountId}:rule/${ForwarderRuleName}"}, where
            template = "member-role.yaml" if where.startswith("member-role") else "exporter-principal.yaml"
            assert _template(template)["Parameters"]["ForwarderRuleName"]["Default"] == default
