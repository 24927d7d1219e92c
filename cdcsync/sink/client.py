"""The OpenSearch client, built from settings: hosts, auth (none, basic, SigV4) and TLS.

Client-side retries are off (``max_retries=0``): the bulk writer owns the retry budget, and two
layers of retries would multiply it. Credentials never reach a log line or an error message.
"""

from __future__ import annotations

from typing import Any

import boto3
from opensearchpy import OpenSearch, Urllib3HttpConnection
from opensearchpy.helpers.signer import Urllib3AWSV4SignerAuth

from cdcsync.errors import ConfigError
from cdcsync.settings import Settings


def _sigv4(settings: Settings, session: boto3.Session | None) -> Urllib3AWSV4SignerAuth:
    session = session or boto3.Session()
    credentials = session.get_credentials()
    if credentials is None:
        raise ConfigError(
            "CDCSYNC_OPENSEARCH_AUTH=sigv4 but boto3 found no AWS credentials "
            "(set a role, AWS_PROFILE or AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY)"
        )
    region = session.region_name
    if not region:
        raise ConfigError("CDCSYNC_OPENSEARCH_AUTH=sigv4 needs an AWS region (set AWS_REGION)")
    return Urllib3AWSV4SignerAuth(credentials, region, settings.opensearch_sigv4_service)


def build_client(
    settings: Settings, *, session: boto3.Session | None = None, timeout: float = 30.0
) -> OpenSearch:
    """An OpenSearch client for ``CDCSYNC_OPENSEARCH_URL`` with the configured auth."""
    options: dict[str, Any] = {
        "hosts": list(settings.opensearch_url),
        "verify_certs": settings.opensearch_verify_certs,
        "ssl_show_warn": settings.opensearch_verify_certs,
        "timeout": timeout,
        "max_retries": 0,
        "retry_on_timeout": False,
        "connection_class": Urllib3HttpConnection,
    }
    if settings.opensearch_auth == "basic":
        password = settings.opensearch_password.get_secret_value() if settings.opensearch_password else ""
        options["http_auth"] = (settings.opensearch_username or "", password)
    elif settings.opensearch_auth == "sigv4":
        options["http_auth"] = _sigv4(settings, session)
    return OpenSearch(**options)
