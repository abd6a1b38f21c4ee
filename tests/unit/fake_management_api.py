"""A scripted API Gateway management API on loopback, for both of MessageSender's posting paths.

It answers ``POST /{stage}/@connections/{connectionId}`` on the wire the way API Gateway does
(the service model, botocore's ``apigatewaymanagementapi/2018-11-29/service-2.json`` and the
SDKs' smithy model ``apigatewaymanagementapi.2018-11-29.json``: ``GoneException`` 410,
``PayloadTooLargeException`` 413, ``LimitExceededException`` 429, ``ForbiddenException`` 403,
each named by the ``x-amzn-ErrorType`` header with a ``{"message"}`` body; ``error_form``
names it in the body instead, or nowhere), so a real boto3 client raises its typed exceptions
and the lean path reads the same answers. Every request's
SigV4 signature is checked with botocore's signer; a bad one gets 403 ``ForbiddenException``.
"""

from __future__ import annotations

import json
import ssl
import threading
import time
from collections import defaultdict, deque
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import unquote

from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

STAGE = "dev"
GONE = 410
RESET = "reset"  # close the socket without an answer (a connection reset)
HANG = "hang"  # answer only after the client's read timeout
# Where an error answer names its code. API Gateway sends the header; the others are the forms
# botocore's rest-json parser also reads (RestJSONParser._inject_error_code and
# BaseJSONParser._do_error_parse), or none at all (the code is then the HTTP status).
HEADER, BODY_TYPE, BODY_CODE, NO_CODE = "header", "body __type", "body code", "no code"
ERROR_FORMS = (HEADER, BODY_TYPE, BODY_CODE, NO_CODE)

_ERROR_TYPES = {
    403: "ForbiddenException",
    410: "GoneException",
    413: "PayloadTooLargeException",
    429: "LimitExceededException",
    500: "InternalServerErrorException",
    502: "BadGatewayException",
    503: "ServiceUnavailableException",
    504: "GatewayTimeoutException",
}


class FakeManagementApi:
    """Records every attempt; ``script[id]`` holds answers to give before the default 200.

    ``credentials`` gives the ones the clients sign with (moto's ``mock_aws`` swaps them).
    """

    def __init__(
        self, credentials: Callable[[], Credentials], region: str, hang_seconds: float = 2.5
    ) -> None:
        self.credentials = credentials
        self.region = region
        self.hang_seconds = hang_seconds
        self.gone: set[str] = set()
        self.script: dict[str, deque[int | str]] = defaultdict(deque)
        self.barrier: threading.Barrier | None = None
        # Close each connection after its answer, unannounced, as an endpoint closes idle ones.
        self.close_after_answer = False
        # How an error names its code (ERROR_FORMS): API Gateway's header, or only the body.
        self.error_form = HEADER
        self.attempts: list[str] = []
        self.delivered: list[tuple[str, bytes]] = []
        self.bad_signatures = 0
        self.in_flight = 0
        self.max_in_flight = 0
        self.endpoint = ""
        self._lock = threading.Lock()

    def fail(self, connection_id: str, *answers: int | str) -> None:
        """The next attempts to ``connection_id`` get these answers, in order."""
        self.script[connection_id].extend(answers)

    def frames_to(self, connection_id: str) -> list[dict[str, Any]]:
        return [json.loads(data) for target, data in self.delivered if target == connection_id]

    def answer(self, connection_id: str, body: bytes, signed: bool) -> int | str:
        with self._lock:
            self.attempts.append(connection_id)
            self.in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self.in_flight)
            scripted = self.script[connection_id]
            planned: int | str = scripted.popleft() if scripted else 200
        try:
            if self.barrier is not None:
                self.barrier.wait()
            if not signed:
                with self._lock:
                    self.bad_signatures += 1
                return 403
            if connection_id in self.gone:
                return GONE
            if planned == 200:
                with self._lock:
                    self.delivered.append((connection_id, body))
            return planned
        finally:
            with self._lock:
                self.in_flight -= 1

    def signature_ok(self, handler: BaseHTTPRequestHandler, body: bytes) -> bool:
        """Re-sign what arrived with botocore: the same signature, or the request was altered."""
        authorization = handler.headers.get("Authorization", "")
        if not authorization.startswith("AWS4-HMAC-SHA256 "):
            return False
        fields = dict(
            part.strip().split("=", 1) for part in authorization.split(" ", 1)[1].split(",")
        )
        signed_names = fields["SignedHeaders"].split(";")
        request = AWSRequest(
            method="POST",
            url=f"http://{handler.headers['Host']}{handler.path}",
            data=body,
            headers={name: handler.headers[name] for name in signed_names},
        )
        request.context["timestamp"] = handler.headers["X-Amz-Date"]
        signer = SigV4Auth(self.credentials().get_frozen_credentials(), "execute-api", self.region)
        canonical = signer.canonical_request(request)
        expected = signer.signature(signer.string_to_sign(request, canonical), request)
        return bool(
            fields["Signature"] == expected and fields["Credential"] == signer.scope(request)
        )


def _handler(api: FakeManagementApi) -> type[BaseHTTPRequestHandler]:
    prefix = f"/{STAGE}/@connections/"

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"  # keep-alive, as API Gateway

        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
            path = unquote(self.path)
            if not path.startswith(prefix):
                self._send(404, "NotFoundException")
                return
            answer = api.answer(path.removeprefix(prefix), body, api.signature_ok(self, body))
            if answer == RESET:
                self.close_connection = True
                return
            if answer == HANG:
                time.sleep(api.hang_seconds)
                answer = 200
            assert isinstance(answer, int)
            self._send(answer, _ERROR_TYPES.get(answer, ""))
            self.close_connection = api.close_after_answer

        def _send(self, status: int, error_type: str) -> None:
            fields: dict[str, str] = {"message": error_type}
            if error_type and api.error_form == BODY_TYPE:
                fields["__type"] = f"com.amazonaws.apigatewaymanagementapi#{error_type}"
            elif error_type and api.error_form == BODY_CODE:
                fields["code"] = error_type
            body = b"" if status == 200 else json.dumps(fields).encode()
            self.send_response(status)
            if error_type and api.error_form == HEADER:
                self.send_header("x-amzn-ErrorType", error_type)
            if error_type:
                self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:
            """Quiet: the tests assert on what was recorded."""

    return Handler


@contextmanager
def serve(api: FakeManagementApi, tls: ssl.SSLContext | None = None) -> Iterator[FakeManagementApi]:
    """Serve ``api`` on 127.0.0.1 and a free port, over HTTPS with ``tls``; ``api.endpoint`` is
    its management endpoint."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(api))
    server.daemon_threads = True
    scheme = "http"
    if tls is not None:
        server.socket = tls.wrap_socket(server.socket, server_side=True)
        scheme = "https"
    thread = threading.Thread(target=server.serve_forever, name="fake-management-api")
    thread.start()
    api.endpoint = f"{scheme}://127.0.0.1:{server.server_address[1]}/{STAGE}"
    try:
        yield api
    finally:
        server.shutdown()
        server.server_close()
        thread.join()
