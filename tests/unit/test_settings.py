"""CDCSYNC_* settings: defaults, parsing, and error messages an operator can act on."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

from cdcsync.errors import SettingsError
from cdcsync.settings import (
    DynamoDbTarget,
    FileTarget,
    S3Target,
    Settings,
    SqsTarget,
    load_settings,
)

PASSWORD = "hunter2-s3cret"  # noqa: S105 - a fake secret the tests prove is never printed


@pytest.fixture(autouse=True)
def isolated_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """No CDCSYNC_* variable from the shell and no .env from the repository can leak in."""
    for name in list(os.environ):
        if name.upper().startswith("CDCSYNC_"):
            monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)
    return tmp_path


def _error(**overrides: Any) -> str:
    with pytest.raises(SettingsError) as raised:
        load_settings(**overrides)
    return str(raised.value)


def test_load_settings_nothing_set_returns_contract_defaults() -> None:
    # GIVEN no CDCSYNC_* variable and no .env file
    # WHEN the settings are loaded
    settings = load_settings()

    # THEN every value is the contract's default
    assert settings.model_dump() == {
        "mappings": Path("mappings"),
        "opensearch_url": ("http://127.0.0.1:9200",),
        "opensearch_auth": "none",
        "opensearch_username": None,
        "opensearch_password": None,
        "opensearch_sigv4_service": "es",
        "opensearch_api_key": None,
        "elastic_cloud_id": None,
        "target": "auto",
        "opensearch_verify_certs": True,
        "opensearch_allow_insecure": False,
        "dlq": "file://./cdcsync-dlq.jsonl",
        "dlq_overflow": None,  # an addition to the contract: S3 for oversized SQS dead letters
        "dlq_content": "projected",
        "log_keys": "plain",
        "checkpoints": "file://./cdcsync-checkpoints.json",
        "bulk_max_actions": 1000,
        "bulk_max_bytes": 5_242_880,
        "max_retries": 8,
        "retry_max_seconds": 60.0,
        "lease_seconds": 30.0,  # an addition to the contract: the worker's failover time
        "targets_refresh_seconds": 30.0,
        "metrics_addr": "0.0.0.0:9464",
        "worker_processes": 1,  # an addition to the contract: cdcsync run --processes
        "log_format": None,  # text when stderr is a terminal, else JSON (cdcsync.logs)
        "log_level": "INFO",
        "aws_fast_reads": True,  # an addition to the contract: GetRecords and Scan parsed by cdcsync
    }


@pytest.mark.parametrize(
    ("env", "value", "field", "expected"),
    [
        ("CDCSYNC_MAPPINGS", "/etc/cdcsync/users.yaml", "mappings", Path("/etc/cdcsync/users.yaml")),
        (
            "CDCSYNC_OPENSEARCH_URL",
            "https://a:9200, http://b/",
            "opensearch_url",
            ("https://a:9200", "http://b"),
        ),
        ("CDCSYNC_OPENSEARCH_AUTH", "sigv4", "opensearch_auth", "sigv4"),
        ("CDCSYNC_OPENSEARCH_SIGV4_SERVICE", "aoss", "opensearch_sigv4_service", "aoss"),
        ("CDCSYNC_OPENSEARCH_VERIFY_CERTS", "false", "opensearch_verify_certs", False),
        ("CDCSYNC_DLQ", "s3://dead-letters/cdcsync/", "dlq", "s3://dead-letters/cdcsync/"),
        ("CDCSYNC_CHECKPOINTS", "dynamodb://cdcsync-leases", "checkpoints", "dynamodb://cdcsync-leases"),
        ("CDCSYNC_BULK_MAX_ACTIONS", "1", "bulk_max_actions", 1),
        ("CDCSYNC_BULK_MAX_BYTES", "1024", "bulk_max_bytes", 1024),
        ("CDCSYNC_MAX_RETRIES", "0", "max_retries", 0),
        ("CDCSYNC_RETRY_MAX_SECONDS", "0.5", "retry_max_seconds", 0.5),
        ("CDCSYNC_METRICS_ADDR", "[::]:9100", "metrics_addr", "[::]:9100"),
        ("CDCSYNC_LEASE_SECONDS", "5", "lease_seconds", 5.0),
        ("CDCSYNC_WORKER_PROCESSES", "4", "worker_processes", 4),
        ("CDCSYNC_DLQ_OVERFLOW", "s3://dlq-bucket/big", "dlq_overflow", "s3://dlq-bucket/big"),
        ("CDCSYNC_LOG_FORMAT", "text", "log_format", "text"),
        ("CDCSYNC_LOG_LEVEL", "debug", "log_level", "DEBUG"),
        ("CDCSYNC_AWS_FAST_READS", "false", "aws_fast_reads", False),
        ("cdcsync_log_level", "warning", "log_level", "WARNING"),
        ("CDCSYNC_DLQ", "", "dlq", "file://./cdcsync-dlq.jsonl"),
    ],
)
def test_load_settings_env_value_parses_to_field(
    monkeypatch: pytest.MonkeyPatch, env: str, value: str, field: str, expected: object
) -> None:
    # GIVEN one environment variable
    monkeypatch.setenv(env, value)

    # WHEN the settings are loaded
    settings = load_settings()

    # THEN the field holds the parsed value (an empty variable counts as unset)
    assert getattr(settings, field) == expected


@pytest.mark.parametrize(
    ("env", "value", "message"),
    [
        (
            "CDCSYNC_OPENSEARCH_AUTH",
            "kerberos",
            'CDCSYNC_OPENSEARCH_AUTH: expected one of none, basic, sigv4, apikey, got "kerberos"',
        ),
        (
            "CDCSYNC_OPENSEARCH_SIGV4_SERVICE",
            "opensearch",
            'CDCSYNC_OPENSEARCH_SIGV4_SERVICE: expected one of es, aoss, got "opensearch"',
        ),
        (
            "CDCSYNC_OPENSEARCH_URL",
            "ftp://search:9200",
            'CDCSYNC_OPENSEARCH_URL: expected http(s)://HOST[:PORT], comma-separated, got "ftp://search:9200"',
        ),
        (
            "CDCSYNC_OPENSEARCH_URL",
            "http://search:9200/prefix",
            "CDCSYNC_OPENSEARCH_URL: expected http(s)://HOST[:PORT], comma-separated, "
            'got "http://search:9200" (no path, query or fragment allowed)',
        ),
        (
            "CDCSYNC_OPENSEARCH_URL",
            "http://search:port",
            "CDCSYNC_OPENSEARCH_URL: expected http(s)://HOST[:PORT], comma-separated, "
            'got "http://search" (not a valid host and port)',
        ),
        (
            "CDCSYNC_OPENSEARCH_URL",
            " , ",
            "CDCSYNC_OPENSEARCH_URL: expected http(s)://HOST[:PORT], comma-separated, got no URL",
        ),
        (
            "CDCSYNC_OPENSEARCH_VERIFY_CERTS",
            "maybe",
            'CDCSYNC_OPENSEARCH_VERIFY_CERTS: expected true or false, got "maybe"',
        ),
        (
            "CDCSYNC_DLQ",
            "kafka://dead",
            "CDCSYNC_DLQ: expected file:///PATH, sqs://QUEUE_NAME_OR_URL or s3://BUCKET/PREFIX, "
            'got "kafka://dead"',
        ),
        (
            "CDCSYNC_DLQ",
            "sqs://bad queue",
            "CDCSYNC_DLQ: expected file:///PATH, sqs://QUEUE_NAME_OR_URL or s3://BUCKET/PREFIX, "
            'got "sqs://bad queue" (not an SQS queue name or URL)',
        ),
        (
            "CDCSYNC_DLQ",
            "s3://Bad_Bucket/x",
            "CDCSYNC_DLQ: expected file:///PATH, sqs://QUEUE_NAME_OR_URL or s3://BUCKET/PREFIX, "
            'got "s3://Bad_Bucket/x" (not an S3 bucket name)',
        ),
        (
            "CDCSYNC_DLQ",
            "file://",
            "CDCSYNC_DLQ: expected file:///PATH, sqs://QUEUE_NAME_OR_URL or s3://BUCKET/PREFIX, "
            'got "file://" (no path)',
        ),
        (
            "CDCSYNC_CHECKPOINTS",
            "redis://x",
            'CDCSYNC_CHECKPOINTS: expected dynamodb://TABLE or file:///PATH, got "redis://x"',
        ),
        (
            "CDCSYNC_CHECKPOINTS",
            "dynamodb://ab",
            'CDCSYNC_CHECKPOINTS: expected dynamodb://TABLE or file:///PATH, got "dynamodb://ab" '
            "(not a DynamoDB table name)",
        ),
        ("CDCSYNC_BULK_MAX_ACTIONS", "0", 'CDCSYNC_BULK_MAX_ACTIONS: expected an integer >= 1, got "0"'),
        ("CDCSYNC_BULK_MAX_ACTIONS", "many", 'CDCSYNC_BULK_MAX_ACTIONS: expected an integer, got "many"'),
        ("CDCSYNC_BULK_MAX_BYTES", "1023", 'CDCSYNC_BULK_MAX_BYTES: expected an integer >= 1024, got "1023"'),
        ("CDCSYNC_MAX_RETRIES", "-1", 'CDCSYNC_MAX_RETRIES: expected an integer >= 0, got "-1"'),
        ("CDCSYNC_RETRY_MAX_SECONDS", "0", 'CDCSYNC_RETRY_MAX_SECONDS: expected a number > 0, got "0"'),
        ("CDCSYNC_RETRY_MAX_SECONDS", "1m", 'CDCSYNC_RETRY_MAX_SECONDS: expected a number, got "1m"'),
        # Below 3 s a write round (capped a 10 % margin before the lease could lapse, renewed every
        # third of it, 1 s kept by the bulk writer) would have too little time or none to write.
        ("CDCSYNC_LEASE_SECONDS", "2", 'CDCSYNC_LEASE_SECONDS: expected a number >= 3, got "2"'),
        ("CDCSYNC_METRICS_ADDR", "9464", 'CDCSYNC_METRICS_ADDR: expected HOST:PORT, got "9464"'),
        (
            "CDCSYNC_METRICS_ADDR",
            "0.0.0.0:99999",
            'CDCSYNC_METRICS_ADDR: expected HOST:PORT, got "0.0.0.0:99999"',
        ),
        ("CDCSYNC_LOG_FORMAT", "xml", 'CDCSYNC_LOG_FORMAT: expected one of json, text, got "xml"'),
        (
            "CDCSYNC_DLQ_CONTENT",
            "images",
            'CDCSYNC_DLQ_CONTENT: expected one of keys, projected, full, got "images"',
        ),
        ("CDCSYNC_LOG_KEYS", "hashed", 'CDCSYNC_LOG_KEYS: expected one of plain, hash, none, got "hashed"'),
        (
            "CDCSYNC_LOG_LEVEL",
            "verbose",
            'CDCSYNC_LOG_LEVEL: expected one of DEBUG, INFO, WARNING, ERROR, CRITICAL, got "verbose"',
        ),
        (
            "CDCSYNC_OPENSEARCH_URLS",
            "http://a:9200",
            "CDCSYNC_OPENSEARCH_URLS: expected a known CDCSYNC_* setting, got an unknown name "
            "(did you mean CDCSYNC_OPENSEARCH_URL?)",
        ),
        (
            "CDCSYNC_COLOUR",
            "blue",
            "CDCSYNC_COLOUR: expected a known CDCSYNC_* setting, got an unknown name",
        ),
    ],
)
def test_load_settings_invalid_env_raises_one_line_naming_variable(
    monkeypatch: pytest.MonkeyPatch, env: str, value: str, message: str
) -> None:
    # GIVEN one invalid environment variable
    monkeypatch.setenv(env, value)

    # WHEN / THEN loading fails with one line naming the variable, what was expected and what was found
    assert _error() == message


def test_load_settings_several_problems_lists_each_on_its_own_line(monkeypatch: pytest.MonkeyPatch) -> None:
    # GIVEN three invalid variables
    monkeypatch.setenv("CDCSYNC_OPENSEARCH_AUTH", "kerberos")
    monkeypatch.setenv("CDCSYNC_MAX_RETRIES", "-1")
    monkeypatch.setenv("CDCSYNC_LOG_FORMAT", "xml")

    # WHEN / THEN every problem is reported at once, in the order of the settings table
    assert _error().splitlines() == [
        'CDCSYNC_OPENSEARCH_AUTH: expected one of none, basic, sigv4, apikey, got "kerberos"',
        'CDCSYNC_MAX_RETRIES: expected an integer >= 0, got "-1"',
        'CDCSYNC_LOG_FORMAT: expected one of json, text, got "xml"',
    ]


@pytest.mark.parametrize(
    ("env", "value", "message"),
    [
        (
            "CDCSYNC_LOG_FORMAT",
            "xml\n\x1b[2JCDCSYNC_LOG_FORMAT: all settings valid",
            'CDCSYNC_LOG_FORMAT: expected one of json, text, got "xml\\n\\x1b[2JCDCSYNC_LOG_FORMAT: '
            'all settings valid"',
        ),
        (
            "CDCSYNC_DLQ",
            "ftp://x\r\nok\u2028",
            "CDCSYNC_DLQ: expected file:///PATH, sqs://QUEUE_NAME_OR_URL or s3://BUCKET/PREFIX, got "
            '"ftp://x\\r\\nok\\u2028"',
        ),
        (
            "CDCSYNC_METRICS_ADDR",
            "0.0.0.0:9464\n",
            'CDCSYNC_METRICS_ADDR: expected HOST:PORT, got "0.0.0.0:9464\\n"',
        ),
    ],
)
def test_load_settings_env_value_with_newline_is_escaped_in_one_line(
    monkeypatch: pytest.MonkeyPatch, env: str, value: str, message: str
) -> None:
    # GIVEN a variable whose value holds a newline (a stray one from a template, or a forged line)
    monkeypatch.setenv(env, value)
    # WHEN / THEN the error is still one line per problem, the value's control characters escaped
    assert _error() == message


@pytest.mark.parametrize(
    ("env", "message"),
    [
        (
            {"CDCSYNC_OPENSEARCH_AUTH": "basic"},
            "CDCSYNC_OPENSEARCH_AUTH: expected CDCSYNC_OPENSEARCH_USERNAME and CDCSYNC_OPENSEARCH_PASSWORD "
            "with basic, got CDCSYNC_OPENSEARCH_USERNAME and CDCSYNC_OPENSEARCH_PASSWORD unset",
        ),
        (
            {"CDCSYNC_OPENSEARCH_AUTH": "basic", "CDCSYNC_OPENSEARCH_USERNAME": "admin"},
            "CDCSYNC_OPENSEARCH_AUTH: expected CDCSYNC_OPENSEARCH_USERNAME and CDCSYNC_OPENSEARCH_PASSWORD "
            "with basic, got CDCSYNC_OPENSEARCH_PASSWORD unset",
        ),
        (
            {"CDCSYNC_OPENSEARCH_AUTH": "basic", "CDCSYNC_OPENSEARCH_PASSWORD": PASSWORD},
            "CDCSYNC_OPENSEARCH_AUTH: expected CDCSYNC_OPENSEARCH_USERNAME and CDCSYNC_OPENSEARCH_PASSWORD "
            "with basic, got CDCSYNC_OPENSEARCH_USERNAME unset",
        ),
        (
            {"CDCSYNC_OPENSEARCH_USERNAME": "admin", "CDCSYNC_OPENSEARCH_PASSWORD": PASSWORD},
            "CDCSYNC_OPENSEARCH_AUTH: expected basic when CDCSYNC_OPENSEARCH_USERNAME and "
            'CDCSYNC_OPENSEARCH_PASSWORD is set, got "none"',
        ),
        (
            {"CDCSYNC_OPENSEARCH_AUTH": "sigv4", "CDCSYNC_OPENSEARCH_PASSWORD": PASSWORD},
            'CDCSYNC_OPENSEARCH_AUTH: expected basic when CDCSYNC_OPENSEARCH_PASSWORD is set, got "sigv4"',
        ),
    ],
)
def test_load_settings_auth_without_matching_credentials_raises(
    monkeypatch: pytest.MonkeyPatch, env: dict[str, str], message: str
) -> None:
    # GIVEN an auth mode and credentials that do not belong together
    for name, value in env.items():
        monkeypatch.setenv(name, value)

    # WHEN / THEN loading fails naming the missing or stray variables, never the password
    text = _error()
    assert text == message
    assert PASSWORD not in text


def test_load_settings_basic_auth_keeps_password_out_of_repr_and_str(monkeypatch: pytest.MonkeyPatch) -> None:
    # GIVEN basic auth with a password (over https: over http it is refused)
    monkeypatch.setenv("CDCSYNC_OPENSEARCH_URL", "https://search.example.com")
    monkeypatch.setenv("CDCSYNC_OPENSEARCH_AUTH", "basic")
    monkeypatch.setenv("CDCSYNC_OPENSEARCH_USERNAME", "admin")
    monkeypatch.setenv("CDCSYNC_OPENSEARCH_PASSWORD", PASSWORD)

    # WHEN the settings are loaded and printed
    settings = load_settings()

    # THEN the password is usable but never printed
    assert settings.opensearch_password is not None
    assert settings.opensearch_password.get_secret_value() == PASSWORD
    assert PASSWORD not in repr(settings)
    assert PASSWORD not in str(settings)


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (
            {"opensearch_auth": "basic", "opensearch_username": "admin", "opensearch_password": 12345},
            "CDCSYNC_OPENSEARCH_PASSWORD: expected a string, got a hidden value",
        ),
        (
            {"opensearch_url": f"http://admin:{PASSWORD}@search:9200"},
            "CDCSYNC_OPENSEARCH_URL: expected http(s)://HOST[:PORT], comma-separated, got "
            '"http://search:9200" (credentials belong in CDCSYNC_OPENSEARCH_USERNAME/_PASSWORD)',
        ),
        (
            {"opensearch_pasword": PASSWORD},
            "CDCSYNC_OPENSEARCH_PASWORD: expected a known CDCSYNC_* setting, got an unknown name "
            "(did you mean CDCSYNC_OPENSEARCH_PASSWORD?)",
        ),
    ],
)
def test_load_settings_invalid_secret_never_shows_its_value(overrides: dict[str, Any], message: str) -> None:
    # GIVEN a secret in a wrong place or of a wrong type
    # WHEN loading fails
    with pytest.raises(SettingsError) as raised:
        load_settings(**overrides)

    # THEN neither our message nor the chained pydantic error shows the secret
    assert str(raised.value) == message
    assert PASSWORD not in str(raised.value.__cause__)
    assert "12345" not in str(raised.value.__cause__)


_URL_EXPECTED = "CDCSYNC_OPENSEARCH_URL: expected http(s)://HOST[:PORT], comma-separated, got "
_IN_URL = "(credentials belong in CDCSYNC_OPENSEARCH_USERNAME/_PASSWORD)"


@pytest.mark.parametrize(
    ("url", "message"),
    [
        # an @ in the password: the old mask showed "***@ssw0rd@search"
        (f"https://admin:p@{PASSWORD}@search:9200", f'{_URL_EXPECTED}"https://search:9200" {_IN_URL}'),
        # a slash in the password: the old mask showed the whole URL
        (f"https://admin:p/{PASSWORD}@search:9200", f'{_URL_EXPECTED}"https://search:9200" {_IN_URL}'),
        (
            f"https://admin:{PASSWORD}@[2001:db8::7]:9200",
            f'{_URL_EXPECTED}"https://[2001:db8::7]:9200" {_IN_URL}',
        ),
        (
            f"https://search:9200/?api_key={PASSWORD}",
            f'{_URL_EXPECTED}"https://search:9200" (no path, query or fragment allowed)',
        ),
        (
            f"https://search:9200#{PASSWORD}",
            f'{_URL_EXPECTED}"https://search:9200" (no path, query or fragment allowed)',
        ),
        (f"https://search:{PASSWORD}", f'{_URL_EXPECTED}"https://search" (not a valid host and port)'),
        (f"ftp://search/{PASSWORD}", f'{_URL_EXPECTED}"ftp://search"'),
    ],
)  # fmt: skip
def test_load_settings_opensearch_url_with_secret_shows_scheme_host_port_only(url: str, message: str) -> None:
    # GIVEN an OpenSearch URL carrying a secret in its user info, query or fragment
    # WHEN loading refuses it
    with pytest.raises(SettingsError) as raised:
        load_settings(opensearch_url=url)

    # THEN the line names only the scheme, host and port, and the chained error holds no secret either
    assert str(raised.value) == message
    assert PASSWORD not in str(raised.value.__cause__)


_BASIC = {"opensearch_auth": "basic", "opensearch_username": "admin", "opensearch_password": PASSWORD}


@pytest.mark.parametrize(
    ("urls", "shown"),
    [
        ("http://search:9200", "http://search:9200"),
        ("https://a:9200,HTTP://b:9200", "http://b:9200"),
        ("http://a:9200,http://b:9200", "http://a:9200, http://b:9200"),
    ],
)
def test_load_settings_credentials_over_http_raises(urls: str, shown: str) -> None:
    # GIVEN basic credentials and a URL that would carry them unencrypted
    # WHEN / THEN loading fails with one line naming the plain URLs and the way out
    assert _error(opensearch_url=urls, **_BASIC) == (
        f'CDCSYNC_OPENSEARCH_URL: expected https:// with CDCSYNC_OPENSEARCH_AUTH=basic, got "{shown}" '
        "(the credentials would cross the network unencrypted); use https, or set "
        "CDCSYNC_OPENSEARCH_ALLOW_INSECURE=true for local development only"
    )


@pytest.mark.parametrize(
    ("overrides", "sends_credentials"),
    [
        ({"opensearch_url": "https://search:9200", **_BASIC}, True),
        ({"opensearch_url": "http://127.0.0.1:9200", "opensearch_allow_insecure": True, **_BASIC}, True),
        ({"opensearch_url": "http://127.0.0.1:9200"}, False),  # the demo and the local tests
        ({"opensearch_url": "http://search:80", "opensearch_auth": "sigv4"}, False),  # a signature, no secret
    ],
)
def test_load_settings_credentials_over_http_allowed_when_safe_or_opted_in(
    overrides: dict[str, Any], sends_credentials: bool
) -> None:
    # GIVEN https, no credentials, or the explicit opt-in WHEN loaded THEN the settings are accepted
    settings = load_settings(**overrides)
    assert settings.sends_credentials is sends_credentials


def test_load_settings_allow_insecure_env_parses_to_field(monkeypatch: pytest.MonkeyPatch) -> None:
    # GIVEN the opt-in in the environment, with basic credentials over http
    monkeypatch.setenv("CDCSYNC_OPENSEARCH_ALLOW_INSECURE", "true")
    monkeypatch.setenv("CDCSYNC_OPENSEARCH_URL", "http://127.0.0.1:9200")
    # WHEN loaded THEN it is accepted
    assert load_settings(**_BASIC).opensearch_allow_insecure is True


def test_load_settings_dotenv_file_is_read_below_environment(
    monkeypatch: pytest.MonkeyPatch, isolated_env: Path
) -> None:
    # GIVEN a .env file with settings and unrelated variables, and one setting also in the environment
    (isolated_env / ".env").write_text(
        "AWS_REGION=eu-west-1\nCDCSYNC_LOG_FORMAT=text\nCDCSYNC_MAX_RETRIES=3\n", encoding="utf-8"
    )
    monkeypatch.setenv("CDCSYNC_MAX_RETRIES", "5")

    # WHEN the settings are loaded
    settings = load_settings()

    # THEN .env fills in, the environment wins, and non-CDCSYNC_ lines are left to their owners
    assert (settings.log_format, settings.max_retries) == ("text", 5)


def test_load_settings_dotenv_unknown_setting_raises(isolated_env: Path) -> None:
    # GIVEN a .env file with a misspelt setting
    (isolated_env / ".env").write_text("CDCSYNC_LOGLEVEL=debug\n", encoding="utf-8")

    # WHEN / THEN loading fails naming it
    assert _error() == (
        "CDCSYNC_LOGLEVEL: expected a known CDCSYNC_* setting, got an unknown name "
        "(did you mean CDCSYNC_LOG_LEVEL?)"
    )


def test_load_settings_test_suite_variables_are_ignored(monkeypatch: pytest.MonkeyPatch) -> None:
    # GIVEN a CDCSYNC_TEST_* variable (reserved for the test suite)
    monkeypatch.setenv("CDCSYNC_TEST_OPENSEARCH_URL", "http://127.0.0.1:9200")

    # WHEN / THEN the settings load with defaults
    assert load_settings() == Settings()


def test_load_settings_override_beats_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    # GIVEN a variable in the environment
    monkeypatch.setenv("CDCSYNC_BULK_MAX_ACTIONS", "10")

    # WHEN an override is given for the same setting
    settings = load_settings(bulk_max_actions=20)

    # THEN the override wins
    assert settings.bulk_max_actions == 20


@pytest.mark.parametrize(
    ("dlq", "target"),
    [
        ("file://./cdcsync-dlq.jsonl", FileTarget(Path("cdcsync-dlq.jsonl"))),
        ("file:///var/lib/cdcsync/dlq.jsonl", FileTarget(Path("/var/lib/cdcsync/dlq.jsonl"))),
        ("sqs://cdcsync-dlq", SqsTarget("cdcsync-dlq")),
        ("sqs://cdcsync-dlq.fifo", SqsTarget("cdcsync-dlq.fifo")),
        (
            "sqs://https://sqs.us-east-1.amazonaws.com/123456789012/dlq",
            SqsTarget("https://sqs.us-east-1.amazonaws.com/123456789012/dlq"),
        ),
        ("s3://dead-letters/cdcsync/users/", S3Target("dead-letters", "cdcsync/users/")),
        ("s3://dead-letters", S3Target("dead-letters", "")),
    ],
)
def test_settings_dlq_target_parses_url(dlq: str, target: object) -> None:
    # GIVEN / WHEN a DLQ URL is set
    # THEN its parsed target says where dead letters go
    assert load_settings(dlq=dlq).dlq_target == target


@pytest.mark.parametrize(
    ("checkpoints", "target"),
    [
        ("file://./cdcsync-checkpoints.json", FileTarget(Path("cdcsync-checkpoints.json"))),
        ("file:///data/checkpoints.json", FileTarget(Path("/data/checkpoints.json"))),
        ("dynamodb://cdcsync-leases", DynamoDbTarget("cdcsync-leases")),
    ],
)
def test_settings_checkpoint_target_parses_url(checkpoints: str, target: object) -> None:
    # GIVEN / WHEN a checkpoint URL is set
    # THEN its parsed target says where worker state lives
    assert load_settings(checkpoints=checkpoints).checkpoint_target == target


@pytest.mark.parametrize(
    ("addr", "host_port"),
    [("127.0.0.1:9464", ("127.0.0.1", 9464)), ("[::]:9100", ("::", 9100)), ("localhost:0", ("localhost", 0))],
)
def test_settings_metrics_host_port_splits_addr(addr: str, host_port: tuple[str, int]) -> None:
    # GIVEN / WHEN a metrics address is set
    # THEN it splits into what an HTTP server binds
    assert load_settings(metrics_addr=addr).metrics_host_port == host_port


# A distinctive fake key (Elasticsearch's "encoded" form), to look for in every output.
API_KEY = "VnVhQ2ZHY0JDZGJrUW0tZTVhT3g6dWkybHAyYXhUTm1zeWFrdzl0dk5udw"
_KEY_EXPECTED = (
    "CDCSYNC_OPENSEARCH_API_KEY: expected the API key on one line in visible ASCII (the encoded value, "
    "or ID:KEY), got a hidden value "
)


@pytest.mark.parametrize(
    ("key", "found"),
    [
        # base64 tools wrap at 76 characters: a pasted key often carries the break
        (f"{API_KEY}\n==", "with a line break inside; join the key onto one line"),
        (f"{API_KEY}\r\n==", "with a line break inside; join the key onto one line"),
        (f"{API_KEY[:20]} {API_KEY[20:]}", "with whitespace inside; remove it"),
        (f"{API_KEY[:20]}\t{API_KEY[20:]}", "with whitespace inside; remove it"),
        (f"{API_KEY}\x1b[2J", "with a control character inside; copy the key again"),
        (f"{API_KEY}\u202e", "with a control character inside; copy the key again"),
        (f"{API_KEY}\u00e9", "with a non-ASCII character inside; copy the key again"),
        (" \n ", "of only whitespace; set the key"),
    ],
)
def test_load_settings_api_key_not_one_visible_word_raises_without_showing_it(
    monkeypatch: pytest.MonkeyPatch, key: str, found: str
) -> None:
    # GIVEN an API key that no HTTP header can carry as it is
    monkeypatch.setenv("CDCSYNC_OPENSEARCH_URL", "https://search.example:9200")
    monkeypatch.setenv("CDCSYNC_OPENSEARCH_AUTH", "apikey")
    monkeypatch.setenv("CDCSYNC_OPENSEARCH_API_KEY", key)
    # WHEN loading fails
    with pytest.raises(SettingsError) as raised:
        load_settings()
    # THEN one line says what is wrong with it and never shows the key, nor does the chained error
    assert str(raised.value) == _KEY_EXPECTED + found
    for shown in (str(raised.value), repr(raised.value), str(raised.value.__cause__)):
        assert API_KEY[:12] not in shown
        assert API_KEY[-12:] not in shown


@pytest.mark.parametrize("key", [API_KEY, f"{API_KEY}\n", f"  {API_KEY}  ", "my-id:my_key-1"])
def test_load_settings_api_key_surrounding_whitespace_is_dropped(
    monkeypatch: pytest.MonkeyPatch, key: str
) -> None:
    # GIVEN a key with a trailing newline or spaces around it (a secrets file, a .env line)
    monkeypatch.setenv("CDCSYNC_OPENSEARCH_URL", "https://search.example:9200")
    monkeypatch.setenv("CDCSYNC_OPENSEARCH_AUTH", "apikey")
    monkeypatch.setenv("CDCSYNC_OPENSEARCH_API_KEY", key)
    # WHEN loaded THEN the key is kept without them
    settings = load_settings()
    assert settings.opensearch_api_key is not None
    assert settings.opensearch_api_key.get_secret_value() == key.strip()
