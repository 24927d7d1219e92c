"""AWS sessions and AWS errors, each made in one place.

**Sessions.** Every boto3 session cdcsync uses comes from ``aws_session`` and every client from
``aws_client``. The region is ``AWS_REGION``, else ``AWS_DEFAULT_REGION``, else the profile's, as
Lambda, the AWS CLI v2 and the other AWS SDKs read it; boto3 alone ignores ``AWS_REGION``, so it is
passed on here. Endpoints and credentials stay boto3's own configuration (``AWS_ENDPOINT_URL*``,
profiles, roles). A client without a region is a ``ConfigError`` naming both variables.
``pool`` sizes a client's HTTP connection pool (botocore keeps 10): a client shared by more threads
than that opens a connection per extra call and logs "Connection pool is full, discarding
connection". The pool is a ceiling on kept connections, not connections opened in advance.

**Errors.** ``aws_error`` turns a failed AWS call into our error tree, the same way for every
backend (``error_kind`` decides; botocore's exceptions are imported when an error is judged, so a
Lambda cold start that calls no AWS service loads no botocore):

    transient      connection refused, reset or timed out; throttling (KMS's
                   too); 5xx; the container credential endpoint failing; a
                   DynamoDB answer failing its x-amz-crc32 check              -> TransientError (exit 1)
    configuration  no region, no or bad credentials, access denied (the
                   permission named), a table / queue / bucket that does not
                   exist, a KMS key disabled, missing or not allowed          -> ConfigError (exit 2)
    fatal          anything else AWS refused                                   -> FatalError (exit 1)

Callers that give a code a meaning of their own (a stream gone, a lost condition) check it with
``error_code`` first and hand the rest to ``aws_error``.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Literal, overload

from cdcsync.errors import CdcsyncError, ConfigError, ErrorKind, FatalError, TransientError

if TYPE_CHECKING:
    import boto3
    from botocore.config import Config
    from botocore.exceptions import ClientError
    from mypy_boto3_dynamodb import DynamoDBClient
    from mypy_boto3_dynamodbstreams import DynamoDBStreamsClient
    from mypy_boto3_s3 import S3Client
    from mypy_boto3_sqs import SQSClient

REGION_HELP = "set AWS_REGION or AWS_DEFAULT_REGION (or a region in the AWS profile)"
NO_REGION = f"no AWS region: {REGION_HELP}"

# Worth trying again later: request-rate limits and AWS-side failures.
TRANSIENT_CODES = frozenset(
    {
        "LimitExceededException",
        "ProvisionedThroughputExceededException",
        "RequestLimitExceeded",
        "RequestThrottled",
        "RequestThrottledException",
        "SlowDown",
        "Throttling",
        "ThrottlingException",
        "TooManyRequestsException",
        "InternalError",
        "InternalFailure",
        "InternalServerError",
        "ServiceUnavailable",
        "ServiceUnavailableException",
        "RequestTimeout",
        "RequestTimeoutException",
        # the KMS key of an encrypted queue or bucket is rate-limited
        "KmsThrottled",
        "KMS.ThrottlingException",
    }
)
THROTTLING_CODES = frozenset(
    {"ProvisionedThroughputExceededException", "ThrottlingException", "RequestLimitExceeded", "SlowDown"}
)
ACCESS_DENIED_CODES = frozenset(
    {
        "AccessDenied",
        "AccessDeniedException",
        "AWS.SimpleQueueService.AccessDenied",
        "AllAccessDisabled",
    }
)
# The KMS key of an encrypted queue or bucket cannot be used: the key, its state or the role's right
# to use it needs a fix. SQS's JSON codes (Kms*) and the KMS.* spellings of the query protocol and S3.
KMS_CODES = frozenset(
    {
        "KmsAccessDenied",
        "KmsDisabled",
        "KmsInvalidKeyUsage",
        "KmsInvalidState",
        "KmsNotFound",
        "KmsOptInRequired",
        "KMS.AccessDeniedException",
        "KMS.AccessDenied",
        "KMS.DisabledException",
        "KMS.InvalidKeyUsageException",
        "KMS.KMSInvalidStateException",
        "KMS.NotFoundException",
        "KMS.OptInRequired",
    }
)
CREDENTIALS_CODES = frozenset(
    {
        "UnrecognizedClientException",
        "InvalidClientTokenId",
        "InvalidAccessKeyId",
        "ExpiredToken",
        "ExpiredTokenException",
        "InvalidSignatureException",
        "SignatureDoesNotMatch",
        "IncompleteSignature",
        "MissingAuthenticationToken",
    }
)
MISSING_QUEUE_CODES = frozenset(
    {"AWS.SimpleQueueService.NonExistentQueue", "QueueDoesNotExist", "NonExistentQueue"}
)
MISSING_CODES = frozenset(
    {
        "ResourceNotFoundException",
        "TableNotFoundException",
        "NoSuchBucket",
        "NoSuchKey",
        "AWS.SimpleQueueService.NonExistentQueue",
        "QueueDoesNotExist",
        "NonExistentQueue",
    }
)
# The worker's DynamoDB Streams client: one connection per shard thread (GetRecords, GetShardIterator)
# plus the coordinator's. The worker builds it before it knows how many shards it will lease (rounds
# take shards as they split and as replicas come and go), and a pool is a ceiling on kept connections,
# not connections opened, so it is sized for twice the 64 shards a process is planned for; past it, a
# call opens a connection of its own and the pool discards it afterwards.
STREAMS_POOL_CONNECTIONS = 128
_SERVER_ERROR = 500
# botocore.credentials.ContainerProvider.METHOD, spelled out: importing botocore.credentials costs a
# Lambda cold start ~40 ms (tests/unit/test_aws.py checks the two agree).
_CONTAINER_PROVIDER = "container-role"


def region_from_environment() -> str | None:
    """``AWS_REGION``, else None (boto3 then reads ``AWS_DEFAULT_REGION`` and the profile)."""
    return os.environ.get("AWS_REGION", "").strip() or None


def aws_session() -> boto3.Session:
    """A boto3 session whose region is ``AWS_REGION``, else ``AWS_DEFAULT_REGION``, else the profile's.

    A missing region is not an error yet: commands that use no AWS service never need one.
    ``aws_client`` refuses to make a client without it.
    """
    import boto3  # noqa: PLC0415 - on first use: a Lambda whose configuration uses no AWS service never loads it
    from botocore.exceptions import BotoCoreError  # noqa: PLC0415 - with boto3

    try:
        return boto3.Session(region_name=region_from_environment())
    except BotoCoreError as exc:  # e.g. AWS_PROFILE names a profile that does not exist
        raise aws_error(exc, call="loading the AWS configuration", resource="") from exc


@overload
def aws_client(
    session: boto3.Session | None,
    service: Literal["dynamodb"],
    *,
    config: Config | None = None,
    pool: int | None = None,
) -> DynamoDBClient: ...
@overload
def aws_client(
    session: boto3.Session | None,
    service: Literal["dynamodbstreams"],
    *,
    config: Config | None = None,
    pool: int | None = None,
) -> DynamoDBStreamsClient: ...
@overload
def aws_client(
    session: boto3.Session | None,
    service: Literal["sqs"],
    *,
    config: Config | None = None,
    pool: int | None = None,
) -> SQSClient: ...
@overload
def aws_client(
    session: boto3.Session | None,
    service: Literal["s3"],
    *,
    config: Config | None = None,
    pool: int | None = None,
) -> S3Client: ...
def aws_client(
    session: boto3.Session | None, service: str, *, config: Config | None = None, pool: int | None = None
) -> Any:
    """A client of ``session`` (default: ``aws_session()``); ``ConfigError`` when no region is set.

    ``pool``: connections its HTTP pool keeps (``max_pool_connections``), merged into ``config``.
    """
    from botocore.exceptions import BotoCoreError  # noqa: PLC0415 - with boto3, on first use

    session = session or aws_session()
    if not session.region_name:
        raise ConfigError(NO_REGION)
    if pool is not None:
        from botocore.config import Config  # noqa: PLC0415 - with boto3, on first use

        sized = Config(max_pool_connections=pool)
        config = config.merge(sized) if config is not None else sized
    try:
        return session.client(service, config=config)  # type: ignore[call-overload]
    except BotoCoreError as exc:
        raise aws_error(exc, call=f"creating the {service} client", resource="") from exc


def session_region(session: boto3.Session) -> str:
    """The session's region; ``ConfigError`` when there is none."""
    if not session.region_name:
        raise ConfigError(NO_REGION)
    return str(session.region_name)


def error_code(exc: BaseException) -> str:
    """The AWS error code of a ``ClientError``, else the exception's class name."""
    from botocore.exceptions import ClientError  # noqa: PLC0415 - see _botocore_errors

    if isinstance(exc, ClientError):
        return str(exc.response.get("Error", {}).get("Code", "")) or "Unknown"
    return type(exc).__name__


def error_message(exc: BaseException) -> str:
    """AWS's own message of a ``ClientError`` (else the exception's text)."""
    from botocore.exceptions import ClientError  # noqa: PLC0415 - see _botocore_errors

    if isinstance(exc, ClientError):
        return str(exc.response.get("Error", {}).get("Message", "")) or str(exc)
    return str(exc)


def _status(exc: ClientError) -> int:
    return int(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0) or 0)


def _botocore_errors() -> tuple[tuple[type[Exception], ...], tuple[type[Exception], ...]]:
    """botocore's network and credential errors. The errors of AWS calls are imported when one is
    judged, not with this module: a Lambda cold start that calls no AWS service loads no botocore."""
    from botocore import exceptions as errors  # noqa: PLC0415

    network = (errors.ConnectionError, errors.HTTPClientError, errors.EndpointConnectionError)
    credentials = (errors.NoCredentialsError, errors.PartialCredentialsError, errors.CredentialRetrievalError)
    return (*network, errors.ConnectionClosedError), (*credentials, errors.ProfileNotFound)


def _container_credentials_failed(exc: BaseException) -> bool:
    """The ECS / EKS Pod Identity credential endpoint did not answer with credentials (botocore
    retries it briefly, then gives up): an agent restarting, not a configuration to fix."""
    from botocore.exceptions import CredentialRetrievalError  # noqa: PLC0415 - see _botocore_errors

    if not isinstance(exc, CredentialRetrievalError):
        return False
    return bool(exc.kwargs.get("provider") == _CONTAINER_PROVIDER)


def error_kind(exc: BaseException) -> ErrorKind:
    """What the caller does next about a failed AWS call (see the module docstring)."""
    from botocore.exceptions import ChecksumError, ClientError, NoRegionError  # noqa: PLC0415 - see _botocore_errors

    network, credentials = _botocore_errors()
    if isinstance(exc, (*network, ChecksumError)) or _container_credentials_failed(exc):
        return "transient"
    if isinstance(exc, (NoRegionError, *credentials)):
        return "configuration"
    kind: ErrorKind = "fatal"
    if isinstance(exc, ClientError):
        code = error_code(exc)
        if code in TRANSIENT_CODES or _status(exc) >= _SERVER_ERROR:
            kind = "transient"
        elif code in ACCESS_DENIED_CODES | CREDENTIALS_CODES | MISSING_CODES | KMS_CODES:
            kind = "configuration"
    return kind


def is_transient(exc: BaseException) -> bool:
    return error_kind(exc) == "transient"


def describe_failure(exc: BaseException, *, permission: str | None = None, missing: str | None = None) -> str:
    """Why an AWS call failed and what to do, as the phrase after ``<call> <resource>: ``.

    ``permission`` (``dynamodb:DescribeTable``) is named when access was denied; ``missing`` is the
    phrase for a resource that does not exist (default: "does not exist in region R").
    """
    from botocore.exceptions import ChecksumError, ClientError, NoRegionError  # noqa: PLC0415 - see _botocore_errors

    network, credentials = _botocore_errors()
    code = error_code(exc)
    if isinstance(exc, NoRegionError):
        text = NO_REGION
    elif isinstance(exc, network):
        text = f"cannot reach AWS ({exc}); check the network and AWS_ENDPOINT_URL*"
    elif isinstance(exc, ChecksumError):  # a DynamoDB body that does not match its x-amz-crc32
        text = f"the answer was damaged on the way ({exc}); check the network"
    elif _container_credentials_failed(exc):
        text = f"the container credential endpoint did not give AWS credentials ({exc}); it may be restarting"
    elif isinstance(exc, credentials) or code in CREDENTIALS_CODES:
        text = (
            f"no valid AWS credentials ({code}: {error_message(exc)}); "
            "set a role, AWS_PROFILE or AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY"
        )
    elif code in ACCESS_DENIED_CODES:
        grant = f"grant {permission}" if permission else "check the IAM permissions"
        text = f"access denied ({code}: {error_message(exc)}); {grant}"
    elif code in KMS_CODES:
        text = (
            f"its KMS key cannot be used ({code}: {error_message(exc)}); check that the key exists and is "
            "enabled, and that this role may use it (kms:GenerateDataKey, kms:Decrypt)"
        )
    elif code in MISSING_CODES:
        region = region_from_environment() or os.environ.get("AWS_DEFAULT_REGION") or "the configured region"
        text = missing or f"does not exist in region {region} ({code}); check the name and AWS_REGION"
    elif isinstance(exc, ClientError):
        message = error_message(exc)
        text = f"{code}: {message}" if message else code
    else:
        text = f"{type(exc).__name__}: {exc}"
    return text


def aws_error(
    exc: BaseException,
    *,
    call: str,
    resource: str,
    permission: str | None = None,
    missing: str | None = None,
) -> CdcsyncError:
    """Our error for a failed AWS call: ``<call> <resource>: <what failed>; <what to do>``.

    ``call`` is the operation (``DescribeTable``), ``resource`` what it was on (``table Users``).
    """
    where = f"{call} {resource}".strip()
    text = f"{where}: {describe_failure(exc, permission=permission, missing=missing)}"
    kind = error_kind(exc)
    if kind == "transient":
        return TransientError(text)
    if kind == "configuration":
        return ConfigError(text)
    return FatalError(text)


class OnFirstUse:
    """A client made by ``make`` when one of its attributes is first looked up, then kept.

    For clients a process may never call (the item reader's DynamoDB client: a stream with images
    reads no items; a dead-letter queue's SQS or S3 client): a Lambda cold start that makes one
    imports boto3 (~50 ms) and loads the service's model (~70 ms for DynamoDB). A failure to make it
    (no region, a broken profile) is raised at that first use.
    """

    __slots__ = ("_client", "_make")

    def __init__(self, make: Callable[[], Any]) -> None:
        self._make = make
        self._client: Any = None

    @property
    def made(self) -> bool:
        return self._client is not None

    def __getattr__(self, name: str) -> Any:
        if self._client is None:
            self._client = self._make()
        return getattr(self._client, name)
