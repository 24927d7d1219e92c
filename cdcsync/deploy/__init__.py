"""Deployment configuration generated from the mappings (``cdcsync lambda-config``)."""

from cdcsync.deploy.lambda_config import FORMATS, Format, lambda_config

__all__ = ["FORMATS", "Format", "lambda_config"]
