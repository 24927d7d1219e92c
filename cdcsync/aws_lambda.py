"""The Lambda handler's contract path: ``cdcsync.aws_lambda.handler``."""

from cdcsync.entrypoints.aws_lambda import handler

__all__ = ["handler"]
