"""cdcsync.aws: which region a session gets, and what each AWS failure means for the caller."""

from __future__ import annotations

from typing import Any

import pytest
from botocore.config import Config
from botocore.exceptions import (
    ChecksumError,
    ConnectTimeoutError,
    CredentialRetrievalError,
    EndpointConnectionError,
    NoCredentialsError,
    NoRegionError,
    ParamValidationError,
    ReadTimeoutError,
)
from botocore.exceptions import ClientError as BotoClientError

from cdcsync.aws import aws_client, aws_error, aws_session, error_kind
from cdcsync.errors import ConfigError, ErrorKind, FatalError, TransientError


def client_error(code: str, status: int = 400, message: str = "it happened") -> BotoClientError:
    response: Any = {
        "Error": {"Code": code, "Message": message},
        "ResponseMetadata": {"HTTPStatusCode": status},
    }
    return BotoClientError(response, "DescribeTable")


@pytest.mark.parametrize(
    ("aws_region", "default_region", "expected"),
    [
        ("us-east-1", None, "us-east-1"),  # boto3 alone would have none
        (None, "eu-west-1", "eu-west-1"),
        ("us-east-1", "eu-west-1", "us-east-1"),  # AWS_REGION wins, as in the AWS CLI v2
        ("", "eu-west-1", "eu-west-1"),  # an empty variable counts as unset
    ],
)
def test_aws_session_region_variables_aws_region_first(
    monkeypatch: pytest.MonkeyPatch, aws_region: str | None, default_region: str | None, expected: str
) -> None:
    for name, value in {"AWS_REGION": aws_region, "AWS_DEFAULT_REGION": default_region}.items():
        if value is None:
            monkeypatch.delenv(name, raising=False)
        else:
            monkeypatch.setenv(name, value)
    assert aws_session().region_name == expected
    assert aws_client(None, "dynamodb").meta.region_name == expected


def test_aws_client_no_region_raises_config_error_naming_both_variables(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("AWS_REGION", raising=False)
    monkeypatch.delenv("AWS_DEFAULT_REGION", raising=False)
    assert aws_session().region_name is None  # a command that needs no AWS service still runs
    with pytest.raises(ConfigError) as caught:
        aws_client(None, "sqs")
    assert str(caught.value) == (
        "no AWS region: set AWS_REGION or AWS_DEFAULT_REGION (or a region in the AWS profile)"
    )


@pytest.mark.parametrize(
    ("failure", "kind"),
    [
        (EndpointConnectionError(endpoint_url="http://127.0.0.1:1/"), "transient"),
        (ConnectTimeoutError(endpoint_url="http://127.0.0.1:1/"), "transient"),
        (ReadTimeoutError(endpoint_url="http://127.0.0.1:1/"), "transient"),
        # a DynamoDB answer whose body does not match its x-amz-crc32 (damaged on the way)
        (ChecksumError(checksum_type="crc32", expected_checksum=1, actual_checksum=2), "transient"),
        (client_error("ThrottlingException"), "transient"),
        (client_error("ProvisionedThroughputExceededException"), "transient"),
        (client_error("InternalServerError", 500), "transient"),
        (client_error("SomethingNew", 503), "transient"),
        (NoRegionError(), "configuration"),
        (NoCredentialsError(), "configuration"),
        (client_error("UnrecognizedClientException"), "configuration"),
        (client_error("AccessDeniedException"), "configuration"),
        (client_error("ResourceNotFoundException"), "configuration"),
        (client_error("AWS.SimpleQueueService.NonExistentQueue"), "configuration"),
        (client_error("NoSuchBucket", 404), "configuration"),
        (client_error("ValidationException"), "fatal"),
        (ParamValidationError(report="bad"), "fatal"),
        # an SQS queue or S3 bucket encrypted with a KMS key: throttled is transient, the rest a fix
        (client_error("KmsThrottled"), "transient"),
        (client_error("KMS.ThrottlingException"), "transient"),
        (client_error("KmsAccessDenied"), "configuration"),
        (client_error("KmsDisabled"), "configuration"),
        (client_error("KmsNotFound"), "configuration"),
        (client_error("KmsInvalidState"), "configuration"),
        (client_error("KmsInvalidKeyUsage"), "configuration"),
        (client_error("KmsOptInRequired"), "configuration"),
        (client_error("KMS.DisabledException"), "configuration"),
        (client_error("KMS.NotFoundException"), "configuration"),
        # the ECS / EKS Pod Identity credential endpoint failing for a moment: try again
        (CredentialRetrievalError(provider="container-role", error_msg="timed out"), "transient"),
        # a failing credential_process is the profile's to fix
        (CredentialRetrievalError(provider="custom-process", error_msg="exit 1"), "configuration"),
    ],
)
def test_error_kind_each_failure_one_kind_for_every_backend(failure: Exception, kind: ErrorKind) -> None:
    assert error_kind(failure) == kind


@pytest.mark.parametrize(
    ("failure", "error", "message"),
    [
        (
            EndpointConnectionError(endpoint_url="http://127.0.0.1:1/"),
            TransientError,
            "DescribeTable table Orders: cannot reach AWS (Could not connect to the endpoint URL: "
            '"http://127.0.0.1:1/"); check the network and AWS_ENDPOINT_URL*',
        ),
        (
            ChecksumError(checksum_type="crc32", expected_checksum=1, actual_checksum=2),
            TransientError,
            "DescribeTable table Orders: the answer was damaged on the way (Checksum crc32 failed, "
            "expected checksum 1 did not match calculated checksum 2.); check the network",
        ),
        (
            client_error("AccessDeniedException", message="not authorized"),
            ConfigError,
            "DescribeTable table Orders: access denied (AccessDeniedException: not authorized); "
            "grant dynamodb:DescribeTable on table Orders",
        ),
        (
            client_error("ResourceNotFoundException"),
            ConfigError,
            "DescribeTable table Orders: does not exist in region us-east-1 (ResourceNotFoundException); "
            "check the name and AWS_REGION",
        ),
        (
            client_error("ValidationException", message="bad key"),
            FatalError,
            "DescribeTable table Orders: ValidationException: bad key",
        ),
        (
            client_error("KmsDisabled", message="The key is disabled"),
            ConfigError,
            "DescribeTable table Orders: its KMS key cannot be used (KmsDisabled: The key is disabled); "
            "check that the key exists and is enabled, and that this role may use it (kms:GenerateDataKey, "
            "kms:Decrypt)",
        ),
        (
            client_error("KmsThrottled", message="Rate exceeded"),
            TransientError,
            "DescribeTable table Orders: KmsThrottled: Rate exceeded",
        ),
        (
            CredentialRetrievalError(provider="container-role", error_msg="Read timeout on endpoint URL"),
            TransientError,
            "DescribeTable table Orders: the container credential endpoint did not give AWS credentials "
            "(Error when retrieving credentials from container-role: Read timeout on endpoint URL); "
            "it may be restarting",
        ),
    ],
)
def test_aws_error_says_what_failed_on_what_and_what_to_do(
    failure: Exception, error: type[Exception], message: str
) -> None:
    translated = aws_error(
        failure,
        call="DescribeTable",
        resource="table Orders",
        permission="dynamodb:DescribeTable on table Orders",
    )
    assert type(translated) is error
    assert str(translated) == message


@pytest.mark.parametrize(
    ("config", "expected_read_timeout"),
    [(None, 60), (Config(read_timeout=120, retries={"mode": "standard", "total_max_attempts": 4}), 120)],
)
def test_aws_client_pool_sizes_connections_and_keeps_the_given_config(
    config: Config | None, expected_read_timeout: int
) -> None:
    # GIVEN a client made with a pool of 64 connections (64 shard threads share it)
    client = aws_client(None, "dynamodbstreams", config=config, pool=64)

    # THEN its HTTP pool keeps 64 connections, and the rest of the given config stands
    assert client.meta.config.max_pool_connections == 64
    assert client.meta.config.read_timeout == expected_read_timeout


def test_aws_client_without_pool_keeps_botocore_default_of_10() -> None:
    assert aws_client(None, "dynamodb").meta.config.max_pool_connections == 10


def test_container_provider_method_is_botocores_own_name() -> None:
    # GIVEN the provider name cdcsync spells out (so error_kind needs no botocore.credentials import)
    from botocore.credentials import ContainerProvider  # noqa: PLC0415 - the check needs it, cdcsync not

    from cdcsync import aws  # noqa: PLC0415

    # THEN it is botocore's
    assert aws._CONTAINER_PROVIDER == ContainerProvider.METHOD
