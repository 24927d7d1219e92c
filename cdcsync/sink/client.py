"""The OpenSearch client, built from settings: hosts, auth (none, basic, SigV4, API key) and TLS.

Client-side retries are off (``max_retries=0``): the bulk writer owns the retry budget, and two
layers of retries would multiply it. Credentials never reach a log line or an error message: the
server is named by ``urls.origin`` (scheme, host, port), a failure's text passes ``redact_text``.
Settings refuse credentials over ``http://`` unless ``CDCSYNC_OPENSEARCH_ALLOW_INSECURE=true``; that,
and ``CDCSYNC_OPENSEARCH_VERIFY_CERTS=false``, are logged as a WARNING when the client is built
(each entry point builds one at start-up). Unverified TLS uses an SSL context of its own rather
than opensearch-py's ``ssl_show_warn=False``, which calls ``urllib3.disable_warnings()`` and so
silences urllib3's warnings for every client in the process.
JSON goes both ways with exact numbers (``ExactJSONSerializer``), so a document read back (verify's
mget) holds 12345678901234567.89, not the float 1.2345678901234568e16; answers without fractions or
long integers (bulk answers) are read with orjson, which reads those exactly.

``opensearch_error`` turns a failed call of a command (not a bulk write: the bulk writer judges
those per item) into our error tree: no answer, 429 and 5xx are transient; refused credentials, an
untrusted TLS certificate and a request the HTTP library refuses to send (a header value with a line
break) are configuration; the rest fatal. ``ELASTIC_CLIENT_APIVERSIONING=1`` is refused (see
``refuse_compatibility_headers``); every other difference between targets is ``sink/target.py``'s.
"""

from __future__ import annotations

import base64
import logging
import os
import re
import ssl
from typing import TYPE_CHECKING, Any

import orjson
from opensearchpy import OpenSearch, Urllib3HttpConnection
from opensearchpy.exceptions import ConnectionError as OpenSearchConnectionError
from opensearchpy.exceptions import OpenSearchException, SerializationError, TransportError
from opensearchpy.helpers.signer import Urllib3AWSV4SignerAuth
from opensearchpy.serializer import JSONSerializer
from pydantic import SecretStr
from urllib3.util.ssl_match_hostname import CertificateError

from cdcsync.aws import REGION_HELP, aws_session, describe_failure, is_transient
from cdcsync.errors import CdcsyncError, ConfigError, FatalError, TransientError
from cdcsync.logs import redact_text
from cdcsync.settings import Settings
from cdcsync.urls import origin
from cdcsync.values import dump_json, load_json

if TYPE_CHECKING:
    import boto3

log = logging.getLogger(__name__)

POOL_MAXSIZE = 16
# The same set as \d[.eE]|\d{19}, with the digit factored out: ~7x faster on a bulk answer.
_INEXACT_FOR_ORJSON = re.compile(r"\d(?:[.eE]|\d{18})")


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


class ApiKeyAuth:
    """An Elasticsearch API key, sent as ``Authorization: ApiKey <encoded>``; masked like BasicAuth.

    ``CDCSYNC_OPENSEARCH_API_KEY`` is the ``encoded`` value Elasticsearch hands out (base64, never a
    ``:``) or ``id:key``, which is encoded here.
    """

    __slots__ = ("_header",)

    def __init__(self, key: SecretStr) -> None:
        value = key.get_secret_value().strip()
        encoded = base64.b64encode(value.encode()).decode() if ":" in value else value
        self._header = SecretStr(f"ApiKey {encoded}")

    def __call__(self, method: str, url: str, body: Any) -> dict[str, str]:
        return {"authorization": self._header.get_secret_value()}

    def __repr__(self) -> str:
        return "ApiKeyAuth('**********')"


class ExactJSONSerializer(JSONSerializer):
    """opensearch-py's JSON serializer with exact numbers both ways (``values.load_json``/``dump_json``).

    The default reads every fraction as a float and writes a ``Decimal`` as a float: a 38-digit
    DynamoDB number would come back rounded, and verify would report drift that is not there (or
    miss drift that is). A fraction is read as a float only when the float is that number.
    """

    def loads(self, s: str) -> Any:
        # orjson where it reads exactly what load_json would (~5x faster on a bulk answer): no
        # fraction or exponent (a digit before ".", "e" or "E") and no integer of 19 digits or more
        # (orjson reads those beyond 64 bits as floats); orjson refuses NaN, Infinity and lone
        # surrogates, which load_json reads. Text in strings may look like a number: then load_json.
        if not _INEXACT_FOR_ORJSON.search(s):
            try:
                return orjson.loads(s)
            except orjson.JSONDecodeError:
                pass
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
    from botocore.exceptions import BotoCoreError  # noqa: PLC0415 - with boto3: only SigV4 needs either

    session = session or aws_session()
    try:
        credentials = session.get_credentials()
    except BotoCoreError as exc:  # a broken profile, a failing credential_process, ...
        if is_transient(exc):  # the container credential endpoint failing for a moment
            raise TransientError(f"CDCSYNC_OPENSEARCH_AUTH=sigv4: {describe_failure(exc)}") from exc
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
        raise ConfigError(f"CDCSYNC_OPENSEARCH_AUTH=sigv4 needs an AWS region: {REGION_HELP}")
    return Urllib3AWSV4SignerAuth(credentials, region, settings.opensearch_sigv4_service)


def build_client(
    settings: Settings, *, session: boto3.Session | None = None, timeout: float = 30.0
) -> OpenSearch:
    """An OpenSearch client for ``CDCSYNC_OPENSEARCH_URL`` with the configured auth."""
    refuse_compatibility_headers()  # a refusal first: no warnings about a client never built
    _warn_insecure(settings)
    options: dict[str, Any] = {
        "hosts": list(settings.opensearch_url),
        "timeout": timeout,
        "max_retries": 0,
        "retry_on_timeout": False,
        "connection_class": Urllib3HttpConnection,
        # One connection per concurrent writer (worker shards, backfill segments); urllib3's
        # default of 1 discards and reopens connections under concurrency.
        "pool_maxsize": POOL_MAXSIZE,
        "serializer": ExactJSONSerializer(),
    }
    if settings.opensearch_verify_certs:
        options["verify_certs"] = True
    else:
        options["ssl_context"] = _unverified_tls()
    if settings.opensearch_auth == "basic":
        options["http_auth"] = BasicAuth(
            settings.opensearch_username or "", settings.opensearch_password or SecretStr("")
        )
    elif settings.opensearch_auth == "sigv4":
        options["http_auth"] = _sigv4(settings, session)
    elif settings.opensearch_auth == "apikey":
        options["http_auth"] = ApiKeyAuth(settings.opensearch_api_key or SecretStr(""))
    return OpenSearch(**options)


def _unverified_tls() -> ssl.SSLContext:
    """TLS without certificate or host name checks (``CDCSYNC_OPENSEARCH_VERIFY_CERTS=false``)."""
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    return context


def _warn_insecure(settings: Settings) -> None:
    """A WARNING for each protection the settings switch off, naming the servers by ``origin``."""
    secure = [origin(url) for url in settings.opensearch_url if url.lower().startswith("https://")]
    if not settings.opensearch_verify_certs and secure:
        log.warning(
            "CDCSYNC_OPENSEARCH_VERIFY_CERTS=false: the TLS certificate of %s is not checked, so anyone on "
            "the network path can pose as OpenSearch and read or change what cdcsync sends; set it to "
            "true once the cluster's certificate is trusted by this host",
            ", ".join(secure),
        )
    plain = [origin(url) for url in settings.opensearch_url if url.lower().startswith("http://")]
    if settings.sends_credentials and plain:  # only with the opt-in: settings refuse it otherwise
        log.warning(
            "CDCSYNC_OPENSEARCH_ALLOW_INSECURE=true: %s credentials go to %s unencrypted; "
            "for local development only",
            settings.opensearch_auth,
            ", ".join(plain),
        )


COMPATIBILITY_SWITCH = "ELASTIC_CLIENT_APIVERSIONING"


def refuse_compatibility_headers() -> None:
    """Stop (exit 2) when opensearch-py would send Elasticsearch compatibility headers.

    With ``ELASTIC_CLIENT_APIVERSIONING`` set, opensearch-py sends ``Accept:
    application/vnd.elasticsearch+json;compatible-with=7`` with a plain ``Content-Type:
    application/json``: Elasticsearch 8 refuses every request with a body for the mismatch, and
    Elasticsearch 9 refuses compatible-with=7 outright. cdcsync speaks each target's own API.
    opensearch-py acts on the value ``1`` only (``connection/base.py``); any other value is left alone.
    """
    if os.environ.get(COMPATIBILITY_SWITCH) == "1":
        raise ConfigError(
            f"{COMPATIBILITY_SWITCH}=1 is set: opensearch-py would send a versioned Accept header "
            "(compatible-with=7) without a versioned Content-Type, which Elasticsearch 8 refuses for every "
            f"request with a body and Elasticsearch 9 refuses always; unset {COMPATIBILITY_SWITCH} (cdcsync "
            "speaks each target's own API and needs no compatibility mode)"
        )


_UNAUTHORIZED, _FORBIDDEN, _TOO_MANY_REQUESTS, _SERVER_ERROR = 401, 403, 429, 500


def opensearch_error(exc: OpenSearchException, doing: str) -> CdcsyncError:
    """Our error for a failed OpenSearch call: ``<doing>: <what happened>; <what to do>``."""
    if isinstance(exc, OpenSearchConnectionError):  # refused, reset, timed out, TLS failed
        cause = exc.info if isinstance(exc.info, Exception) else exc.error
        if _certificate_refused(cause):  # the same certificate answers next time
            return ConfigError(
                f"{doing}: OpenSearch's TLS certificate is not trusted ({redact_text(str(cause))}); point "
                "SSL_CERT_FILE at the CA that signed it and check the host name in CDCSYNC_OPENSEARCH_URL "
                "(CDCSYNC_OPENSEARCH_VERIFY_CERTS=false is for local development only)"
            )
        if isinstance(cause, ValueError):  # refused before sending (a header value, the URL): no network
            return ConfigError(
                f"{doing}: cdcsync could not build its request to OpenSearch ({redact_text(str(cause))}); "
                "check CDCSYNC_OPENSEARCH_URL and the credentials CDCSYNC_OPENSEARCH_AUTH uses"
            )
        return TransientError(
            f"{doing}: OpenSearch does not answer ({redact_text(str(cause))}); check that it runs and "
            "CDCSYNC_OPENSEARCH_URL"
        )
    status = exc.status_code if isinstance(exc, TransportError) else None
    text = f"{doing}: OpenSearch answered {status}: {redact_text(_reason(exc))}"
    if status in (_UNAUTHORIZED, _FORBIDDEN):
        return ConfigError(f"{text}; check CDCSYNC_OPENSEARCH_AUTH and the credentials or role it uses")
    if isinstance(status, int) and (status == _TOO_MANY_REQUESTS or status >= _SERVER_ERROR):
        return TransientError(f"{text} (busy or unavailable)")
    return FatalError(text)


def _certificate_refused(cause: object) -> bool:
    """Whether a connection failed the TLS certificate check (urllib3 wraps the ``ssl`` error)."""
    seen: list[object] = [cause]
    while seen:
        error = seen.pop()
        if isinstance(error, ssl.SSLCertVerificationError | CertificateError):
            return True
        if isinstance(error, BaseException):
            seen.extend(arg for arg in error.args if isinstance(arg, BaseException))
            seen.extend(link for link in (error.__cause__, error.__context__) if link is not None)
    return False


def _reason(exc: OpenSearchException) -> str:
    if isinstance(exc, TransportError):
        info = exc.info
        if isinstance(info, dict) and isinstance(info.get("error"), dict):
            error = info["error"]
            return " ".join(f"{error.get('type', '')}: {error.get('reason', '')}".split())
        return str(exc.error)
    return f"{type(exc).__name__}: {exc}"
