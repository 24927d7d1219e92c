"""Session-scoped real local servers (moto_server, osmem-server) and clients bound to them.

Set CDCSYNC_TEST_OPENSEARCH_URL (e.g. http://127.0.0.1:9200) to run against a real OpenSearch
cluster instead of osmem-server; tests then name everything after ``unique_name`` and delete it.

``target`` runs a test once per target dialect: OpenSearch (osmem-server), Elasticsearch (the
dialect stand-in in front of osmem, or a real cluster named by CDCSYNC_TEST_ELASTICSEARCH_URL and
CDCSYNC_TEST_ELASTICSEARCH_API_KEY) and OpenSearch Serverless (the stand-in, SEARCH collection).
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import boto3
import pytest
from botocore.config import Config
from opensearchpy import OpenSearch

from tests.integration.lambda_world import LambdaWorld, WorldFactory, make_world
from tests.support.dialect_proxy import DialectProxy, dialect_proxy, encoded_api_key
from tests.support.servers import moto_server, osmem_server

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient
    from mypy_boto3_dynamodbstreams import DynamoDBStreamsClient
    from mypy_boto3_s3 import S3Client
    from mypy_boto3_sqs import SQSClient

OPENSEARCH_URL_ENV = "CDCSYNC_TEST_OPENSEARCH_URL"
ELASTICSEARCH_URL_ENV = "CDCSYNC_TEST_ELASTICSEARCH_URL"
ELASTICSEARCH_API_KEY_ENV = "CDCSYNC_TEST_ELASTICSEARCH_API_KEY"
TARGETS = ("opensearch", "elasticsearch", "aoss")
STANDIN_API_KEY = encoded_api_key("cdcsync-tests", "standin-secret")
REGION = "us-east-1"

# Fail fast: a test against a local server should never sit in botocore's retry loop.
_CLIENT_CONFIG = Config(
    connect_timeout=5,
    read_timeout=30,
    retries={"max_attempts": 2, "mode": "standard"},
    s3={"addressing_style": "path"},  # virtual-host style cannot work against 127.0.0.1
)

AwsClientFactory = Callable[[str], Any]


@pytest.fixture(scope="session")
def moto_endpoint() -> Iterator[str]:
    """The URL of one moto server shared by the session (DynamoDB, Streams, SQS, S3)."""
    with moto_server() as url:
        yield url


@pytest.fixture(scope="session")
def aws_session() -> boto3.Session:
    """A boto3 session on the fake credentials the root conftest puts in the environment."""
    return boto3.Session(region_name=REGION)


@pytest.fixture(scope="session")
def aws_client(aws_session: boto3.Session, moto_endpoint: str) -> AwsClientFactory:
    """Factory: ``aws_client("kinesis")`` gives a low-level client bound to moto."""

    def make(service_name: str) -> Any:
        return aws_session.client(service_name, endpoint_url=moto_endpoint, config=_CLIENT_CONFIG)  # type: ignore[call-overload]

    return make


@pytest.fixture(scope="session")
def dynamodb(aws_client: AwsClientFactory) -> DynamoDBClient:
    """DynamoDB client bound to moto."""
    client: DynamoDBClient = aws_client("dynamodb")
    return client


@pytest.fixture(scope="session")
def dynamodbstreams(aws_client: AwsClientFactory) -> DynamoDBStreamsClient:
    """DynamoDB Streams client bound to moto."""
    client: DynamoDBStreamsClient = aws_client("dynamodbstreams")
    return client


@pytest.fixture(scope="session")
def sqs(aws_client: AwsClientFactory) -> SQSClient:
    """SQS client bound to moto."""
    client: SQSClient = aws_client("sqs")
    return client


@pytest.fixture(scope="session")
def s3(aws_client: AwsClientFactory) -> S3Client:
    """S3 client bound to moto."""
    client: S3Client = aws_client("s3")
    return client


@pytest.fixture(scope="session")
def opensearch_url() -> Iterator[str]:
    """The external cluster named by CDCSYNC_TEST_OPENSEARCH_URL, else a fresh osmem-server."""
    external = os.environ.get(OPENSEARCH_URL_ENV)
    if external:
        yield external
        return
    with osmem_server() as url:
        yield url


@pytest.fixture(scope="session")
def opensearch(opensearch_url: str) -> Iterator[OpenSearch]:
    """An OpenSearch client that reports errors at once (no client-side retries)."""
    client = OpenSearch(hosts=[opensearch_url], timeout=30, max_retries=0, retry_on_timeout=False)
    yield client
    client.close()


@dataclass
class TargetUnderTest:
    """One target dialect as cdcsync meets it: where it talks (``env``: the CDCSYNC_* settings of
    that target), the stand-in in between (``proxy``, None for a real server) and ``admin``, a
    client the test checks results with (the store behind the stand-in: it can refresh)."""

    name: str
    env: dict[str, str]
    admin: OpenSearch
    proxy: DialectProxy | None = None

    @property
    def settings(self) -> dict[str, Any]:
        """``env`` as ``load_settings`` keyword arguments."""
        return {name.removeprefix("CDCSYNC_").lower(): value for name, value in self.env.items()}

    def seen(self) -> list[tuple[str, str]]:
        """(method, path) of every request the stand-in saw (none for a real server)."""
        return [(method, path) for method, path, _ in (self.proxy.requests if self.proxy else [])]


@pytest.fixture(scope="session", params=TARGETS)
def target(
    request: pytest.FixtureRequest, opensearch_url: str, opensearch: OpenSearch
) -> Iterator[TargetUnderTest]:
    """Each target dialect in turn (the session runs every test using it three times).

    API keys go over http:// to the stand-in on 127.0.0.1 here, so those ``env`` allow it
    (CDCSYNC_OPENSEARCH_ALLOW_INSECURE; settings refuse credentials over http:// otherwise).
    """
    name = request.param
    if name == "opensearch":
        yield TargetUnderTest(name, {"CDCSYNC_OPENSEARCH_URL": opensearch_url}, opensearch)
        return
    if name == "elasticsearch" and os.environ.get(ELASTICSEARCH_URL_ENV):
        url, key = os.environ[ELASTICSEARCH_URL_ENV], os.environ.get(ELASTICSEARCH_API_KEY_ENV, "")
        admin = OpenSearch(
            hosts=[url], headers={"authorization": f"ApiKey {key}"}, verify_certs=False, ssl_show_warn=False
        )
        env = {
            "CDCSYNC_OPENSEARCH_URL": url,
            "CDCSYNC_OPENSEARCH_AUTH": "apikey",
            "CDCSYNC_OPENSEARCH_API_KEY": key,
            "CDCSYNC_OPENSEARCH_ALLOW_INSECURE": "true" if url.startswith("http://") else "false",
        }
        if url.startswith("https://"):
            env["CDCSYNC_OPENSEARCH_VERIFY_CERTS"] = "false"
        yield TargetUnderTest(name, env, admin)
        admin.close()
        return
    if name == "elasticsearch":
        # Elasticsearch 9: the stricter of the two majors on compatibility headers.
        with dialect_proxy(opensearch_url, "elasticsearch", api_key=STANDIN_API_KEY, major=9) as proxy:
            env = {
                "CDCSYNC_OPENSEARCH_URL": proxy.url,
                "CDCSYNC_OPENSEARCH_AUTH": "apikey",
                "CDCSYNC_OPENSEARCH_API_KEY": STANDIN_API_KEY,
                "CDCSYNC_OPENSEARCH_ALLOW_INSECURE": "true",
            }
            yield TargetUnderTest(name, env, opensearch, proxy)
        return
    with dialect_proxy(opensearch_url, "aoss", collection_type="SEARCH") as proxy:
        env = {
            "CDCSYNC_OPENSEARCH_URL": proxy.url,
            "CDCSYNC_OPENSEARCH_AUTH": "sigv4",
            "CDCSYNC_OPENSEARCH_SIGV4_SERVICE": "aoss",
        }
        yield TargetUnderTest(name, env, opensearch, proxy)


@pytest.fixture
def unique_name(request: pytest.FixtureRequest) -> Iterator[str]:
    """A short lowercase name such as ``t-3f9a1c`` for this test's tables and indices.

    Indices named ``<unique_name>*`` are deleted afterwards when the test used OpenSearch, so a
    shared real cluster keeps no leftovers. Names are resolved first, then deleted one by one,
    because clusters may refuse wildcard deletes (action.destructive_requires_name).
    """
    name = f"t-{secrets.token_hex(3)}"
    yield name
    if "opensearch" in request.fixturenames:
        client: OpenSearch = request.getfixturevalue("opensearch")
        leftovers = client.indices.get(index=f"{name}*", allow_no_indices=True, ignore_unavailable=True)
        for index in leftovers:
            client.indices.delete(index=index)


@pytest.fixture
def world_factory(
    tmp_path: Path,
    unique_name: str,
    opensearch: OpenSearch,
    opensearch_url: str,
    dynamodb: Any,
    moto_endpoint: str,
    monkeypatch: pytest.MonkeyPatch,
) -> WorldFactory:
    """``make_world`` bound to this test's servers and names: ``world_factory(mapping=..., retries=...)``."""
    # boto3 finds moto through its own configuration, as in production it finds AWS.
    monkeypatch.setenv("AWS_ENDPOINT_URL", moto_endpoint)

    def make(**kwargs: Any) -> LambdaWorld:
        kwargs.setdefault("opensearch_url", opensearch_url)
        return make_world(
            tmp_path, unique_name=unique_name, opensearch=opensearch, dynamodb=dynamodb, **kwargs
        )

    return make
