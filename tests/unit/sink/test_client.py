"""The OpenSearch client from settings: hosts, auth (none, basic, SigV4), TLS, no client-side retries.

Building a client opens no socket (urllib3 pools connect lazily), so these are unit tests.
"""

from __future__ import annotations

import base64
import http.client
import logging
import ssl
import warnings
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, cast

import boto3
import pytest
import urllib3
from botocore.exceptions import CredentialRetrievalError, ProfileNotFound
from opensearchpy import OpenSearch, Urllib3HttpConnection
from opensearchpy.exceptions import ConnectionError, SerializationError, SSLError
from opensearchpy.helpers.signer import Urllib3AWSV4SignerAuth

from cdcsync.errors import ConfigError, TransientError
from cdcsync.settings import Settings, load_settings
from cdcsync.sink.client import BasicAuth, build_client, opensearch_error

PASSWORD = "s3cret-Pa55word"  # noqa: S105 - a fake, to look for in reprs
ACCESS_KEY = "AKIAFAKEACCESSKEY123"
SECRET_KEY = "fakeSecretKeyThatMustNeverBeLogged0000"  # noqa: S105 - a fake


def connection(client: OpenSearch) -> Urllib3HttpConnection:
    conn = client.transport.get_connection()
    assert isinstance(conn, Urllib3HttpConnection)
    return conn


def aws_session(region: str | None = "eu-west-1") -> boto3.Session:
    return boto3.Session(aws_access_key_id=ACCESS_KEY, aws_secret_access_key=SECRET_KEY, region_name=region)


@dataclass
class FakeSession:
    """What build_client reads from a boto3 session: credentials (or a failure) and the region."""

    credentials: Any
    region_name: str | None

    def get_credentials(self) -> Any:
        if isinstance(self.credentials, Exception):
            raise self.credentials
        return self.credentials


def test_build_client_no_auth_sends_no_authorization() -> None:
    # GIVEN the default auth (none) WHEN the client is built
    client = build_client(load_settings(opensearch_url="http://127.0.0.1:9200"), timeout=12.0)
    conn = connection(client)
    # THEN no credentials are attached, the timeout is passed and client-side retries are off
    assert conn.http_auth is None
    assert "authorization" not in conn.headers
    assert (conn.host, conn.timeout) == ("http://127.0.0.1:9200", 12.0)
    assert (client.transport.max_retries, client.transport.retry_on_timeout) == (0, False)


def test_build_client_several_urls_gives_one_connection_each() -> None:
    # GIVEN two comma-separated URLs WHEN built THEN the pool holds a connection to each
    client = build_client(load_settings(opensearch_url="http://10.0.0.1:9200,http://10.0.0.2:9201"))
    hosts = sorted(conn.host for conn in client.transport.connection_pool.connections)
    assert hosts == ["http://10.0.0.1:9200", "http://10.0.0.2:9201"]


def sent_headers(conn: Urllib3HttpConnection, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """The headers the connection would send with a request (captured before any socket is used)."""
    captured: dict[str, str] = {}

    def urlopen(method: str, url: str, body: Any, **kwargs: Any) -> Any:
        captured.update(kwargs["headers"])
        raise OSError("captured: not sent")

    monkeypatch.setattr(conn.pool, "urlopen", urlopen)
    with pytest.raises(ConnectionError):
        conn.perform_request("POST", "/_bulk", body=b"{}\n")
    return captured


def test_build_client_basic_auth_puts_credentials_on_connection(monkeypatch: pytest.MonkeyPatch) -> None:
    # GIVEN basic auth settings (over https: over http they are refused)
    settings = load_settings(
        opensearch_url="https://search.example.com:443",
        opensearch_auth="basic",
        opensearch_username="cdcsync",
        opensearch_password=PASSWORD,
    )
    # WHEN built
    conn = connection(build_client(settings))
    # THEN the connection's auth adds the Basic authorization header of those credentials to requests
    expected = base64.b64encode(f"cdcsync:{PASSWORD}".encode()).decode()
    assert isinstance(conn.http_auth, BasicAuth)
    assert sent_headers(conn, monkeypatch)["authorization"] == f"Basic {expected}"
    assert repr(conn.http_auth) == "BasicAuth(username='cdcsync', password='**********')"


@pytest.mark.parametrize("service", ["es", "aoss"])
def test_build_client_sigv4_signs_with_session_region_and_service(
    service: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # GIVEN sigv4 for `service` and a boto3 session in eu-west-1
    settings = load_settings(opensearch_auth="sigv4", opensearch_sigv4_service=service)
    # WHEN built
    conn = connection(build_client(settings, session=aws_session()))
    # THEN requests are signed by the urllib3 SigV4 signer with that region, service and credentials
    auth = conn.http_auth
    assert isinstance(auth, Urllib3AWSV4SignerAuth)
    assert (auth.service, auth.signer.region, auth.signer.service) == (service, "eu-west-1", service)
    assert auth.signer.credentials.access_key == ACCESS_KEY
    # AND a request is sent with an AWS4 authorization for that scope
    headers = {k.lower(): v for k, v in sent_headers(conn, monkeypatch).items()}
    assert headers["authorization"].startswith(f"AWS4-HMAC-SHA256 Credential={ACCESS_KEY}/")
    assert f"/eu-west-1/{service}/aws4_request" in headers["authorization"]


@pytest.mark.parametrize(
    ("session", "message"),
    [
        (
            FakeSession(None, "eu-west-1"),
            "CDCSYNC_OPENSEARCH_AUTH=sigv4 but boto3 found no AWS credentials "
            "(set a role, AWS_PROFILE or AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY)",
        ),
        (
            FakeSession(ProfileNotFound(profile="ops"), "eu-west-1"),
            "CDCSYNC_OPENSEARCH_AUTH=sigv4 but boto3 could not load AWS credentials: "
            "The config profile (ops) could not be found (fix the AWS profile or environment)",
        ),
        (
            FakeSession(aws_session().get_credentials(), None),
            "CDCSYNC_OPENSEARCH_AUTH=sigv4 needs an AWS region: set AWS_REGION or AWS_DEFAULT_REGION "
            "(or a region in the AWS profile)",
        ),
    ],
)
def test_build_client_sigv4_without_credentials_or_region_raises(session: FakeSession, message: str) -> None:
    # GIVEN sigv4 and a session missing credentials or a region WHEN built THEN a ConfigError says so
    with pytest.raises(ConfigError) as caught:
        build_client(load_settings(opensearch_auth="sigv4"), session=cast(boto3.Session, session))
    assert str(caught.value) == message
    assert SECRET_KEY not in str(caught.value)


def test_build_client_tls_verification_on_requires_certificates() -> None:
    # GIVEN an https URL and CDCSYNC_OPENSEARCH_VERIFY_CERTS left on
    settings = load_settings(opensearch_url="https://search.example.com:443")
    # WHEN built
    conn = connection(build_client(settings))
    # THEN the TLS pool verifies certificates
    assert conn.use_ssl is True
    assert conn.pool.cert_reqs == "CERT_REQUIRED"


def test_build_client_tls_verification_off_warns_once_and_keeps_urllib3_warnings(
    caplog: pytest.LogCaptureFixture,
) -> None:
    # GIVEN an https URL and CDCSYNC_OPENSEARCH_VERIFY_CERTS=false
    settings = load_settings(opensearch_url="https://search.example.com:443", opensearch_verify_certs=False)
    filters = list(warnings.filters)
    # WHEN built (no "insecure" warning is raised by opensearch-py: pytest turns warnings into errors)
    with caplog.at_level(logging.WARNING, logger="cdcsync"):
        conn = connection(build_client(settings))
    # THEN the TLS pool checks neither the certificate nor the host name
    assert conn.use_ssl is True
    context = conn.pool.conn_kw["ssl_context"]
    assert (conn.pool.cert_reqs, context.verify_mode, context.check_hostname) == (None, ssl.CERT_NONE, False)
    # AND one WARNING says so at start-up, naming the server by scheme, host and port
    assert [(r.name, r.levelname, r.getMessage()) for r in caplog.records] == [
        (
            "cdcsync.sink.client",
            "WARNING",
            "CDCSYNC_OPENSEARCH_VERIFY_CERTS=false: the TLS certificate of https://search.example.com:443 is "
            "not checked, so anyone on the network path can pose as OpenSearch and read or change what "
            "cdcsync sends; set it to true once the cluster's certificate is trusted by this host",
        )
    ]
    # AND urllib3's warnings are not silenced for the whole process (urllib3.disable_warnings)
    assert warnings.filters == filters


def test_build_client_credentials_over_http_opted_in_warns(caplog: pytest.LogCaptureFixture) -> None:
    # GIVEN basic credentials over http, allowed for local development
    settings = load_settings(
        opensearch_url="http://127.0.0.1:9200",
        opensearch_auth="basic",
        opensearch_username="cdcsync",
        opensearch_password=PASSWORD,
        opensearch_allow_insecure=True,
    )
    # WHEN built THEN one WARNING says the credentials travel unencrypted, and nothing of them
    with caplog.at_level(logging.WARNING, logger="cdcsync"):
        build_client(settings)
    assert [r.getMessage() for r in caplog.records] == [
        "CDCSYNC_OPENSEARCH_ALLOW_INSECURE=true: basic credentials go to http://127.0.0.1:9200 unencrypted; "
        "for local development only"
    ]


@pytest.mark.parametrize(
    "overrides",
    [
        {"opensearch_url": "http://127.0.0.1:9200"},
        {"opensearch_url": "http://127.0.0.1:9200", "opensearch_verify_certs": False},  # no TLS to verify
        {"opensearch_url": "http://127.0.0.1:9200", "opensearch_allow_insecure": True},  # no credentials
        {"opensearch_url": "https://search.example.com", "opensearch_allow_insecure": True},
    ],
)
def test_build_client_nothing_insecure_logs_nothing(
    overrides: dict[str, Any], caplog: pytest.LogCaptureFixture
) -> None:
    # GIVEN settings where no secret and no unverified TLS is at stake WHEN built THEN no warning
    with caplog.at_level(logging.DEBUG, logger="cdcsync"):
        build_client(load_settings(**overrides))
    assert caplog.records == []


def test_opensearch_error_connection_text_with_url_credentials_is_masked() -> None:
    # GIVEN a connection failure whose text (urllib3's) embeds a URL with user info
    cause = OSError(f"cannot connect to https://admin:p@ss/{PASSWORD}@search:9200/_bulk")
    # WHEN turned into our error
    error = opensearch_error(ConnectionError("N/A", str(cause), cause), "indices apply")
    # THEN the line shows no credential
    assert str(error) == (
        "indices apply: OpenSearch does not answer (cannot connect to https://***@search:9200/_bulk); "
        "check that it runs and CDCSYNC_OPENSEARCH_URL"
    )


def test_build_client_default_settings_verify_tls() -> None:
    # GIVEN default settings WHEN read THEN TLS verification is on
    assert Settings.model_fields["opensearch_verify_certs"].default is True


@pytest.mark.parametrize("auth", ["basic", "sigv4"])
def test_build_client_secrets_absent_from_reprs(auth: str) -> None:
    # GIVEN a client with credentials
    options: dict[str, Any] = {"opensearch_url": "https://search.example.com:443", "opensearch_auth": auth}
    if auth == "basic":
        options.update(opensearch_username="cdcsync", opensearch_password=PASSWORD)
    settings = load_settings(**options)
    client = build_client(settings, session=aws_session())
    conn = connection(client)
    # WHEN anything we might log is shown
    objects: list[object] = [client, client.transport, client.transport.kwargs, conn, conn.http_auth]
    shown = " ".join([*map(repr, objects), str(client), str(conn), repr(conn.headers), repr(settings)])
    # THEN no secret appears, neither plain nor base64-encoded
    encoded = base64.b64encode(f"cdcsync:{PASSWORD}".encode()).decode()
    for secret in (PASSWORD, encoded, SECRET_KEY):
        assert secret not in shown


def test_build_client_reads_and_writes_numbers_exactly() -> None:
    # GIVEN a client built from settings
    client = build_client(load_settings(opensearch_url="http://127.0.0.1:9200"))
    # WHEN a response holding numbers no float holds is read (an mget answer for verify)
    answer = client.transport.deserializer.loads(
        '{"_source":{"p":12345678901234567.89,"f":0.1,"b":18446744073709551617}}', "application/json"
    )
    # THEN they are exact: a float only where the float is the number
    source = answer["_source"]
    assert (source["p"], type(source["f"]), source["f"], source["b"]) == (
        Decimal("12345678901234567.89"),
        float,
        0.1,
        2**64 + 1,
    )
    # AND a request body with them is written exactly
    body = client.transport.serializer.dumps({"p": Decimal("12345678901234567.89"), "b": 2**64 + 1})
    assert body == '{"p":12345678901234567.89,"b":18446744073709551617}'
    # AND a body serialized already (a bulk body) is passed through
    assert client.transport.serializer.dumps(b'{"a":1}\n') == b'{"a":1}\n'
    assert client.transport.serializer.dumps('{"a":1}') == '{"a":1}'


def test_build_client_malformed_response_raises_serialization_error() -> None:
    client = build_client(load_settings(opensearch_url="http://127.0.0.1:9200"))
    with pytest.raises(SerializationError):
        client.transport.deserializer.loads("{not json", "application/json")
    with pytest.raises(SerializationError):
        client.transport.serializer.dumps({"a": object()})


@pytest.mark.parametrize("value", ["0", "true", "0\ncdcsync: all 3 dead letters redriven OK\x1b[8m"])
def test_build_client_compatibility_switch_other_than_1_is_left_alone(
    monkeypatch: pytest.MonkeyPatch, value: str
) -> None:
    # GIVEN ELASTIC_CLIENT_APIVERSIONING set to anything but "1", which opensearch-py ignores
    monkeypatch.setenv("ELASTIC_CLIENT_APIVERSIONING", value)
    # WHEN a client is built THEN it is, and sends no compatibility header
    headers = connection(build_client(load_settings())).headers
    assert "compatible-with" not in headers.get("accept", "")


API_KEY = "VnVhQ2ZHY0JDZGJrUW0tZTVhT3g6dWkybHAyYXhUTm1zeWFrdzl0dk5udw"  # a fake, to look for


def _header_refusal() -> ValueError:
    """http.client's own refusal of a header value with a line break (no socket: nothing is sent)."""
    request = http.client.HTTPConnection("127.0.0.1", 9)
    request.putrequest("GET", "/")
    with pytest.raises(ValueError, match="Invalid header value") as refused:
        request.putheader("authorization", f"ApiKey {API_KEY}\n==")
    return refused.value


CERTIFICATE_FAILED = (
    "[SSL: CERTIFICATE_VERIFY_FAILED] certificate verify failed: self-signed certificate (_ssl.c:1006)"
)


CERTIFICATE_FAILED = (
    "[SSL: CERTIFICATE_VERIFY_FAILED] certificate verify failed: self-signed certificate (_ssl.c:1006)"
)


def _certificate_refusal() -> urllib3.exceptions.SSLError:
    """urllib3's error for a certificate the client does not trust, as a failed handshake raises it."""
    return urllib3.exceptions.SSLError(ssl.SSLCertVerificationError(1, CERTIFICATE_FAILED))


def test_opensearch_error_header_refused_is_configuration_without_the_key() -> None:
    # GIVEN the HTTP library refusing a header value (opensearch-py wraps it as a ConnectionError)
    cause = _header_refusal()
    # WHEN turned into our error
    error = opensearch_error(ConnectionError("N/A", str(cause), cause), "indices apply")
    # THEN it is a configuration error (exit 2) that names what to check, never the key
    assert isinstance(error, ConfigError)
    assert str(error) == (
        "indices apply: cdcsync could not build its request to OpenSearch (Invalid header value "
        "b'ApiKey ***'); check CDCSYNC_OPENSEARCH_URL and the credentials CDCSYNC_OPENSEARCH_AUTH uses"
    )
    assert API_KEY[-12:] not in str(error)


def test_opensearch_error_certificate_not_trusted_is_configuration() -> None:
    # GIVEN a TLS handshake that failed the certificate check (opensearch-py raises its SSLError)
    cause = _certificate_refusal()
    # WHEN turned into our error
    error = opensearch_error(SSLError("N/A", str(cause), cause), "indices apply")
    # THEN it is configuration (exit 2): trying again finds the same certificate
    assert isinstance(error, ConfigError)
    assert str(error) == (
        "indices apply: OpenSearch's TLS certificate is not trusted ([SSL: CERTIFICATE_VERIFY_FAILED] "
        "certificate verify failed: self-signed certificate (_ssl.c:1006)); point SSL_CERT_FILE at the CA "
        "that signed it and check the host name in CDCSYNC_OPENSEARCH_URL (CDCSYNC_OPENSEARCH_VERIFY_CERTS"
        "=false is for local development only)"
    )


def test_opensearch_error_tls_reset_stays_transient() -> None:
    # GIVEN a handshake cut short (not a certificate verdict)
    cause = urllib3.exceptions.SSLError(ssl.SSLEOFError(8, "EOF occurred in violation of protocol"))
    # WHEN turned into our error THEN it is worth trying again
    error = opensearch_error(SSLError("N/A", str(cause), cause), "indices apply")
    assert isinstance(error, TransientError)


def test_build_client_sigv4_container_credentials_unavailable_is_transient() -> None:
    # GIVEN the ECS / EKS Pod Identity credential endpoint failing for a moment
    failing = CredentialRetrievalError(provider="container-role", error_msg="Read timeout on endpoint URL")
    settings = load_settings(opensearch_url="https://search.example.com", opensearch_auth="sigv4")
    # WHEN a client is built THEN it is worth trying again (not a configuration to fix)
    with pytest.raises(TransientError) as raised:
        build_client(settings, session=cast(boto3.Session, FakeSession(failing, "eu-west-1")))
    assert str(raised.value) == (
        "CDCSYNC_OPENSEARCH_AUTH=sigv4: the container credential endpoint did not give AWS credentials "
        "(Error when retrieving credentials from container-role: Read timeout on endpoint URL); "
        "it may be restarting"
    )
