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
    BotoCoreError,
    ClientError,
    ConnectTimeoutError,
    NoCredentialsError,
    ReadTimeoutError,
)

log = logging.getLogger(__name__)

# The fixed set of failure reasons used in metric labels.
REASONS = ("access_denied", "assume_role_failed", "throttled", "timeout", "invalid_response", "error")

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

# Credentials AWS refuses as expired (clock skew, a revoked session): dropped from the cache.
EXPIRED_CODES = frozenset({"ExpiredToken", "ExpiredTokenException"})

AUDIT_TASK_POLICY = "arn:aws:iam::aws:policy/root-task/IAMAuditRootUserCredentials"
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
        if code in _ACCESS_DENIED or status == 403:
            return "access_denied"
        return "error"
    if isinstance(exc, NoCredentialsError):
        return "access_denied"
    if isinstance(exc, (KeyError, ValueError, TypeError)):
        return "invalid_response"
    return "error"


def _message(exc: BaseException) -> str:
    if isinstance(exc, ClientError):
        # AWS error messages name principals and resources, never credentials.
        return str(exc.response.get("Error", {}).get("Message", ""))[:300]
    if isinstance(exc, BotoCoreError):
        return type(exc).__name__
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
        region: str = "us-east-1",
        endpoint_url: str | None = None,
        max_attempts: int = 5,
        max_pool_connections: int = 32,
        role_session_name: str = "aws-root-exporter",
        external_id: str | None = None,
        stats: ApiStats | None = None,
        connect_timeout: float = 5.0,
        read_timeout: float = 30.0,
    ) -> None:
        self.region = region
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

    # -- clients -------------------------------------------------------------------------

    async def client(self, service: str, region: str | None = None, read_timeout: float | None = None) -> Any:
        """A client of the exporter's own principal, created once and kept open.

        `read_timeout` (seconds without an answer before an attempt fails) replaces the
        default for this client, e.g. to fit SQS long polling."""
        key = (service, region or self.region) if read_timeout is None else (service, region or self.region, read_timeout)
        client = self._clients.get(key)
        if client is None:
            async with self._client_lock:
                client = self._clients.get(key)
                if client is None:
                    config = self._config if read_timeout is None else self._config.merge(AioConfig(read_timeout=read_timeout))
                    client = await self._stack.enter_async_context(
                        self._session.create_client(
                            service, region_name=key[1], endpoint_url=self.endpoint_url, config=config
                        )
                    )
                    _observe_operations(client, "exporter")
                    self._clients[key] = client
        return client

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
        return items

    def _failed(self, name: str, exc: BaseException) -> AwsError:
        reason = classify_error(exc)
        self.stats.record(name, reason)
        status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode") if isinstance(exc, ClientError) else None
        return AwsError(reason, name, error_code(exc), _message(exc), status)

    # -- credentials for member accounts -------------------------------------------------

    async def assume_role(self, role_arn: str) -> Credentials:
        """Credentials for a member role, cached until shortly before they expire."""
        return await self._cached(("role", role_arn), lambda: self._assume_role(role_arn))

    async def assume_root(self, account_id: str, task_policy_arn: str = AUDIT_TASK_POLICY) -> Credentials:
        """`sts:AssumeRoot` into a member account's root with a task policy (at most 900 s)."""
        return await self._cached(("root", account_id), lambda: self._assume_root(account_id, task_policy_arn))

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
