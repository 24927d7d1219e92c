"""The OpenSearch client, built from settings: hosts, auth (none, basic, SigV4) and TLS.

Client-side retries are off (``max_retries=0``): the bulk writer owns the retry budget, and two
layers of retries would multiply it. Credentials never reach a log line or an error message.
JSON goes both ways with exact numbers (``ExactJSONSerializer``), so a document read back (verify's
mget) holds 12345678901234567.89, not the float 1.2345678901234568e16.
"""

from __future__ import annotations

import base64
from typing import Any

import boto3
from botocore.exceptions import BotoCoreError
from opensearchpy import OpenSearch, Urllib3HttpConnection
from opensearchpy.exceptions import SerializationError
from opensearchpy.helpers.signer import Urllib3AWSV4SignerAuth
from opensearchpy.serializer import JSONSerializer
from pydantic import SecretStr

from cdcsync.errors import ConfigError
from cdcsync.settings import Settings
from cdcsync.values import dump_json, load_json

POOL_MAXSIZE = 16


class BasicAuth:
    """HTTP basic credentials, attached to each request by the connection.

    opensearch-py keeps a ``(user, password)`` tuple as-is on every connection and in the transport's
    kwargs, where any repr, debug dump or traceback with locals would show it; this object shows
    the password masked and holds the header only as a ``SecretStr``.
    """

    __slots__ = ("_header", "username")

    def __init__(self, username: str, password: SecretStr) -> None:
        self.username = username
        token = base64.b64encode(f"{username}:{password.get_secret_value()}".encode()).decode()
        self._header = SecretStr(f"Basic {token}")

    def __call__(self, method: str, url: str, body: Any) -> dict[str, str]:
        return {"authorization": self._header.get_secret_value()}

    def __repr__(self) -> str:
        return f"BasicAuth(username={self.username!r}, password='**********')"


class ExactJSONSerializer(JSONSerializer):
    """opensearch-py's JSON serializer with exact numbers both ways (``values.load_json``/``dump_json``).

    The default reads every fraction as a float and writes a ``Decimal`` as a float: a 38-digit
    DynamoDB number would come back rounded, and verify would report drift that is not there (or
    miss drift that is). A fraction is read as a float only when the float is that number.
    """

    def loads(self, s: str) -> Any:
        try:
            return load_json(s)
        except (ValueError, TypeError) as exc:
            raise SerializationError(s, exc) from exc

    def dumps(self, data: Any) -> Any:
        if isinstance(data, str | bytes):  # already serialized (bulk bodies), as the default does
            return data
        try:
            return dump_json(data).decode()
        except TypeError as exc:
            raise SerializationError(data, exc) from exc


def _sigv4(settings: Settings, session: boto3.Session | None) -> Urllib3AWSV4SignerAuth:
    session = session or boto3.Session()
    try:
        credentials = session.get_credentials()
    except BotoCoreError as exc:  # a broken profile, a failing credential_process, ...
        raise ConfigError(
            f"CDCSYNC_OPENSEARCH_AUTH=sigv4 but boto3 could not load AWS credentials: {exc} "
            "(fix the AWS profile or environment)"
        ) from exc
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
        # One connection per concurrent writer (worker shards, backfill segments); urllib3's
        # default of 1 discards and reopens connections under concurrency.
        "pool_maxsize": POOL_MAXSIZE,
        "serializer": ExactJSONSerializer(),
    }
    if settings.opensearch_auth == "basic":
        options["http_auth"] = BasicAuth(
            settings.opensearch_username or "", settings.opensearch_password or SecretStr("")
        )
    elif settings.opensearch_auth == "sigv4":
        options["http_auth"] = _sigv4(settings, session)
    return OpenSearch(**options)
