"""Every AWS call the exporter makes goes through this module.

It owns the aiobotocore session, the long-lived clients of the exporter's own principal,
credentials for member accounts (assumed role or `sts:AssumeRoot`, cached until shortly
before expiry), request counting, and the mapping of failures to a small fixed set of
reasons. Nothing outside this module imports botocore.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import Counter
from collections.abc import AsyncIterator, Callable
from contextlib import AsyncExitStack, asynccontextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

from aiobotocore.config import AioConfig
from aiobotocore.credentials import AioCredentials
from aiobotocore.session import get_session
from botocore import xform_name
from botocore.credentials import CredentialProvider, ReadOnlyCredentials
from botocore.exceptions import (
    ClientError,
    ConfigParseError,
    ConnectTimeoutError,
    CredentialRetrievalError,
    InvalidConfigError,
    NoCredentialsError,
    PartialCredentialsError,
    ProfileNotFound,
    ReadTimeoutError,
    SSOError,
)

from exporter.aws.partitions import DEFAULT_PARTITION, global_region, partition_of_region, task_policy_arn
from exporter.config.files import SettingsError

log = logging.getLogger(__name__)

# The fixed set of failure reasons used in metric labels.
REASONS = ("no_credentials", "access_denied", "assume_role_failed", "not_all_features", "throttled", "timeout", "invalid_response", "error")

# botocore found no credentials for the exporter's own principal, or could not load the ones
# configured: none in the environment, a partial set (a key id without its secret),
# AWS_PROFILE naming a profile no config file has, a config file it cannot parse, or a
# provider that failed to deliver (the EKS Pod Identity agent or the container endpoint
# unreachable, an SSO session expired). Reason `no_credentials`, not `access_denied`: AWS
# never saw a request, and the fix is in the exporter's environment, not in IAM.
_NO_CREDENTIALS = (
    NoCredentialsError,
    PartialCredentialsError,
    CredentialRetrievalError,
    ProfileNotFound,
    ConfigParseError,
    InvalidConfigError,
    SSOError,
)
# The one log line that says so, once each time the credentials go missing. Whether and when
# to try again is the caller's (serve's sweep loop retries; a one-shot audit does not).
NO_CREDENTIALS_HELP = (
    "no AWS credentials found: nothing can be collected until the exporter has some. Provide them with "
    "environment variables (AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_SESSION_TOKEN), "
    "AWS_PROFILE and a shared config file (AWS_CONFIG_FILE, AWS_SHARED_CREDENTIALS_FILE), "
    "IRSA (ServiceAccount annotation eks.amazonaws.com/role-arn), "
    "an EKS Pod Identity association for the ServiceAccount, or an EC2 instance role; "
    "on EKS, restart the pod after adding the annotation or association"
)

_ACCESS_DENIED = {
    "AccessDenied",
    "AccessDeniedException",
    "UnauthorizedOperation",
    "UnrecognizedClientException",
    "InvalidClientTokenId",
    "ExpiredToken",
    "ExpiredTokenException",
    "AuthFailure",
    "SignatureDoesNotMatch",
    "AWSOrganizationsNotInUseException",
}
_THROTTLED = {
    "Throttling",
    "ThrottlingException",
    "ThrottledException",
    "TooManyRequestsException",
    "RequestLimitExceeded",
    "RequestThrottled",
    "RequestThrottledException",
    "SlowDown",
    "LimitExceededException",
}

# The organization has only the consolidated billing features (botocore's IAM model: of the
# exporter's calls, iam:ListOrganizationsFeatures answers so; the IAM API reference drops the
# suffix, as for IAM's other errors). Not a permission to grant: all features must be enabled.
_NOT_ALL_FEATURES = {"OrganizationNotInAllFeaturesModeException", "OrganizationNotInAllFeaturesMode"}

# Credentials AWS refuses as expired (clock skew, a revoked session): dropped from the cache.
EXPIRED_CODES = frozenset({"ExpiredToken", "ExpiredTokenException"})

# The root task policy of the AssumeRoot audit; its ARN carries the organization's partition.
AUDIT_TASK = "IAMAuditRootUserCredentials"
# Refresh member credentials this long before they expire, so no call runs on a dying token.
_EXPIRY_MARGIN_SECONDS = 300

# Who signs a request: the exporter's own credentials, an assumed member role, or a member
# root session from sts:AssumeRoot (the principals of deploy/iam/actions.json).
PRINCIPALS = ("exporter", "member_role", "assume_root_session")

# Called as observer("<signing service>:<Operation>", principal) just before every AWS request
# is sent (each page of a paginated call; retries are not repeated). Tests record them to check
# that the shipped IAM policies allow every operation the exporter performs.
OPERATION_OBSERVERS: list[Callable[[str, str], None]] = []


def _observe_operations(client: Any, principal: str | Callable[[], str]) -> Any:
    """Report every operation `client` performs to OPERATION_OBSERVERS, as `principal`
    (or as what `principal()` returns at the time of the call)."""

    def before_call(model: Any, **_: Any) -> None:
        if not OPERATION_OBSERVERS:
            return
        operation = f"{model.service_model.signing_name}:{model.name}"
        who = principal() if callable(principal) else principal
        for observer in list(OPERATION_OBSERVERS):
            try:
                observer(operation, who)
            except Exception:  # an observer never breaks a request
                log.exception("operation observer failed")

    client.meta.events.register("before-call", before_call)
    return client


class AwsError(Exception):
    """An AWS call failed. `reason` is one of REASONS; the message holds no secrets."""

    def __init__(self, reason: str, operation: str, code: str = "", message: str = "", status: int | None = None):
        self.reason = reason
        self.operation = operation
        self.code = code
        self.message = message
        # HTTP status of AWS's answer; None when there was none (connection error, timeout).
        self.status = status
        super().__init__(f"{operation}: {code or reason}{': ' + message if message else ''}")


def error_code(exc: BaseException) -> str:
    if isinstance(exc, ClientError):
        return str(exc.response.get("Error", {}).get("Code", ""))
    if isinstance(exc, AwsError):
        return exc.code
    return ""


def classify_error(exc: BaseException) -> str:
    """Map any exception from an AWS call to one of REASONS."""
    if isinstance(exc, AwsError):
        return exc.reason
    if isinstance(exc, (asyncio.TimeoutError, TimeoutError, ConnectTimeoutError, ReadTimeoutError)):
        return "timeout"
    if isinstance(exc, ClientError):
        code = error_code(exc)
        status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
        if code in _THROTTLED or status == 429:
            return "throttled"
        if code in _NOT_ALL_FEATURES:
            return "not_all_features"
        if code in _ACCESS_DENIED or status == 403:
            return "access_denied"
        return "error"
    if isinstance(exc, _NO_CREDENTIALS):
        return "no_credentials"
    if isinstance(exc, (KeyError, ValueError, TypeError)):
        return "invalid_response"
    return "error"


def _message(exc: BaseException) -> str:
    if isinstance(exc, ClientError):
        # AWS error messages name principals and resources, never credentials.
        return str(exc.response.get("Error", {}).get("Message", ""))[:300]
    if isinstance(exc, _NO_CREDENTIALS):
        # What botocore found missing: a variable, a profile, a provider's answer; never a secret.
        return str(exc)[:300]
    return type(exc).__name__


@dataclass(frozen=True, slots=True)
class Credentials:
    access_key_id: str
    secret_access_key: str
    session_token: str
    expiration: datetime
    # The principal these credentials act as: "member_role" (sts:AssumeRole) or
    # "assume_root_session" (sts:AssumeRoot).
    kind: str = "member_role"

    def fresh(self, now: float | None = None) -> bool:
        now = time.time() if now is None else now
        return self.expiration.timestamp() - now > _EXPIRY_MARGIN_SECONDS

    def __repr__(self) -> str:  # never print secrets, even by accident
        return f"Credentials(kind={self.kind}, access_key_id={self.access_key_id[:4]}..., expiration={self.expiration.isoformat()})"


# The member-account credentials of the current asyncio task (one account's collection).
_task_credentials: ContextVar[Credentials | None] = ContextVar("_task_credentials", default=None)


class _TaskCredentials(AioCredentials):
    """Signs each request with the credentials of the account the calling task collects.

    One member client per service then serves every account: creating an aiobotocore client
    costs about 5 ms of CPU and opens its own connections, which at thousands of accounts
    per sweep was most of the exporter's CPU.
    """

    def __init__(self) -> None:
        super().__init__("", "", method="member-account")

    async def get_frozen_credentials(self) -> ReadOnlyCredentials:
        current = _task_credentials.get()
        if current is None:
            raise NoCredentialsError()
        return ReadOnlyCredentials(current.access_key_id, current.secret_access_key, current.session_token or None)


class _TaskCredentialProvider(CredentialProvider):
    METHOD = "member-account"
    CANONICAL_NAME = "member-account"

    async def load(self) -> _TaskCredentials:
        return _TaskCredentials()


class ApiStats:
    """Request and error counts by operation; read by the metrics renderer."""

    def __init__(self) -> None:
        self.requests: Counter[str] = Counter()
        self.errors: Counter[tuple[str, str]] = Counter()

    def record(self, operation: str, reason: str | None) -> None:
        self.requests[operation] += 1
        if reason is not None:
            self.errors[(operation, reason)] += 1


class Aws:
    """The exporter's AWS access: one aiobotocore session, clients kept open for the process."""

    def __init__(
        self,
        *,
        region: str | None = None,
        partition: str | None = None,
        endpoint_url: str | None = None,
        max_attempts: int = 5,
        max_pool_connections: int = 32,
        role_session_name: str = "aws-root-exporter",
        external_id: str | None = None,
        stats: ApiStats | None = None,
        connect_timeout: float = 5.0,
        read_timeout: float = 30.0,
    ) -> None:
        self.region, self.partition = _region_and_partition(region, partition)
        self.endpoint_url = endpoint_url
        self.role_session_name = role_session_name
        self._external_id = external_id
        self.stats = stats or ApiStats()
        self._session = get_session()
        # Standard retry mode (exponential backoff with jitter per request), not adaptive:
        # adaptive mode's client-side rate limiter is per client, and one client serves
        # every account (the STS client assumes every member role). In the soak run, 5 % of
        # AssumeRole throttled slowed 299 AssumeRoles from 0.7 s to 30 s, and accounts then
        # failed as `timeout` rather than `throttled`.
        self._config = AioConfig(
            retries={"mode": "standard", "max_attempts": max_attempts},
            connect_timeout=connect_timeout,
            read_timeout=read_timeout,
            max_pool_connections=max_pool_connections,
        )
        # Member clients sign with the calling task's credentials (see _TaskCredentials).
        self._member_session = get_session()
        self._member_session.get_component("credential_provider").insert_before("env", _TaskCredentialProvider())
        # An account's collection may send a few requests at once (posture sends two).
        self._member_config = self._config.merge(AioConfig(max_pool_connections=max_pool_connections * 4))
        self._stack = AsyncExitStack()
        self._clients: dict[tuple[Any, ...], Any] = {}
        self._member_clients: dict[tuple[str, str], Any] = {}
        self._client_lock = asyncio.Lock()
        self._credentials: dict[tuple[str, str], Credentials] = {}
        # Whether the exporter's own credentials were missing at the last look (None: not
        # looked yet), and when and why the last look failed (see _own_credentials).
        self._missing: bool | None = None
        self._lookup_failed: tuple[float, AwsError] | None = None
        self._credential_locks: dict[tuple[str, str], asyncio.Lock] = {}
        # Told of every AssumeRoot session the exporter opens (account id, task policy ARN,
        # credentials): its own sessions' records are privileged tasks, whatever the
        # activity sources deliver.
        self.assume_root_listeners: list[Callable[[str, str, Credentials], None]] = []

    async def __aenter__(self) -> Aws:
        await self._stack.__aenter__()
        return self

    async def __aexit__(self, *exc: Any) -> None:
        self._clients.clear()
        self._member_clients.clear()
        await self._stack.__aexit__(*exc)

    @property
    def credentials_missing(self) -> bool:
        """The exporter's own credentials could not be found at the last look."""
        return bool(self._missing)

    # -- clients -------------------------------------------------------------------------

    async def client(self, service: str, region: str | None = None, read_timeout: float | None = None) -> Any:
        """A client of the exporter's own principal, created once and kept open.

        `read_timeout` (seconds without an answer before an attempt fails) replaces the
        default for this client, e.g. to fit SQS long polling."""
        key = (service, region or self.region) if read_timeout is None else (service, region or self.region, read_timeout)
        client = self._clients.get(key)
        if client is None:
            asked = time.monotonic()
            async with self._client_lock:
                client = self._clients.get(key)
                if client is None:
                    await self._own_credentials(service, asked)
                    config = self._config if read_timeout is None else self._config.merge(AioConfig(read_timeout=read_timeout))
                    client = await self._stack.enter_async_context(
                        self._session.create_client(
                            service, region_name=key[1], endpoint_url=self.endpoint_url, config=config
                        )
                    )
                    _observe_operations(client, "exporter")
                    self._clients[key] = client
        return client

    async def _own_credentials(self, service: str, asked: float) -> None:
        """Raise AwsError `no_credentials` unless botocore finds the exporter's own credentials.

        A client created without credentials would keep none for the life of the process,
        even once they exist. After a failed look the session is replaced, because a session
        reads the config files once: the next look sees a file mounted since. Callers that
        were already waiting when a look failed share its failure (a provider that does not
        answer takes seconds per look, and a sweep asks for many clients at once)."""
        if self._lookup_failed is not None and self._lookup_failed[0] >= asked:
            shared = self._lookup_failed[1]
            raise AwsError(shared.reason, service, shared.code, shared.message)
        try:
            found = await self._session.get_credentials()
        except _NO_CREDENTIALS as exc:
            error = AwsError("no_credentials", service, type(exc).__name__, _message(exc))
        else:
            if found is not None:
                self._credentials_found(found.method)
                return
            error = AwsError("no_credentials", service, NoCredentialsError.__name__, NoCredentialsError.fmt)
        self._session = get_session()
        self._lookup_failed = (time.monotonic(), error)
        self._credentials_lost(error)
        raise error

    def _credentials_lost(self, error: AwsError) -> None:
        if self._missing:
            log.debug("still no AWS credentials", extra={"reason": error.reason, "error": str(error)})
            return
        self._missing = True
        log.error(NO_CREDENTIALS_HELP, extra={"reason": error.reason, "error": str(error)})

    def _credentials_found(self, method: str | None) -> None:
        if self._missing is False:
            return
        # One line when they are first found, or found again: which provider answered
        # (env, shared-credentials-file, assume-role-with-web-identity, container-role, iam-role, ...).
        extra = {"method": method} if method else {}
        log.info("AWS credentials found" if self._missing is None else "AWS credentials found again", extra=extra)
        self._missing = False

    @asynccontextmanager
    async def member_client(self, service: str, credentials: Credentials | None, region: str | None = None) -> AsyncIterator[Any]:
        """A client with member-account credentials, or the base client when credentials is None."""
        if credentials is None:
            yield await self.client(service, region)
            return
        key = (service, region or self.region)
        client = self._member_clients.get(key)
        if client is None:
            async with self._client_lock:
                client = self._member_clients.get(key)
                if client is None:
                    client = await self._stack.enter_async_context(
                        self._member_session.create_client(
                            service, region_name=key[1], endpoint_url=self.endpoint_url, config=self._member_config
                        )
                    )
                    # The signing principal is that of the calling task's credentials.
                    _observe_operations(client, lambda: getattr(_task_credentials.get(), "kind", "member_role"))
                    self._member_clients[key] = client
        token = _task_credentials.set(credentials)
        try:
            yield client
        except AwsError as exc:
            if exc.code in EXPIRED_CODES:
                # Refused before our own expiry estimate: never reuse them.
                for cached in [k for k, c in self._credentials.items() if c.access_key_id == credentials.access_key_id]:
                    del self._credentials[cached]
            raise
        finally:
            _task_credentials.reset(token)

    # -- calls ---------------------------------------------------------------------------

    async def call(self, client: Any, operation: str, **params: Any) -> dict[str, Any]:
        """Call one AWS operation; count it; raise AwsError with a fixed reason on failure."""
        name = f"{client.meta.service_model.endpoint_prefix}:{operation}"
        try:
            response = await getattr(client, xform_name(operation))(**params)
        except asyncio.CancelledError:
            # Cut off by the account's time limit (or shutdown): a request that never got
            # an answer still counts, as a timeout.
            self.stats.record(name, "timeout")
            raise
        except Exception as exc:
            raise self._failed(name, exc) from None
        self.stats.record(name, None)
        self._answered()
        return response

    async def paginate(self, client: Any, operation: str, result_key: str, **params: Any) -> list[Any]:
        """All items of a paginated operation (each page is counted as one request)."""
        name = f"{client.meta.service_model.endpoint_prefix}:{operation}"
        items: list[Any] = []
        pages = client.get_paginator(xform_name(operation)).paginate(**params)
        try:
            async for page in pages:
                self.stats.record(name, None)
                items.extend(page.get(result_key, []))
        except asyncio.CancelledError:
            self.stats.record(name, "timeout")
            raise
        except Exception as exc:
            raise self._failed(name, exc) from None
        self._answered()
        return items

    def _answered(self) -> None:
        if self._missing:
            # Credentials lost after a refresh failed work again.
            self._credentials_found(None)

    def _failed(self, name: str, exc: BaseException) -> AwsError:
        reason = classify_error(exc)
        self.stats.record(name, reason)
        status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode") if isinstance(exc, ClientError) else None
        if reason != "no_credentials":
            return AwsError(reason, name, error_code(exc), _message(exc), status)
        error = AwsError(reason, name, type(exc).__name__, _message(exc))
        # Credentials found once, then lost (a refresh the provider could not answer).
        self._credentials_lost(error)
        return error

    async def caller_identity(self, credentials: Credentials | None, region: str) -> str:
        """The ARN `credentials` (None: the exporter's own) act as, from `sts:GetCallerIdentity`
        on `region`'s regional STS endpoint (botocore's default, in every partition): the
        proof-of-sight canary, whose CloudTrail record is written in that region
        (exporter.monitoring.canary). It needs no permission and changes nothing."""
        async with self.member_client("sts", credentials, region) as sts:
            return str((await self.call(sts, "GetCallerIdentity"))["Arn"])

    # -- credentials for member accounts -------------------------------------------------

    async def assume_role(self, role_arn: str) -> Credentials:
        """Credentials for a member role, cached until shortly before they expire."""
        return await self._cached(("role", role_arn), lambda: self._assume_role(role_arn))

    async def assume_root(self, account_id: str, partition: str, task: str = AUDIT_TASK) -> Credentials:
        """`sts:AssumeRoot` into a member account's root with a task policy (at most 900 s);
        `partition` is the organization's, which the task policy's ARN names."""
        policy = task_policy_arn(partition, task)
        return await self._cached(("root", account_id), lambda: self._assume_root(account_id, policy))

    async def _cached(self, key: tuple[str, str], fetch: Any) -> Credentials:
        cached = self._credentials.get(key)
        if cached is not None and cached.fresh():
            return cached
        lock = self._credential_locks.setdefault(key, asyncio.Lock())
        async with lock:
            cached = self._credentials.get(key)
            if cached is not None and cached.fresh():
                return cached
            credentials = await fetch()
            self._credentials[key] = credentials
            return credentials

    async def _assume_role(self, role_arn: str) -> Credentials:
        sts = await self.client("sts")
        params: dict[str, Any] = {"RoleArn": role_arn, "RoleSessionName": self.role_session_name}
        if self._external_id:
            params["ExternalId"] = self._external_id
        try:
            response = await self.call(sts, "AssumeRole", **params)
        except AwsError as exc:
            if _refused(exc):
                raise AwsError("assume_role_failed", exc.operation, exc.code, exc.message, exc.status) from None
            raise
        return _credentials(response)

    async def _assume_root(self, account_id: str, task_policy_arn: str) -> Credentials:
        sts = await self.client("sts")
        try:
            response = await self.call(
                sts,
                "AssumeRoot",
                TargetPrincipal=account_id,
                TaskPolicyArn={"arn": task_policy_arn},
                DurationSeconds=900,
            )
        except AwsError as exc:
            if _refused(exc):
                raise AwsError("assume_role_failed", exc.operation, exc.code, exc.message, exc.status) from None
            raise
        credentials = _credentials(response, "assume_root_session")
        for listener in self.assume_root_listeners:
            listener(account_id, task_policy_arn, credentials)
        # An AssumeRoot session lives at most 900 s; keep it only while it has a minute left.
        return credentials


def _region_and_partition(region: str | None, partition: str | None) -> tuple[str, str]:
    """The region for Organizations, IAM and STS calls, and its partition.

    `partition` is what the settings already tell (the role ARNs' in `roles` mode), None when
    only the organization will tell. Without a region: the partition's global-service region,
    where Organizations, IAM and STS all answer. A region of another partition than the role
    ARNs' can never work (credentials are valid in one partition only): one clear error."""
    if region is None:
        partition = partition or DEFAULT_PARTITION
        return global_region(partition), partition
    found = partition_of_region(region) or DEFAULT_PARTITION
    if partition is not None and found != partition:
        raise SettingsError(
            f"region: {region} is in the AWS partition {found}, but role_arns are in {partition}; "
            f"set region to a region of {partition} (e.g. {global_region(partition)}) or leave it unset"
        )
    return region, found


def _refused(exc: AwsError) -> bool:
    """STS refused to hand out credentials (denied, or a 4xx such as a bad role or policy):
    `assume_role_failed`. STS failing itself (HTTP 5xx, a reset connection, no answer) keeps
    its own reason: it is not a role to fix."""
    return exc.reason == "access_denied" or (exc.reason == "error" and exc.status is not None and exc.status < 500)


def _credentials(response: dict[str, Any], kind: str = "member_role") -> Credentials:
    raw = response["Credentials"]
    expiration = raw["Expiration"]
    if isinstance(expiration, str):
        expiration = datetime.fromisoformat(expiration.replace("Z", "+00:00"))
    if expiration.tzinfo is None:
        expiration = expiration.replace(tzinfo=timezone.utc)
    return Credentials(raw["AccessKeyId"], raw["SecretAccessKey"], raw.get("SessionToken", ""), expiration, kind)
