"""AWS partitions (`aws`, `aws-us-gov`, `aws-cn`): which one a region or an ARN is in, and
where a partition's global services live.

Read from botocore's endpoint data, not written down here: `endpoints.json` lists each
partition's regions (`regionRegex`) and, per global service, the `partitionEndpoint` whose
`credentialScope.region` is where that service runs and where CloudTrail records its calls
(IAM: us-east-1 in `aws`, us-gov-west-1 in `aws-us-gov`, cn-north-1 in `aws-cn`).
"""

from __future__ import annotations

from functools import cache
from typing import Any

import botocore.session
from botocore.exceptions import UnknownRegionError

DEFAULT_PARTITION = "aws"


@cache
def _session() -> botocore.session.Session:
    return botocore.session.get_session()


@cache
def _endpoints() -> dict[str, Any]:
    return dict(_session().get_component("data_loader").load_data("endpoints"))


def partition_of_region(region: str) -> str | None:
    """The partition of `region`; None for a name no partition matches."""
    try:
        return str(_session().get_partition_for_region(region))
    except UnknownRegionError:
        return None


def arn_partition(arn: str) -> str:
    """The partition field of an ARN (`arn:aws-us-gov:iam::...` -> `aws-us-gov`)."""
    parts = arn.split(":")
    return parts[1] if len(parts) > 2 and parts[0] == "arn" and parts[1] else DEFAULT_PARTITION


def global_region(partition: str) -> str:
    """Where the partition's IAM runs: the region of IAM's `partitionEndpoint` credential scope.

    Root sign-ins and IAM calls are recorded there (AWS CloudTrail User Guide, "global
    service events"; us-east-1 in the commercial partition), so it is the region to poll
    with LookupEvents and a region in which Organizations, IAM and STS all answer."""
    for entry in _endpoints()["partitions"]:
        if entry["partition"] == partition:
            iam = entry["services"]["iam"]
            return str(iam["endpoints"][iam["partitionEndpoint"]]["credentialScope"]["region"])
    raise ValueError(f"unknown AWS partition {partition!r}")


def known_partitions() -> tuple[str, ...]:
    return tuple(str(entry["partition"]) for entry in _endpoints()["partitions"])


def task_policy_arn(partition: str, task: str) -> str:
    """A root task policy (`sts:AssumeRoot`) in `partition`: AWS-managed policies carry the partition too."""
    return f"arn:{partition}:iam::aws:policy/root-task/{task}"
