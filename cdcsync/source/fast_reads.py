"""GetRecords and Scan sent and parsed here, not by botocore: the two calls that carry the data.

botocore spends ~190 µs of CPU per GetRecords record and ~88 µs per Scan item walking its shape
model, making datetimes and decoding base64, only for ``change.py`` and ``values.py`` to undo it.
Both answers are DynamoDB JSON, the shape Lambda events carry and the converter already reads, so
``FastReads`` wraps a boto3 DynamoDB Streams (or DynamoDB) client, sends its ``get_records`` (or
``scan``) itself and hands back ``orjson.loads`` of the body; every other method is the client's.

Kept from botocore, so nothing about identity, addressing or failure changes:

- credentials: the client's own, refreshed as they expire (``get_frozen_credentials``);
- signing: ``SigV4Auth``, signing name ``dynamodb`` (both services), the client's region;
- endpoint: ``client.meta.endpoint_url`` (``AWS_ENDPOINT_URL*`` honoured); the JSON 1.0 protocol's
  ``X-Amz-Target`` and ``Content-Type`` headers;
- HTTP: the client's own connection pool (``URLLib3Session``: its TLS settings, proxies, timeouts
  and ``max_pool_connections``, which ``aws_client(pool=...)`` sizes), so network failures are
  botocore's ``EndpointConnectionError`` / ``ConnectionClosedError`` / ``ReadTimeoutError``;
- retries: botocore's standard policy (throttling, 5xx, connection errors; the client's
  ``total_max_attempts``; jittered exponential backoff), as the client would retry the call.
  Callers' own retries (``call_streams``, the scan's throttling backoff) stay on top, as before;
- errors: a non-2xx answer is parsed by botocore's JSON parser and raised as the client's own
  exception class (``client.exceptions.from_code``), so ``error_code`` / ``error_kind`` see exactly
  what they saw before;
- ``x-amz-crc32``: checked when sent; a mismatch is retried, then raised as ``ChecksumError``
  (transient). A 2xx body that is not JSON is retried the same way, then raised as
  ``AnswerNotJsonError`` (botocore's parser reads it as ``{}``: a shard read to its end, a segment
  done, with nothing said).

What differs from botocore's answer, by design: ``ApproximateCreationDateTime`` is the epoch
number DynamoDB sent (not a datetime) and ``B`` / ``BS`` values are base64 text (not bytes), as in
a Lambda event; ``parse_record`` and ``image_to_plain`` read both shapes to the same result
(``tests/unit/source/test_fast_reads.py`` proves it on recorded answers). One exception keeps
botocore's shape: Scan's ``LastEvaluatedKey`` (its binary values as bytes), so a key from either
path can be saved (``backfill/scan.encode_key``) and sent again by either path. Request attribute
values follow botocore's rule: ``B`` given as bytes or text is sent as the base64 of its bytes.

No botocore parameter validation and no retry quota: callers send fixed, known requests.
``CDCSYNC_AWS_FAST_READS=false`` switches back to botocore for debugging (``with_fast_reads``).
"""

from __future__ import annotations

import base64
import random
import time
import zlib
from collections.abc import Callable, Mapping
from typing import Any

import botocore
import orjson
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSPreparedRequest, AWSRequest, AWSResponse
from botocore.exceptions import BotoCoreError, ChecksumError, HTTPClientError, NoCredentialsError
from botocore.exceptions import ConnectionError as BotoConnectionError
from botocore.parsers import create_parser
from botocore.retries.standard import (
    DEFAULT_MAX_ATTEMPTS,
    ExponentialBackoff,
    RetryContext,
    RetryEventAdapter,
    RetryPolicy,
    StandardRetryConditions,
    ThrottlingErrorDetector,
)

from cdcsync import __version__

__all__ = ["AnswerNotJsonError", "FastReads", "with_fast_reads"]

# The one call of each service sent here: (operation, client method).
_CALLS = {"dynamodbstreams": ("GetRecords", "get_records"), "dynamodb": ("Scan", "scan")}
_SIGNING_NAME = "dynamodb"  # DynamoDB Streams signs as dynamodb too
_CONTENT_TYPE = "application/x-amz-json-1.0"
_CRC32_HEADER = "x-amz-crc32"
# botocore's standard mode gives DynamoDB and DynamoDB Streams 4 attempts unless configured.
_SERVICE_MAX_ATTEMPTS = {"dynamodb": 4, "dynamodb-streams": 4}
_FIRST_ERROR_STATUS = 300  # botocore raises for every status from 300 on
# Request members holding attribute values, whose binaries botocore base64-encodes.
_VALUE_MAPS = ("ExclusiveStartKey", "ExpressionAttributeValues")


class AnswerNotJsonError(BotoCoreError):
    """A 2xx answer whose body is not JSON (after the client's attempts): botocore's parser reads it
    as ``{}``, which a reader would take for a shard read to its end or a segment done."""

    fmt = (
        "the answer to {operation} (HTTP {status}) is not JSON ({error}), starting {start!r}; "
        "check AWS_ENDPOINT_URL* and any proxy on the way"
    )


def with_fast_reads(client: Any, *, enabled: bool = True) -> Any:
    """``client`` with its GetRecords or Scan sent by ``FastReads``; the client itself when not
    ``enabled`` (``CDCSYNC_AWS_FAST_READS=false``: botocore's path, for debugging)."""
    return FastReads(client) if enabled else client


class FastReads:
    """A boto3 DynamoDB Streams or DynamoDB client whose ``get_records`` or ``scan`` is sent here.

    Thread-safe: shard threads (segment threads) share one, as they share the client.
    """

    def __init__(
        self,
        client: Any,
        *,
        sleep: Callable[[float], object] = time.sleep,
        jitter: Callable[[], float] = random.random,
    ) -> None:
        self._client = client
        meta = client.meta
        service_model = meta.service_model
        service = service_model.service_name
        if service not in _CALLS:
            raise ValueError(f"FastReads reads DynamoDB Streams or DynamoDB, not {service}")
        operation, method = _CALLS[service]
        self._operation_name = operation
        self._operation = service_model.operation_model(operation)
        self._url = str(meta.endpoint_url).rstrip("/") + "/"
        self._region = str(meta.region_name)
        self._headers = {
            "X-Amz-Target": f"{service_model.metadata['targetPrefix']}.{operation}",
            "Content-Type": _CONTENT_TYPE,
            # Not signed (SigV4 leaves it out); names the caller in AWS's logs, as botocore's does.
            "User-Agent": f"cdcsync/{__version__} Botocore/{botocore.__version__} fast-reads",
        }
        # The client's own HTTP pool and credentials: botocore exposes neither publicly.
        self._http = client._endpoint.http_session
        self._credentials = client._request_signer._credentials
        self._error_parser = create_parser("json")
        service_id = service_model.service_id.hyphenize()
        attempts = (meta.config.retries or {}).get("total_max_attempts") or _SERVICE_MAX_ATTEMPTS.get(
            service_id, DEFAULT_MAX_ATTEMPTS
        )
        self._attempts = int(attempts)
        self._retry = RetryPolicy(
            retry_checker=StandardRetryConditions(max_attempts=self._attempts),
            retry_backoff=ExponentialBackoff(
                random=jitter,
                service_name=service_id,
                throttling_detector=ThrottlingErrorDetector(RetryEventAdapter()),
            ),
        )
        self._sleep = sleep
        self._scan = service == "dynamodb"
        setattr(self, method, self._call)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._client, name)

    def _call(self, **request: Any) -> dict[str, Any]:
        """Send the operation with ``request``; the answer as plain JSON values (see the module)."""
        body = orjson.dumps(_wire_request(request) if self._scan else request)
        attempt = 0
        while True:
            attempt += 1
            http: AWSResponse | None = None
            caught: Exception | None = None
            parsed: dict[str, Any] | None = None
            garbled: orjson.JSONDecodeError | None = None
            try:
                http = self._http.send(self._signed(body))
            except (BotoConnectionError, HTTPClientError) as exc:
                caught = exc
            else:
                if http.status_code >= _FIRST_ERROR_STATUS:
                    parsed = self._error_parser.parse(
                        {"status_code": http.status_code, "headers": http.headers, "body": http.content},
                        self._operation.output_shape,
                    )
                elif _crc32_matches(http):
                    try:
                        return self._answer(http, attempt)
                    except orjson.JSONDecodeError as exc:  # damaged like a bad crc32, with none sent
                        garbled = exc
            context = RetryContext(
                attempt,
                operation_model=self._operation,
                parsed_response=parsed,
                http_response=http,
                caught_exception=caught,
            )
            damaged = http is not None and parsed is None  # a 2xx whose body failed its crc32 or is not JSON
            if self._retry.should_retry(context) or (damaged and attempt < self._attempts):
                self._sleep(self._retry.compute_retry_delay(context))
                continue
            if caught is not None:
                raise caught
            if garbled is not None:
                assert http is not None  # noqa: S101 - garbled implies an answer
                # botocore's own parser would answer {} (no records, no next iterator: a shard read
                # to its end, a segment done); a BotoCoreError keeps it in the error tree.
                raise AnswerNotJsonError(
                    operation=self._operation_name, status=http.status_code, error=garbled,
                    start=http.content[:100],
                ) from garbled  # fmt: skip
            if parsed is None:
                assert http is not None  # noqa: S101 - damaged implies an answer
                raise ChecksumError(
                    checksum_type="crc32",
                    expected_checksum=http.headers[_CRC32_HEADER],
                    actual_checksum=str(zlib.crc32(http.content)),
                )
            metadata = parsed.setdefault("ResponseMetadata", {})
            metadata.update(context.get_retry_metadata())
            metadata["RetryAttempts"] = attempt - 1
            code = str(parsed.get("Error", {}).get("Code", ""))
            raise self._client.exceptions.from_code(code)(parsed, self._operation_name)

    def _signed(self, body: bytes) -> AWSPreparedRequest:
        if self._credentials is None:
            raise NoCredentialsError()
        request = AWSRequest(method="POST", url=self._url, data=body, headers=dict(self._headers))
        SigV4Auth(self._credentials.get_frozen_credentials(), _SIGNING_NAME, self._region).add_auth(request)
        return request.prepare()

    def _answer(self, http: AWSResponse, attempt: int) -> dict[str, Any]:
        answer: dict[str, Any] = orjson.loads(http.content) if http.content else {}
        headers = {name.lower(): value for name, value in http.headers.items()}
        answer["ResponseMetadata"] = {
            "RequestId": headers.get("x-amzn-requestid", ""),
            "HTTPStatusCode": http.status_code,
            "HTTPHeaders": headers,
            "RetryAttempts": attempt - 1,
        }
        last_key = answer.get("LastEvaluatedKey")
        if last_key is not None:
            answer["LastEvaluatedKey"] = {name: _binary_as_bytes(value) for name, value in last_key.items()}
        return answer


def _crc32_matches(http: AWSResponse) -> bool:
    expected = http.headers.get(_CRC32_HEADER)
    return expected is None or zlib.crc32(http.content) == int(expected)


def _wire_request(request: Mapping[str, Any]) -> dict[str, Any]:
    """``request`` with the attribute values of its key and expression values as DynamoDB JSON."""
    wire = dict(request)
    for member in _VALUE_MAPS:
        values = wire.get(member)
        if values is not None:
            wire[member] = {name: _wire_value(value) for name, value in values.items()}
    return wire


def _wire_value(value: Mapping[str, Any]) -> Mapping[str, Any]:
    """An attribute value as sent: binaries base64 (bytes as they are, text as its UTF-8 bytes:
    botocore's rule for blobs), maps and lists walked."""
    if "B" in value:
        return {"B": _base64(value["B"])}
    if "BS" in value:
        return {"BS": [_base64(member) for member in value["BS"]]}
    if "M" in value:
        return {"M": {name: _wire_value(member) for name, member in value["M"].items()}}
    if "L" in value:
        return {"L": [_wire_value(member) for member in value["L"]]}
    return value


def _base64(blob: bytes | bytearray | str) -> str:
    data = blob.encode("utf-8") if isinstance(blob, str) else bytes(blob)
    return base64.b64encode(data).decode("ascii")


def _binary_as_bytes(value: Mapping[str, Any]) -> Mapping[str, Any]:
    """An attribute value as botocore returns it: binaries as bytes, maps and lists walked."""
    if "B" in value:
        return {"B": base64.b64decode(value["B"])}
    if "BS" in value:
        return {"BS": [base64.b64decode(member) for member in value["BS"]]}
    if "M" in value:
        return {"M": {name: _binary_as_bytes(member) for name, member in value["M"].items()}}
    if "L" in value:
        return {"L": [_binary_as_bytes(member) for member in value["L"]]}
    return value
