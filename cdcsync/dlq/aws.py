"""AWS failures of the SQS and S3 backends, phrased as what to check.

``failure(exc, permission=..., region=...)`` gives the part of a message after the colon, e.g.
``AccessDenied (check the role has sqs:SendMessage)``; the backend puts what it was doing and on
which target in front.
"""

from __future__ import annotations

from botocore.exceptions import BotoCoreError, ClientError

AwsError = (ClientError, BotoCoreError)

_MISSING_QUEUE = frozenset(
    {"AWS.SimpleQueueService.NonExistentQueue", "QueueDoesNotExist", "NonExistentQueue"}
)
_ACCESS_DENIED = frozenset(
    {"AccessDenied", "AccessDeniedException", "AWS.SimpleQueueService.AccessDenied", "KMS.AccessDenied"}
)


def error_code(exc: Exception) -> str:
    """The AWS error code of a ClientError, else the exception's class name."""
    if isinstance(exc, ClientError):
        return str(exc.response.get("Error", {}).get("Code", "Unknown"))
    return type(exc).__name__


def failure(exc: Exception, *, permission: str, region: str | None) -> str:
    """Why an AWS call failed and what to check, in one phrase."""
    code = error_code(exc)
    where = f" in region {region}" if region else ""
    if code in _MISSING_QUEUE:
        return f"queue does not exist (check CDCSYNC_DLQ names an existing queue{where})"
    if code == "NoSuchBucket":
        return f"bucket does not exist (check CDCSYNC_DLQ names an existing bucket{where})"
    if code in _ACCESS_DENIED:
        return f"{code} (check the role has {permission})"
    if isinstance(exc, ClientError):
        message = exc.response.get("Error", {}).get("Message", "")
        return f"{code}: {message}" if message else code
    return f"{exc} (check network access to the AWS endpoint and the AWS credentials)"
