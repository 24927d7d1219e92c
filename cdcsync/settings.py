"""The CDCSYNC_* settings, validated up front so a wrong value stops the process before any I/O.

Settings come from, highest priority first: keyword overrides to ``load_settings``, ``CDCSYNC_*``
environment variables, then a ``.env`` file in the working directory. Nothing is read at import
time: entry points call ``load_settings()`` once and pass the ``Settings`` value down.

Decisions the contract leaves open:
- An unknown ``CDCSYNC_*`` variable (environment or ``.env``) is an error, because a typo such as
  ``CDCSYNC_DLQ_URL`` would otherwise silently fall back to a default. ``CDCSYNC_TEST_*`` is
  reserved for the test suite (e.g. ``CDCSYNC_TEST_OPENSEARCH_URL``) and ignored here.
- An empty variable counts as unset (container templates often render missing values as "").
- AWS endpoints and credentials are not settings: boto3 reads its own configuration.
- Error messages never contain a secret's value, and neither does the chained ValidationError
  (``hide_input_in_errors``).
- ``CDCSYNC_OPENSEARCH_API_KEY`` must be one word of visible ASCII once surrounding whitespace is
  dropped: a key pasted with base64's line break at 76 characters would otherwise fail in the HTTP
  library, whose refusal quotes the whole header, key included, as a "does not answer" error.
- Values shown in error messages are escaped (``cdcsync.printable``): a value with a newline or a
  terminal escape sequence cannot break the one-line-per-problem message or forge a line.
"""

from __future__ import annotations

import base64
import difflib
import re
import typing
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

from pydantic import Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic_core import PydanticCustomError
from pydantic_settings import (
    BaseSettings,
    EnvSettingsSource,
    NoDecode,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
)

from cdcsync.errors import SettingsError
from cdcsync.printable import printable
from cdcsync.urls import origin

ENV_PREFIX = "CDCSYNC_"
_RESERVED_PREFIX = "test_"  # CDCSYNC_TEST_* belongs to the test suite, never to the service
_SECRET_FIELDS = frozenset({"opensearch_password", "opensearch_api_key"})
# Auth modes whose every request carries a reusable secret (a password, an API key), readable by
# anyone on the network path of an http:// request. SigV4 sends a signature, not the secret key.
_CREDENTIAL_AUTHS = frozenset({"basic", "apikey"})

_SQS_QUEUE_NAME = re.compile(r"[A-Za-z0-9_-]{1,75}\.fifo|[A-Za-z0-9_-]{1,80}")
_S3_BUCKET = re.compile(r"[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]")
_DYNAMODB_TABLE = re.compile(r"[A-Za-z0-9_.-]{3,255}")


@dataclass(frozen=True, slots=True)
class FileTarget:
    """A local file (``file://./dlq.jsonl`` is relative, ``file:///var/dlq.jsonl`` absolute)."""

    path: Path


@dataclass(frozen=True, slots=True)
class SqsTarget:
    """An SQS queue, by name or by full queue URL."""

    queue: str


@dataclass(frozen=True, slots=True)
class S3Target:
    """An S3 bucket and key prefix (the prefix may be empty)."""

    bucket: str
    prefix: str


@dataclass(frozen=True, slots=True)
class DynamoDbTarget:
    """A DynamoDB table (the checkpoint lease table)."""

    table: str


DlqTarget = FileTarget | SqsTarget | S3Target
CheckpointTarget = FileTarget | DynamoDbTarget


def _invalid(expected: str, got: str) -> PydanticCustomError:
    return PydanticCustomError(
        "cdcsync_setting", "expected {expected}, got {got}", {"expected": expected, "got": got}
    )


def _file_target(rest: str, expected: str, url: str) -> FileTarget:
    if not rest:
        raise _invalid(expected, f'"{url}" (no path)')
    return FileTarget(Path(rest))


def parse_dlq(url: str) -> DlqTarget:
    """Parse a ``CDCSYNC_DLQ`` value; raises a pydantic error so it reports like any other field."""
    expected = "file:///PATH, sqs://QUEUE_NAME_OR_URL or s3://BUCKET/PREFIX"
    scheme, sep, rest = url.partition("://")
    if sep and scheme == "file":
        return _file_target(rest, expected, url)
    if sep and scheme == "sqs":
        if _SQS_QUEUE_NAME.fullmatch(rest) or rest.startswith(("https://", "http://")):
            return SqsTarget(rest)
        raise _invalid(expected, f'"{url}" (not an SQS queue name or URL)')
    if sep and scheme == "s3":
        bucket, _, prefix = rest.partition("/")
        if _S3_BUCKET.fullmatch(bucket):
            return S3Target(bucket, prefix)
        raise _invalid(expected, f'"{url}" (not an S3 bucket name)')
    raise _invalid(expected, f'"{url}"')


def parse_checkpoints(url: str) -> CheckpointTarget:
    """Parse a ``CDCSYNC_CHECKPOINTS`` value."""
    expected = "dynamodb://TABLE or file:///PATH"
    scheme, sep, rest = url.partition("://")
    if sep and scheme == "file":
        return _file_target(rest, expected, url)
    if sep and scheme == "dynamodb":
        if _DYNAMODB_TABLE.fullmatch(rest):
            return DynamoDbTarget(rest)
        raise _invalid(expected, f'"{url}" (not a DynamoDB table name)')
    raise _invalid(expected, f'"{url}"')


def _check_opensearch_url(url: str) -> str:
    """One URL of ``CDCSYNC_OPENSEARCH_URL``; errors show it as ``origin`` does (never a secret in it)."""
    expected = "http(s)://HOST[:PORT], comma-separated"
    shown = f'"{origin(url)}"'
    if "@" in url:  # a host never holds an @: user info, whatever the password's characters
        raise _invalid(expected, f"{shown} (credentials belong in CDCSYNC_OPENSEARCH_USERNAME/_PASSWORD)")
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        raise _invalid(expected, f"{shown} (not a valid host and port)") from None
    if parts.scheme not in ("http", "https") or not parts.hostname or port == 0:
        raise _invalid(expected, shown)
    if parts.path not in ("", "/") or parts.query or parts.fragment:
        raise _invalid(expected, f"{shown} (no path, query or fragment allowed)")
    return url.rstrip("/")


class _PrefixedEnvSource(EnvSettingsSource):
    """Like the default environment source, but passes unknown CDCSYNC_* names on as extras.

    With ``extra="forbid"`` they then fail validation, exactly as unknown keys in ``.env`` do
    with ``dotenv_filtering="match_prefix"``.
    """

    def __call__(self) -> dict[str, Any]:
        data = super().__call__()
        prefix = ENV_PREFIX.lower()
        for name, value in self.env_vars.items():
            if not name.startswith(prefix) or not value:
                continue
            field = name[len(prefix) :]
            if field not in self.settings_cls.model_fields and not field.startswith(_RESERVED_PREFIX):
                data.setdefault(field, value)
        return data


class Settings(BaseSettings):
    """Every CDCSYNC_* setting; the contract's Settings table is the source of truth for names."""

    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX,
        env_file=".env",
        env_file_encoding="utf-8",
        env_ignore_empty=True,
        dotenv_filtering="match_prefix",
        extra="forbid",
        frozen=True,
        hide_input_in_errors=True,
    )

    mappings: Path = Path("mappings")
    opensearch_url: Annotated[tuple[str, ...], NoDecode] = ("http://127.0.0.1:9200",)
    opensearch_auth: Literal["none", "basic", "sigv4", "apikey"] = "none"
    opensearch_username: str | None = None
    opensearch_password: SecretStr | None = None
    opensearch_sigv4_service: Literal["es", "aoss"] = "es"
    # The Elasticsearch API key: the "encoded" value, or "id:key" (sent as Authorization: ApiKey).
    opensearch_api_key: SecretStr | None = None
    # An Elastic Cloud deployment's Cloud ID, decoded into opensearch_url (never both).
    elastic_cloud_id: str | None = None
    target: Literal["auto", "opensearch", "elasticsearch", "aoss"] = "auto"
    opensearch_verify_certs: bool = True
    opensearch_allow_insecure: bool = False  # credentials over http:// (local development only)
    dlq: str = "file://./cdcsync-dlq.jsonl"
    # Not in the contract's table: where an sqs:// dead letter over SQS's 256 KiB limit is kept in
    # full (s3://BUCKET/PREFIX); without it such a letter is sent without its images, flagged.
    dlq_overflow: str | None = None
    # What a dead letter keeps: keys (and where the record was), plus what the mapping indexes
    # (projected), or the whole record and OpenSearch's value previews (full, for debugging).
    dlq_content: Literal["keys", "projected", "full"] = "projected"
    # Item keys in record log lines: as they are, as a short hash (cdcsync preview shows it), or none.
    log_keys: Literal["plain", "hash", "none"] = "plain"
    checkpoints: str = "file://./cdcsync-checkpoints.json"
    bulk_max_actions: int = Field(default=1000, ge=1)
    bulk_max_bytes: int = Field(default=5_242_880, ge=1024)
    max_retries: int = Field(default=8, ge=0)
    retry_max_seconds: float = Field(default=60.0, gt=0)
    # Not in the contract's table: how long a worker's shard lease lasts unrenewed before another
    # replica may take it (the failover time after a crash; KCL's failoverTimeMillis).
    # At least 3 s: write rounds end a margin before the lease could lapse (see ARCHITECTURE.md).
    lease_seconds: float = Field(default=30.0, ge=3)
    # How often writers re-read the rebuild aliases (``NAME-rebuild``) that make them write a copy
    # of each action to a rebuild's new index (``sink/copies.py``); ``rebuild`` waits it out.
    targets_refresh_seconds: float = Field(default=30.0, gt=0)
    metrics_addr: str = "0.0.0.0:9464"  # the container must expose /metrics beyond loopback
    # Not in the contract's table: worker processes of `cdcsync run` (its --processes), to use more
    # than one core; see cdcsync/worker/processes.py.
    worker_processes: int = Field(default=1, ge=1, le=64)
    log_format: Literal["json", "text"] | None = None  # unset: text when stderr is a terminal, else JSON
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"] = "INFO"
    # Not in the contract's table: GetRecords (worker) and Scan (backfill) sent and parsed by
    # cdcsync (``source/fast_reads.py``); false: botocore's own path, for debugging.
    aws_fast_reads: bool = True

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        """Swap in the environment source that reports unknown CDCSYNC_* names."""
        return init_settings, _PrefixedEnvSource(settings_cls), dotenv_settings, file_secret_settings

    @model_validator(mode="before")
    @classmethod
    def _cloud_id_to_url(cls, data: Any) -> Any:
        """``CDCSYNC_ELASTIC_CLOUD_ID`` becomes ``opensearch_url``; setting both is an error."""
        if not isinstance(data, dict) or not data.get("elastic_cloud_id"):
            return data
        if data.get("opensearch_url"):
            raise PydanticCustomError(
                "cdcsync_target",
                "{cloud}: expected it or {url}, got both set; unset one of them",
                {"cloud": _env_name("elastic_cloud_id"), "url": _env_name("opensearch_url")},
            )
        try:
            url = cloud_id_url(str(data["elastic_cloud_id"]))
        except ValueError as exc:
            raise PydanticCustomError(
                "cdcsync_target",
                "{env}: {problem}",
                {"env": _env_name("elastic_cloud_id"), "problem": str(exc)},
            ) from None
        return {**data, "opensearch_url": url}

    @field_validator("opensearch_url", mode="before")
    @classmethod
    def _split_urls(cls, value: object) -> object:
        if isinstance(value, str):
            value = [part.strip() for part in value.split(",") if part.strip()]
        if isinstance(value, list | tuple):
            if not value:
                raise _invalid("http(s)://HOST[:PORT], comma-separated", "no URL")
            return tuple(_check_opensearch_url(str(url)) for url in value)
        return value

    @field_validator("opensearch_api_key")
    @classmethod
    def _check_api_key(cls, value: SecretStr | None) -> SecretStr | None:
        """One word of visible ASCII, as Elasticsearch hands it out; surrounding whitespace dropped.

        HTTP refuses a header with a line break in it (and http.client's refusal quotes the whole
        header, key included): a pasted key wrapped at 76 characters fails here, without its value.
        """
        if value is None:
            return None
        key = value.get_secret_value().strip()
        problem = _api_key_problem(key)
        if problem:
            raise PydanticCustomError(
                "cdcsync_setting",
                "expected the API key on one line in visible ASCII (the encoded value, or ID:KEY), "
                "got a hidden value {problem}",
                {"problem": problem},
            )
        return SecretStr(key)

    @field_validator("log_level", mode="before")
    @classmethod
    def _upper_level(cls, value: object) -> object:
        if isinstance(value, str) and value.upper() in typing.get_args(
            cls.model_fields["log_level"].annotation
        ):
            return value.upper()
        return value

    @field_validator("dlq")
    @classmethod
    def _check_dlq(cls, value: str) -> str:
        parse_dlq(value)
        return value

    @field_validator("dlq_overflow")
    @classmethod
    def _check_dlq_overflow(cls, value: str | None) -> str | None:
        if value is not None and not isinstance(parse_dlq(value), S3Target):
            raise _invalid("s3://BUCKET/PREFIX", f'"{value}"')
        return value

    @field_validator("checkpoints")
    @classmethod
    def _check_checkpoints(cls, value: str) -> str:
        parse_checkpoints(value)
        return value

    @field_validator("metrics_addr")
    @classmethod
    def _check_metrics_addr(cls, value: str) -> str:
        host, sep, port = value.rpartition(":")
        if not sep or not host or not port.isdigit() or int(port) > 65535:  # noqa: PLR2004
            raise _invalid("HOST:PORT", f'"{value}"')
        return value

    @model_validator(mode="after")
    def _check_target(self) -> Settings:
        """AOSS takes SigV4 for the service ``aoss`` only; an API key needs ``apikey`` and back."""
        aoss_signed = self.opensearch_auth == "sigv4" and self.opensearch_sigv4_service == "aoss"
        service = _env_name("opensearch_sigv4_service")
        if self.target == "aoss" and not aoss_signed:
            auth = self.opensearch_auth + (
                f" for {self.opensearch_sigv4_service}" if self.opensearch_auth == "sigv4" else ""
            )
            raise PydanticCustomError(
                "cdcsync_target",
                '{env}: expected {auth_env}=sigv4 and {service}=aoss with "aoss", got {auth}',
                {
                    "env": _env_name("target"),
                    "auth_env": _env_name("opensearch_auth"),
                    "service": service,
                    "auth": auth,
                },
            )
        if self.target not in ("aoss", "auto") and aoss_signed:
            raise PydanticCustomError(
                "cdcsync_target",
                '{env}: expected aoss or auto with {service}=aoss (OpenSearch Serverless), got "{target}"',
                {"env": _env_name("target"), "service": service, "target": self.target},
            )
        key_set = self.opensearch_api_key is not None
        if key_set != (self.opensearch_auth == "apikey"):
            raise PydanticCustomError(
                "cdcsync_auth",
                "{env}: expected {key} set exactly with apikey, got {got}",
                {
                    "env": _env_name("opensearch_auth"),
                    "key": _env_name("opensearch_api_key"),
                    "got": f'"{self.opensearch_auth}" with it {"set" if key_set else "unset"}',
                },
            )
        return self

    @model_validator(mode="after")
    def _check_auth(self) -> Settings:
        names = {
            "opensearch_username": self.opensearch_username,
            "opensearch_password": self.opensearch_password,
        }
        if self.opensearch_auth == "basic":
            missing = [_env_name(name) for name, value in names.items() if value is None]
            if missing:
                raise PydanticCustomError(
                    "cdcsync_auth",
                    "{env}: expected {expected} with basic, got {got} unset",
                    {
                        "env": _env_name("opensearch_auth"),
                        "expected": " and ".join(_env_name(name) for name in names),
                        "got": " and ".join(missing),
                    },
                )
        else:
            present = [_env_name(name) for name, value in names.items() if value is not None]
            if present:
                raise PydanticCustomError(
                    "cdcsync_auth",
                    '{env}: expected basic when {got} is set, got "{auth}"',
                    {
                        "env": _env_name("opensearch_auth"),
                        "got": " and ".join(present),
                        "auth": self.opensearch_auth,
                    },
                )
        return self

    @model_validator(mode="after")
    def _check_credentials_transport(self) -> Settings:
        plain = [url for url in self.opensearch_url if url.lower().startswith("http://")]
        if self.sends_credentials and plain and not self.opensearch_allow_insecure:
            raise PydanticCustomError(
                "cdcsync_transport",
                '{env}: expected https:// with {auth_env}={auth}, got "{got}" (the credentials would cross '
                "the network unencrypted); use https, or set {allow}=true for local development only",
                {
                    "env": _env_name("opensearch_url"),
                    "auth_env": _env_name("opensearch_auth"),
                    "auth": self.opensearch_auth,
                    "got": ", ".join(origin(url) for url in plain),
                    "allow": _env_name("opensearch_allow_insecure"),
                },
            )
        return self

    @property
    def sends_credentials(self) -> bool:
        """Whether each OpenSearch request carries a reusable secret (basic's password, an API key)."""
        return self.opensearch_auth in _CREDENTIAL_AUTHS

    @property
    def dlq_target(self) -> DlqTarget:
        """Where dead letters go, parsed."""
        return parse_dlq(self.dlq)

    @property
    def dlq_overflow_target(self) -> S3Target | None:
        """Where oversized sqs:// dead letters are kept in full, parsed."""
        if self.dlq_overflow is None:
            return None
        target = parse_dlq(self.dlq_overflow)
        return target if isinstance(target, S3Target) else None

    @property
    def checkpoint_target(self) -> CheckpointTarget:
        """Where the container worker keeps its state, parsed."""
        return parse_checkpoints(self.checkpoints)

    @property
    def metrics_host_port(self) -> tuple[str, int]:
        """``metrics_addr`` split for ``http.server`` (IPv6 brackets removed)."""
        host, _, port = self.metrics_addr.rpartition(":")
        return host.strip("[]"), int(port)


def cloud_id_url(cloud_id: str) -> str:
    """The Elasticsearch endpoint of an Elastic Cloud ID: ``[label:]base64(host[:port]$es_id[:port]$...)``
    gives ``https://es_id.host:port`` (port 443 unless the id or the host names one)."""
    expected = "an Elastic Cloud ID ([NAME:]BASE64 of HOST$ES_ID$KIBANA_ID)"
    encoded = cloud_id.rpartition(":")[2].strip()
    try:
        decoded = base64.b64decode(encoded + "=" * (-len(encoded) % 4), validate=True).decode()
    except ValueError:  # binascii.Error and UnicodeDecodeError are ValueErrors
        raise ValueError(f"expected {expected}, got text that is not base64") from None
    host, _, rest = decoded.partition("$")
    es_id = rest.partition("$")[0]
    host, _, host_port = host.partition(":")
    es_id, _, es_port = es_id.partition(":")
    port = es_port or host_port or "443"
    if not host or not es_id or not port.isdigit():
        raise ValueError(f"expected {expected}, got a value that decodes to no HOST$ES_ID")
    return f"https://{es_id}.{host}:{port}"


def _api_key_problem(key: str) -> str | None:
    """What keeps ``key`` (already stripped) from being one word of visible ASCII; never the key."""
    if not key:
        return "of only whitespace; set the key"
    problem = None
    for character in key:
        if character in "\r\n":
            return "with a line break inside; join the key onto one line"
        if character.isspace():
            problem = problem or "with whitespace inside; remove it"
        elif not character.isprintable():
            problem = problem or "with a control character inside; copy the key again"
        elif not character.isascii():
            problem = problem or "with a non-ASCII character inside; copy the key again"
    return problem


def load_settings(**overrides: Any) -> Settings:
    """Build the settings from overrides, the environment and ``.env``; report every problem at once.

    Raises SettingsError with one ``CDCSYNC_NAME: expected ..., got ...`` line per problem.
    """
    try:
        return Settings(**overrides)
    except ValidationError as exc:
        # A value may hold a newline or escape sequence: each problem stays one printable line.
        problems = [printable(_describe(error)) for error in exc.errors(include_url=False)]
        raise SettingsError("\n".join(problems)) from exc


def _env_name(field: str) -> str:
    return f"{ENV_PREFIX}{field.upper()}"


def _shown(field: str, value: object) -> str:
    if field in _SECRET_FIELDS:
        return "a hidden value"
    return f'"{value}"' if isinstance(value, str) else repr(value)


def _describe(error: Any) -> str:
    """One line per pydantic error, named by the environment variable the operator sets."""
    loc = error["loc"]
    if not loc:  # model-level checks already name their variables
        return str(error["msg"])
    field = str(loc[0])
    env = _env_name(field)
    kind = str(error["type"])
    if kind == "extra_forbidden":
        close = difflib.get_close_matches(field, list(Settings.model_fields), n=1, cutoff=0.8)
        hint = f" (did you mean {_env_name(close[0])}?)" if close else ""
        return f"{env}: expected a known {ENV_PREFIX}* setting, got an unknown name{hint}"
    if kind == "cdcsync_setting":
        return f"{env}: {error['msg']}"
    got = _shown(field, error.get("input"))
    return f"{env}: expected {_expected(field, kind, error)}, got {got}"


_EXPECTED = {
    "bool_parsing": "true or false",
    "int_parsing": "an integer",
    "int_from_float": "an integer",
    "float_parsing": "a number",
    "string_type": "a string",
    "path_type": "a file or folder path",
}


def _literal_values(annotation: Any) -> list[str]:
    """``Literal["a", "b"]`` (or ``Literal[...] | None``) -> ``["a", "b"]``."""
    if typing.get_origin(annotation) is Literal:
        return [str(arg) for arg in typing.get_args(annotation)]
    return [value for arg in typing.get_args(annotation) for value in _literal_values(arg)]


def _expected(field: str, kind: str, error: Any) -> str:
    annotation = Settings.model_fields[field].annotation
    ctx = error.get("ctx", {})
    if kind in _EXPECTED:
        return _EXPECTED[kind]
    if kind == "literal_error":
        return "one of " + ", ".join(_literal_values(annotation))
    if kind in ("greater_than_equal", "greater_than"):
        number = "an integer" if annotation is int else "a number"
        op, bound = (">=", ctx["ge"]) if kind == "greater_than_equal" else (">", ctx["gt"])
        return f"{number} {op} {bound:g}"
    return str(error["msg"]).removeprefix("Input should be ").removeprefix("Value error, ")
