"""One frame to one connection: the management API's answer, mapped, with a bounded retry.

Two ways to post, mapped to the same answers:

- ``SignedTransport`` (the default): the request is signed with botocore's own ``SigV4Auth`` and
  the container's credentials (frozen per request, so botocore's refreshable credentials
  refresh as they do for a client), and sent on a kept-alive connection per thread. It
  skips what a boto3 client does on every call (parameter validation, endpoint rules, event
  hooks, response parsing), about two thirds of the CPU of a post.
- ``Boto3Transport``: the boto3 ``apigatewaymanagementapi`` client's ``post_to_connection``.

``lean_transport`` configures the lean path as botocore configures a client (CA bundle,
proxies), and falls back to the boto3 client where a proxy applies.

The AWS facts of DESIGN §4 are handled here and nowhere else: 410 (``GoneException``, with or
without the ``x-amzn-ErrorType`` header) is ``GONE``; 429 ``LimitExceededException`` (also "the
client's buffer is full"), 5xx, timeouts and reset connections are transient and retried with
exponential backoff and jitter; anything else (403, 413) and errors that persist are ``FAILED``.
"""

from __future__ import annotations

import json
import os
import random
import ssl
import threading
from collections.abc import Callable
from dataclasses import dataclass
from enum import Enum
from typing import TYPE_CHECKING, Protocol
from urllib.parse import urlsplit

from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials
from botocore.exceptions import BotoCoreError, ClientError, ConnectionError, HTTPClientError
from botocore.httpsession import get_cert_path
from botocore.utils import get_environ_proxies, percent_encode

from runtime import aws
from runtime.config import ConfigError
from runtime.http1 import Channel, ProtocolError, Response, request_head
from runtime.observability import logger

if TYPE_CHECKING:
    import botocore.session
    from mypy_boto3_apigatewaymanagementapi import ApiGatewayManagementApiClient

DEFAULT_MAX_RETRIES = 3
DEFAULT_BASE_BACKOFF_SECONDS = 0.05
# The management API's SigV4 signing name (the boto3 client's ``signingName``).
SIGNING_NAME = "execute-api"

_GONE_STATUS = 410
_THROTTLED_STATUS = 429
_FIRST_SERVER_ERROR = 500
# How a request on a kept-alive socket that the endpoint closed while idle fails
# (runtime.http1.ClosedBeforeAnswer is a ConnectionResetError).
_CLOSED_WHILE_IDLE = (BrokenPipeError, ConnectionResetError)
_THROTTLING_CODES = frozenset(
    {"LimitExceededException", "ThrottlingException", "TooManyRequestsException"}
)


class SendStatus(Enum):
    SENT = "sent"
    GONE = "gone"  # 410: the connection no longer exists (its row has been removed)
    FAILED = "failed"  # forbidden, too large, or transient past the retries: logged


@dataclass(frozen=True)
class Answer:
    """What one attempt got back, whichever way it was posted."""

    status: SendStatus
    transient: bool = False  # worth another attempt: throttled, 5xx, timeout, reset
    code: str = ""
    http_status: int = 0

    @classmethod
    def of_response(cls, http_status: int, code: str) -> Answer:
        """The same mapping for both ways of posting."""
        if http_status == _GONE_STATUS or code == aws.GONE_CODE:
            return cls(SendStatus.GONE, code=code, http_status=http_status)
        if 200 <= http_status < 300:
            return cls(SendStatus.SENT, http_status=http_status)
        transient = (
            code in _THROTTLING_CODES
            or http_status == _THROTTLED_STATUS
            or http_status >= _FIRST_SERVER_ERROR
        )
        return cls(SendStatus.FAILED, transient, code, http_status)

    @classmethod
    def of_network_error(cls, exc: Exception) -> Answer:
        """No HTTP answer: the connection failed, was reset, or the read timed out."""
        return cls(SendStatus.FAILED, transient=True, code=type(exc).__name__)


SENT = Answer(SendStatus.SENT, http_status=200)


class Transport(Protocol):
    def post(self, connection_id: str, data: bytes) -> Answer: ...

    def close(self) -> None: ...


class Boto3Transport:
    """``post_to_connection`` through a boto3 client (botocore's own retries off)."""

    def __init__(self, client: ApiGatewayManagementApiClient) -> None:
        self.client = client

    def post(self, connection_id: str, data: bytes) -> Answer:
        try:
            self.client.post_to_connection(ConnectionId=connection_id, Data=data)
        except self.client.exceptions.GoneException as exc:
            return Answer.of_response(_http_status(exc) or _GONE_STATUS, aws.GONE_CODE)
        except ClientError as exc:
            return Answer.of_response(_http_status(exc), aws.error_code(exc))
        except (HTTPClientError, ConnectionError) as exc:
            return Answer.of_network_error(exc)
        except BotoCoreError as exc:  # no credentials, bad parameters: retrying cannot help
            return Answer(SendStatus.FAILED, code=type(exc).__name__)
        return SENT

    def close(self) -> None:
        """Nothing to release: the client is the container's, shared by every sender."""


@dataclass(frozen=True)
class Timeouts:
    connect_seconds: float
    read_seconds: float


class SignedTransport:
    """``POST {endpoint}/@connections/{id}``, SigV4-signed by botocore, on kept-alive sockets.

    Each thread keeps one connection open to the endpoint (the sender's fan-out pool bounds
    the threads). The request is signed by botocore's ``SigV4Auth`` with the ``Host`` botocore
    would sign (so the signer need not parse the URL again), written in one ``send`` and its
    answer read by ``runtime.http1``: about a third less CPU than ``http.client`` per post.
    """

    def __init__(
        self,
        endpoint_url: str,
        credentials: Credentials,
        region: str,
        timeouts: Timeouts,
        tls: ssl.SSLContext | None = None,
    ) -> None:
        parts = urlsplit(endpoint_url.rstrip("/"))
        if parts.scheme not in ("https", "http") or not parts.hostname:
            raise ConfigError(f"management endpoint {endpoint_url!r} is not an http(s) URL")
        if not parts.path.isascii() or any(char.isspace() for char in parts.path):
            raise ConfigError(
                f"management endpoint {endpoint_url!r}: the stage path must be ASCII without "
                "spaces, as API Gateway's stage names are"
            )
        self.endpoint_url = endpoint_url.rstrip("/")
        self._origin = f"{parts.scheme}://{parts.netloc}"
        self._stage_path = parts.path
        https = parts.scheme == "https"
        self._tls = (tls or ssl.create_default_context()) if https else None
        self._address = (parts.hostname, parts.port or (443 if https else 80))
        self._credentials = credentials
        self._region = region
        self._timeouts = timeouts
        # The Host botocore signs for this URL (its rule drops a default port), worked out once.
        self._host = str(
            SigV4Auth(credentials, SIGNING_NAME, region).headers_to_sign(
                AWSRequest(method="POST", url=self._origin)
            )["host"]
        )
        self._local = threading.local()
        self._lock = threading.Lock()
        self._open: set[Channel] = set()

    def post(self, connection_id: str, data: bytes) -> Answer:
        # Escaped like the boto3 client escapes the path parameter (an id's "=" is "%3D").
        path = f"{self._stage_path}/@connections/{percent_encode(connection_id)}"
        request = AWSRequest(
            method="POST", url=self._origin + path, data=data, headers={"Host": self._host}
        )
        # Frozen per request: refreshable credentials refresh here when they near expiry.
        signer = SigV4Auth(self._credentials.get_frozen_credentials(), SIGNING_NAME, self._region)
        signer.add_auth(request)
        head = request_head("POST", path, dict(request.headers.items()), len(data))
        return self._exchange(head + data, retry_closed=True)

    def _exchange(self, message: bytes, *, retry_closed: bool) -> Answer:
        channel: Channel | None = getattr(self._local, "channel", None)
        reused = channel is not None
        try:
            channel = channel or self._connect()
            response = channel.exchange(message)
        except (OSError, ProtocolError) as exc:
            if channel is not None:
                self._discard(channel)
            # A kept-alive socket the endpoint closed while it was idle fails at once, before
            # any answer: once more on a new connection, without a backoff.
            if reused and retry_closed and isinstance(exc, _CLOSED_WHILE_IDLE):
                return self._exchange(message, retry_closed=False)
            return Answer.of_network_error(exc)
        if response.will_close:
            self._discard(channel)
        if response.status == 200:
            return SENT
        return Answer.of_response(response.status, _wire_error_code(response))

    def _connect(self) -> Channel:
        host, port = self._address
        timeouts = self._timeouts
        channel = Channel.open(
            host, port, timeouts.connect_seconds, timeouts.read_seconds, self._tls
        )
        with self._lock:
            self._open.add(channel)
        self._local.channel = channel
        return channel

    def _discard(self, channel: Channel) -> None:
        channel.close()
        self._local.channel = None
        with self._lock:
            self._open.discard(channel)

    def close(self) -> None:
        with self._lock:
            for channel in self._open:
                channel.close()
            self._open.clear()


def lean_transport(endpoint_url: str) -> Transport:
    """The lean path with the container's credentials, region, management API timeouts and TLS
    trust, each read where botocore reads it for a client of ``endpoint_url``.

    The CA bundle is botocore's: ``ca_bundle`` of the session's config (``AWS_CA_BUNDLE`` or
    the profile's), else ``REQUESTS_CA_BUNDLE``, else botocore's default bundle. Where a proxy
    applies to the endpoint (``Config(proxies=...)``, or ``HTTPS_PROXY``/``HTTP_PROXY`` not
    bypassed by ``NO_PROXY``, read by botocore's own ``get_environ_proxies``), this returns
    the boto3 client's path instead: botocore tunnels through https:// proxies, authenticates
    and applies ``proxies_config`` there, which ``runtime.http1`` does not do, and a proxied
    post pays the proxy's hop anyway.
    """
    session = aws.session()
    config = aws.management_config()
    scheme = urlsplit(endpoint_url).scheme
    proxies = config.proxies or get_environ_proxies(endpoint_url)  # type: ignore[attr-defined]
    if proxies.get(scheme):
        return Boto3Transport(aws.management_api(endpoint_url))
    credentials = session.get_credentials()
    if credentials is None:
        raise ConfigError(
            "no AWS credentials to sign posts to the management API with; give the function a "
            "role (Lambda sets AWS_ACCESS_KEY_ID and friends) or configure a profile"
        )
    region = session.get_config_variable("region")
    if not region:
        raise ConfigError("no AWS region to sign posts to the management API for; set AWS_REGION")
    # botocore-stubs do not declare Config's options as attributes.
    timeouts = Timeouts(
        getattr(config, "connect_timeout"),  # noqa: B009
        getattr(config, "read_timeout"),  # noqa: B009
    )
    tls = _tls_context(session) if scheme == "https" else None
    return SignedTransport(endpoint_url, credentials, region, timeouts, tls)


def _tls_context(session: botocore.session.Session) -> ssl.SSLContext:
    """Verifying against the bundle a botocore client of this session verifies with (its
    ``Session.create_client`` and ``EndpointCreator._get_verify_value``)."""
    verify = session.get_config_variable("ca_bundle")
    if verify is None:
        verify = os.environ.get("REQUESTS_CA_BUNDLE", True)
    if isinstance(verify, str) and not verify.strip():
        raise ConfigError(
            "the CA bundle (ca_bundle, AWS_CA_BUNDLE or REQUESTS_CA_BUNDLE) is blank: "
            "set it to the path of a PEM file, or unset it"
        )
    cert_path = str(get_cert_path(verify))
    if os.path.isdir(cert_path):
        return ssl.create_default_context(capath=cert_path)
    return ssl.create_default_context(cafile=cert_path)


def _wire_error_code(response: Response) -> str:
    """The error's code as botocore's rest-json parser reads it (``botocore/parsers.py``), so
    that both paths map and log the same code. A 5xx with an empty or HTML body is a generic
    error, coded by its status whatever its headers say (``_is_generic_error_response``).
    Otherwise the ``x-amzn-ErrorType`` header, else the body's ``code`` or ``Code``
    (``RestJSONParser._inject_error_code``), and where those are absent or null, the body's
    ``__type``, else the status (``BaseJSONParser._do_error_parse``); ``Code:extra`` and
    ``namespace#Code`` forms cut to ``Code``. Where botocore's parser raises instead (a body
    that is JSON but not an object, or not UTF-8), this reads no body."""
    stripped = response.body.strip()
    if response.status >= _FIRST_SERVER_ERROR and (not stripped or stripped.startswith(b"<html>")):
        return str(response.status)
    body = _json_object(response.body)
    code: object = None
    if "x-amzn-errortype" in response.headers:
        code = response.headers["x-amzn-errortype"]
    elif "code" in body or "Code" in body:
        code = body.get("code", body.get("Code", ""))
    if code is None:
        code = body.get("__type", str(response.status))
        if code is None:
            return ""
    if not isinstance(code, str):
        return str(code)
    return code.split(":", 1)[0].rsplit("#", 1)[-1]


def _json_object(body: bytes) -> dict[str, object]:
    """The error body as botocore's JSON parsers read it, or empty where they find no object."""
    try:
        parsed = json.loads(body.decode("utf-8")) if body else {}
    except ValueError:  # not JSON (botocore takes it as the message) or not UTF-8
        return {}
    return parsed if isinstance(parsed, dict) else {}


def _http_status(exc: ClientError) -> int:
    return int(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0))


@dataclass(frozen=True)
class RetryPolicy:
    """How often and how long to wait before posting a frame again after a transient error."""

    max_retries: int = DEFAULT_MAX_RETRIES
    base_backoff_seconds: float = DEFAULT_BASE_BACKOFF_SECONDS

    def __post_init__(self) -> None:
        if self.max_retries < 0:
            raise ValueError(f"max_retries={self.max_retries} must be >= 0")
        if self.base_backoff_seconds < 0:
            raise ValueError(f"base_backoff_seconds={self.base_backoff_seconds} must be >= 0")

    def backoff(self, attempt: int) -> float:
        """Exponential backoff with equal jitter: half fixed, half random."""
        ceiling = self.base_backoff_seconds * 2.0**attempt
        # Jitter only spreads retries out; it needs no cryptographic randomness.
        return ceiling / 2 + random.uniform(0, ceiling / 2)  # noqa: S311


class Poster:
    """Posts one frame through a transport, retrying transient failures within the policy."""

    def __init__(
        self,
        transport: Transport,
        policy: RetryPolicy,
        sleep: Callable[[float], None],
        closed: threading.Event,
    ) -> None:
        self.transport = transport
        self.policy = policy
        self._sleep = sleep
        self._closed = closed

    def post(self, connection_id: str, data: bytes) -> SendStatus:
        """One frame to one connection; no metrics (the caller tallies)."""
        attempt = 0
        while True:
            answer = self.transport.post(connection_id, data)
            if answer.status is not SendStatus.FAILED:
                return answer.status
            retry = answer.transient and attempt < self.policy.max_retries
            if retry and not self._closed.is_set():
                self._sleep(self.policy.backoff(attempt))
                attempt += 1
                continue
            logger.warning(
                "post_to_connection failed",
                extra={
                    "connectionId": connection_id,
                    "errorCode": answer.code,
                    "httpStatus": answer.http_status,
                    "attempts": attempt + 1,
                },
            )
            return SendStatus.FAILED
