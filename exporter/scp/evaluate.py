"""Is each member account's root user fenced by a service control policy (SCP)?

Pure evaluation: no I/O. `exporter.scp.collect` reads the inputs from AWS Organizations;
the rule itself is explained in docs/scp.md.

An account is *fenced* when an SCP that applies to it (attached to the account, to any OU
above it, or to the organization root) has a statement that certainly denies its root user
everything (or every configured sensitive action). A statement certainly denies root when:

- `Effect` is `Deny` and `Resource` is `*` (no `NotResource`, no `Principal`);
- `Action` covers `*` (or the sensitive actions), or `NotAction` lists the exceptions;
- every condition in it is known to hold for the root principal
  `arn:<partition>:iam::<account>:root`. Only `aws:PrincipalArn` conditions are evaluated;
  any other condition key makes the statement *conditional*: reported, never a fence.
  The one exception is the exemption of sts:AssumeRoot sessions (`Null` on
  `aws:AssumedRoot`): such a statement fences every use of root credentials and the
  result says so (`assumed_root_exempt`).

Unknowns never become "fenced": a policy whose content or targets could not be read and
that could apply to the account turns an otherwise unfenced account into `unknown`.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from enum import Enum
from functools import lru_cache
from typing import Any


__all__ = [
    "FenceResult",
    "FenceState",
    "OrgTree",
    "ScpInputs",
    "ScpPolicy",
    "evaluate",
    "evaluate_inputs",
    "glob_match",
]


class FenceState(str, Enum):
    fenced = "fenced"
    not_fenced = "not_fenced"
    not_applicable = "not_applicable"
    unknown = "unknown"


# Machine-readable reasons, one per way a result is reached (FenceResult.code).
CODE_FENCE = "fence"
CODE_NO_FENCE = "no_fence"
CODE_CONDITIONAL_ONLY = "conditional_only"
CODE_MANAGEMENT = "management_account"
CODE_SCP_DISABLED = "scp_disabled"
CODE_UNREADABLE = "unreadable_policy"


@dataclass(frozen=True)
class OrgTree:
    """The organization as SCP inheritance sees it.

    `ou_parents` maps every OU id to its parent (an OU id or the root id);
    `account_parents` maps every account id to its parent.
    """

    root_id: str
    ou_parents: Mapping[str, str]
    account_parents: Mapping[str, str]
    management_account_id: str | None = None
    partition: str = "aws"

    def path(self, account_id: str) -> list[str]:
        """The account id, then every parent up to and including the root."""
        chain = [account_id]
        node = self.account_parents.get(account_id)
        seen: set[str] = set()
        while node is not None and node not in seen:
            seen.add(node)
            chain.append(node)
            if node == self.root_id:
                break
            node = self.ou_parents.get(node)
        return chain


@dataclass(frozen=True)
class ScpPolicy:
    """One SCP. `content` is the policy JSON text, None when it could not be read."""

    policy_id: str
    name: str = ""
    content: str | None = None
    aws_managed: bool = False


@dataclass(frozen=True)
class ScpInputs:
    """Everything `evaluate` needs, as read in one sweep by `collect_scp_inputs`.

    `targets` maps a policy id to the root/OU/account ids it is attached to; a policy
    missing from it has unknown targets. `unreadable` maps a policy id to the error that
    kept its content or its targets from being read.
    """

    org: OrgTree
    policies: tuple[ScpPolicy, ...]
    targets: Mapping[str, frozenset[str]]
    scp_enabled: bool
    unreadable: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class FenceResult:
    state: FenceState
    policy_ids: tuple[str, ...] = ()
    """Policies providing the fence, in path order (account first, root last)."""
    exceptions: tuple[str, ...] = ()
    """Actions the fence leaves allowed to root (from `NotAction`); empty for a full deny."""
    assumed_root_exempt: bool = False
    """The fence lets centralized-root-access (sts:AssumeRoot) sessions through."""
    conditional_policy_ids: tuple[str, ...] = ()
    """Applicable policies with a root deny that extra conditions may switch off."""
    code: str = ""
    reason: str = ""


# --- IAM matching -------------------------------------------------------------------


@lru_cache(maxsize=4096)
def _glob_regex(pattern: str, ignore_case: bool) -> re.Pattern[str]:
    parts = []
    for char in pattern:
        if char == "*":
            parts.append(".*")
        elif char == "?":
            parts.append(".")
        else:
            parts.append(re.escape(char))
    return re.compile("".join(parts), re.DOTALL | (re.IGNORECASE if ignore_case else 0))


def glob_match(pattern: str, value: str, *, ignore_case: bool = False) -> bool:
    """IAM wildcard match: `*` is any run of characters (also empty), `?` one character."""
    return _glob_regex(pattern, ignore_case).fullmatch(value) is not None


def _arn_like(pattern: str, arn: str) -> bool:
    # ArnLike/ArnEquals compare each of the six colon-delimited parts separately, so a `*`
    # never spans a colon except inside the last (resource) part.
    pattern_parts = pattern.split(":", 5)
    arn_parts = arn.split(":", 5)
    if len(pattern_parts) != 6 or len(arn_parts) != 6:
        return False
    return all(glob_match(p, a) for p, a in zip(pattern_parts, arn_parts, strict=True))


def _action_matches(pattern: str, action: str) -> bool:
    # Action names are case-insensitive in IAM.
    return glob_match(pattern, action, ignore_case=True)


def _as_list(value: Any) -> list[Any]:
    if value is None:
        return []
    if isinstance(value, list):
        return value
    return [value]


# --- conditions ---------------------------------------------------------------------

_TRUE, _FALSE, _UNKNOWN = "true", "false", "unknown"
# True for requests made with root credentials, false in centralized-root-access
# (sts:AssumeRoot) sessions: the AWS sample and Control Tower's ExemptAssumeRoot form.
_TRUE_EXCEPT_ASSUMED_ROOT = "true_except_assumed_root"

# operator (lower case, no IfExists/set prefix) -> (matcher, negated)
_PRINCIPAL_ARN_OPERATORS = {
    "stringequals": (lambda p, v: p == v, False),
    "stringequalsignorecase": (lambda p, v: p.lower() == v.lower(), False),
    "stringlike": (glob_match, False),
    "arnequals": (_arn_like, False),
    "arnlike": (_arn_like, False),
    "stringnotequals": (lambda p, v: p == v, True),
    "stringnotequalsignorecase": (lambda p, v: p.lower() == v.lower(), True),
    "stringnotlike": (glob_match, True),
    "arnnotequals": (_arn_like, True),
    "arnnotlike": (_arn_like, True),
}


def _assumed_root_outcome(operator: str, values: Any) -> str:
    # aws:AssumedRoot is "true" in an AssumeRoot session and absent otherwise.
    flags = [str(v).lower() for v in _as_list(values)]
    op = operator.lower()
    if (op == "null" and flags == ["true"]) or (op == "boolifexists" and flags == ["false"]):
        return _TRUE_EXCEPT_ASSUMED_ROOT
    return _UNKNOWN


def _condition_outcome(operator: str, key: str, values: Any, root_arn: str) -> str:
    """Whether one condition (operator, key, values) holds for a request by root."""
    if key.lower() == "aws:assumedroot":
        return _assumed_root_outcome(operator, values)
    if key.lower() != "aws:principalarn":
        return _UNKNOWN
    op = operator.lower()
    # aws:PrincipalArn is single-valued and always present: the set-operator prefixes and
    # IfExists do not change the outcome for it.
    for prefix in ("foranyvalue:", "forallvalues:"):
        if op.startswith(prefix):
            op = op[len(prefix) :]
    if op.endswith("ifexists"):
        op = op[: -len("ifexists")]
    if op not in _PRINCIPAL_ARN_OPERATORS:
        return _UNKNOWN
    matcher, negated = _PRINCIPAL_ARN_OPERATORS[op]
    patterns = _as_list(values)
    if not patterns or not all(isinstance(p, str) for p in patterns):
        return _UNKNOWN
    if any("${" in p for p in patterns):  # policy variables: not resolved here
        return _UNKNOWN
    matched = any(matcher(p, root_arn) for p in patterns)
    return _TRUE if matched != negated else _FALSE


def _conditions_outcome(condition: Any, root_arn: str) -> str:
    if condition is None:
        return _TRUE
    if not isinstance(condition, dict):
        return _UNKNOWN
    outcomes = []
    for operator, block in condition.items():
        if not isinstance(block, dict) or not block:
            outcomes.append(_UNKNOWN)
            continue
        for key, values in block.items():
            outcomes.append(_condition_outcome(str(operator), str(key), values, root_arn))
    if _FALSE in outcomes:
        return _FALSE
    if _UNKNOWN in outcomes:
        return _UNKNOWN
    if _TRUE_EXCEPT_ASSUMED_ROOT in outcomes:
        return _TRUE_EXCEPT_ASSUMED_ROOT
    return _TRUE


# --- statements ---------------------------------------------------------------------


@dataclass(frozen=True)
class _RootDeny:
    """A Deny statement whose scope covers every resource, before its conditions."""

    policy_id: str
    actions: tuple[str, ...]  # Action patterns; empty when NotAction is used
    not_actions: tuple[str, ...] | None  # NotAction patterns (the exceptions)
    condition: Any

    def denies(self, action: str) -> bool:
        if self.not_actions is not None:
            return not any(_action_matches(p, action) for p in self.not_actions)
        return any(_action_matches(p, action) for p in self.actions)

    @property
    def denies_everything(self) -> bool:
        return self.not_actions is None and any(p in ("*", "*:*") for p in self.actions)


def _deny_statements(policy_id: str, document: Any) -> list[_RootDeny]:
    """Deny statements of a policy that cover all resources (conditions not yet checked)."""
    if not isinstance(document, dict):
        raise ValueError("policy document is not a JSON object")
    denies = []
    for stmt in _as_list(document.get("Statement")):
        if not isinstance(stmt, dict) or stmt.get("Effect") != "Deny":
            continue
        # A statement scoped to some resources or principals fences only part of root.
        if "NotResource" in stmt or "Principal" in stmt or "NotPrincipal" in stmt:
            continue
        resources = _as_list(stmt.get("Resource", "*"))
        if "*" not in resources:
            continue
        if "NotAction" in stmt:
            not_actions = tuple(str(a) for a in _as_list(stmt["NotAction"]))
            if any(a in ("*", "*:*") for a in not_actions):
                continue  # excepts everything: denies nothing
            denies.append(_RootDeny(policy_id, (), not_actions, stmt.get("Condition")))
        else:
            actions = tuple(str(a) for a in _as_list(stmt.get("Action")))
            if actions:
                denies.append(_RootDeny(policy_id, actions, None, stmt.get("Condition")))
    return denies


def _parse(policy: ScpPolicy) -> list[_RootDeny] | None:
    """The policy's resource-wide Deny statements; None when the content is unknown."""
    if policy.content is None:
        return None
    try:
        return _deny_statements(policy.policy_id, json.loads(policy.content))
    except (ValueError, TypeError):
        return None


# --- evaluation ---------------------------------------------------------------------


@dataclass(frozen=True)
class _Coverage:
    fenced: bool
    policy_ids: tuple[str, ...]
    exceptions: tuple[str, ...]


def _coverage(statements: Sequence[_RootDeny], sensitive_actions: Sequence[str] | None) -> _Coverage:
    """Whether these root-deny statements (all known to apply) together fence root."""
    if not statements:
        return _Coverage(False, (), ())
    if sensitive_actions:
        # Denies add up across statements and policies: each sensitive action needs one.
        providers: list[str] = []
        for action in sensitive_actions:
            stmt = next((s for s in statements if s.denies(action)), None)
            if stmt is None:
                return _Coverage(False, (), ())
            providers.append(stmt.policy_id)
        full = [s for s in statements if s.denies_everything]
        exceptions = () if full else _smallest_exceptions(statements)
        return _Coverage(True, tuple(dict.fromkeys(providers)), exceptions)
    full = [s for s in statements if s.denies_everything]
    if full:
        return _Coverage(True, tuple(dict.fromkeys(s.policy_id for s in full)), ())
    not_action = [s for s in statements if s.not_actions is not None]
    if not_action:
        ids = tuple(dict.fromkeys(s.policy_id for s in not_action))
        return _Coverage(True, ids, _smallest_exceptions(not_action))
    return _Coverage(False, (), ())


def _smallest_exceptions(statements: Sequence[_RootDeny]) -> tuple[str, ...]:
    # Several NotAction fences leave allowed only what every one of them excepts; the
    # shortest list is a simple upper bound of that.
    lists = [s.not_actions for s in statements if s.not_actions is not None]
    if not lists:
        return ()
    return tuple(sorted(min(lists, key=len), key=str.lower))


def evaluate(
    org: OrgTree,
    policies: Iterable[ScpPolicy],
    targets: Mapping[str, Iterable[str]],
    *,
    scp_enabled: bool = True,
    unreadable: Mapping[str, str] | None = None,
    sensitive_actions: Sequence[str] | None = None,
) -> dict[str, FenceResult]:
    """The root fence of every account in `org.account_parents`.

    `policies` are the SCPs read (content None when unreadable); `targets` maps a policy
    id to the ids it is attached to (absent: targets unknown, the policy may apply
    anywhere); `unreadable` maps policy ids to the error met reading them (an id only
    there is a policy whose content is unknown). With `sensitive_actions`, a fence must
    deny each of those actions instead of `*`.
    """
    unreadable = dict(unreadable or {})
    target_sets = {pid: frozenset(ids) for pid, ids in targets.items()}
    parsed: dict[str, list[_RootDeny] | None] = {}
    for policy in policies:
        parsed[policy.policy_id] = _parse(policy)
        if parsed[policy.policy_id] is None and policy.content is not None:
            unreadable.setdefault(policy.policy_id, "content is not a JSON policy document")
    for pid in unreadable:
        parsed.setdefault(pid, None)

    results: dict[str, FenceResult] = {}
    for account_id in sorted(org.account_parents):
        if account_id == org.management_account_id:
            results[account_id] = FenceResult(
                FenceState.not_applicable,
                code=CODE_MANAGEMENT,
                reason="SCPs never apply to the management account",
            )
            continue
        if not scp_enabled:
            results[account_id] = FenceResult(
                FenceState.not_fenced,
                code=CODE_SCP_DISABLED,
                reason="the SERVICE_CONTROL_POLICY type is not enabled on the root: no SCP is enforced",
            )
            continue
        results[account_id] = _evaluate_account(
            org, account_id, parsed, target_sets, unreadable, sensitive_actions
        )
    return results


def _evaluate_account(
    org: OrgTree,
    account_id: str,
    parsed: Mapping[str, list[_RootDeny] | None],
    targets: Mapping[str, frozenset[str]],
    unreadable: Mapping[str, str],
    sensitive_actions: Sequence[str] | None,
) -> FenceResult:
    path = org.path(account_id)
    root_arn = f"arn:{org.partition}:iam::{account_id}:root"
    rank = {node: i for i, node in enumerate(path)}

    fences: list[tuple[int, _RootDeny, bool]] = []  # (path level, statement, exempts AssumeRoot)
    conditional: list[tuple[int, str]] = []
    doubtful: list[str] = []  # policies that may fence this account but could not be read

    for pid, statements in parsed.items():
        attached = targets.get(pid)
        on_path = None if attached is None else [rank[n] for n in attached if n in rank]
        if on_path == []:
            continue  # known not to apply
        if statements is None:
            doubtful.append(pid)
            continue
        for stmt in statements:
            outcome = _conditions_outcome(stmt.condition, root_arn)
            if outcome == _FALSE:
                continue
            if on_path is None:
                # Where it is attached is unknown: a root deny in it may apply here.
                if outcome != _UNKNOWN:
                    doubtful.append(pid)
                continue
            level = min(on_path)
            if outcome == _UNKNOWN:
                conditional.append((level, pid))
            else:
                fences.append((level, stmt, outcome == _TRUE_EXCEPT_ASSUMED_ROOT))

    fences.sort(key=lambda item: item[0])
    # A fence that also holds in AssumeRoot sessions is preferred; failing that, one that
    # exempts them still fences every use of root credentials.
    assumed_root_exempt = False
    coverage = _coverage([stmt for _, stmt, exempt in fences if not exempt], sensitive_actions)
    if not coverage.fenced:
        coverage = _coverage([stmt for _, stmt, _ in fences], sensitive_actions)
        assumed_root_exempt = coverage.fenced
    conditional_ids = tuple(dict.fromkeys(pid for _, pid in sorted(conditional)))
    if coverage.fenced:
        where = ", ".join(coverage.policy_ids)
        reason = f"root denied by {where}"
        if coverage.exceptions:
            reason += " except " + ", ".join(coverage.exceptions)
        if assumed_root_exempt:
            reason += "; sts:AssumeRoot sessions are exempt"
        return FenceResult(
            FenceState.fenced,
            policy_ids=coverage.policy_ids,
            exceptions=coverage.exceptions,
            assumed_root_exempt=assumed_root_exempt,
            conditional_policy_ids=conditional_ids,
            code=CODE_FENCE,
            reason=reason,
        )
    if doubtful:
        doubtful = sorted(set(doubtful))
        errors = "; ".join(f"{pid}: {unreadable.get(pid, 'unreadable')}" for pid in doubtful)
        return FenceResult(
            FenceState.unknown,
            conditional_policy_ids=conditional_ids,
            code=CODE_UNREADABLE,
            reason=f"policies that may apply could not be read ({errors})",
        )
    if conditional_ids:
        return FenceResult(
            FenceState.not_fenced,
            conditional_policy_ids=conditional_ids,
            code=CODE_CONDITIONAL_ONLY,
            reason="root deny only under extra conditions in " + ", ".join(conditional_ids),
        )
    return FenceResult(
        FenceState.not_fenced,
        code=CODE_NO_FENCE,
        reason="no applicable SCP denies the root user",
    )


def evaluate_inputs(
    inputs: ScpInputs, *, sensitive_actions: Sequence[str] | None = None
) -> dict[str, FenceResult]:
    """`evaluate` on what `collect_scp_inputs` returned."""
    return evaluate(
        inputs.org,
        inputs.policies,
        inputs.targets,
        scp_enabled=inputs.scp_enabled,
        unreadable=inputs.unreadable,
        sensitive_actions=sensitive_actions,
    )
