"""AWS failures of the SQS and S3 backends, phrased as what to check.

``failure(exc, permission=..., region=...)`` gives the part of a message after the colon, e.g.
``AccessDenied (check the role has sqs:SendMessage)``; the backend puts what it was doing and on
which target in front.

The ``DeadLetterQueueError`` raised ``from`` the AWS error takes its kind (a missing queue or
bucket, access denied: configuration, exit 2; unreachable: transient) from ``cdcsync.aws``.
"""

from __future__ import annotations

from botocore.exceptions import BotoCoreError, ClientError

from cdcsync.aws import ACCESS_DENIED_CODES, MISSING_QUEUE_CODES, describe_failure, error_code

__all__ = ["AwsError", "error_code", "failure"]

# What a failed call of an AWS client raises (the backends load botocore with their clients anyway).
AwsError = (ClientError, BotoCoreError)


def failure(exc: Exception, *, permission: str, region: str | None) -> str:
    """Why an AWS call failed and what to check, in one phrase."""
    code = error_code(exc)
    where = f" in region {region}" if region else ""
    if code in MISSING_QUEUE_CODES:
        return f"queue does not exist (check CDCSYNC_DLQ names an existing queue{where})"
    if code == "NoSuchBucket":
        return f"bucket does not exist (check CDCSYNC_DLQ names an existing bucket{where})"
    if code in ACCESS_DENIED_CODES:
        return f"{code} (check the role has {permission})"
    return describe_failure(exc)
