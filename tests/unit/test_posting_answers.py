"""Both posting paths read the management API's answers alike, in whatever form they come, and
the lean path signs with the credentials botocore has refreshed.

API Gateway names an error with the ``x-amzn-ErrorType`` header (the management API is a
rest-json service: botocore's ``apigatewaymanagementapi/2018-11-29/service-2.json``). botocore's
rest-json parser reads a code from the body too, ``code``/``Code`` before ``__type``, and falls
back to the HTTP status (``botocore/parsers.py``: ``RestJSONParser._inject_error_code``,
``BaseJSONParser._do_error_parse``, ``ResponseParser._do_generic_error_parse``). The boto3 path
gets its code from that parser, so the lean path must read every form the same way: the first
test holds ``runtime.posting._wire_error_code`` to the parser itself (on every answer the parser
reads: it raises on a JSON body that is not an object, where the lean path reads no body), the
second holds the two paths' answers to each other over the wire (the loopback fake,
``error_form``).

Credentials: a Lambda function's role credentials expire and botocore refreshes them
(``RefreshableCredentials``: a mandatory refresh when fewer than 10 minutes are left); the lean
path freezes them per request so every post signs with the current keys.
"""

from __future__ import annotations

import datetime
from typing import Any

import boto3
import botocore.parsers
import botocore.session
import pytest
from botocore.credentials import Credentials, RefreshableCredentials

from runtime import aws
from runtime.http1 import Response
from runtime.posting import (
    SENT,
    Answer,
    Boto3Transport,
    SendStatus,
    SignedTransport,
    Timeouts,
    _wire_error_code,
    lean_transport,
)
from tests.unit.conftest import POSTING_REGION
from tests.unit.fake_management_api import ERROR_FORMS, FakeManagementApi, serve

REGION = POSTING_REGION
pytestmark = pytest.mark.usefixtures("posting_env")
FRAME = b'{"type":"system","event":"notice"}'
TYPE = "application/json"

WIRE_ANSWERS: list[tuple[int, dict[str, str], bytes]] = [
    (410, {"x-amzn-errortype": "GoneException"}, b'{"message":"gone"}'),
    (410, {"x-amzn-errortype": "GoneException:http://internal.amazon.com/"}, b"{}"),
    (429, {"x-amzn-errortype": "aws#LimitExceededException"}, b""),
    (410, {}, b'{"__type":"com.amazonaws.apigatewaymanagementapi#GoneException"}'),
    (429, {}, b'{"code":"LimitExceededException","__type":"Other"}'),
    (429, {}, b'{"Code":"ThrottlingException"}'),
    (413, {}, b'{"code":"","__type":"PayloadTooLargeException"}'),
    (403, {}, b'{"message":"Forbidden"}'),
    (410, {}, b""),
    (502, {}, b"not json"),
    (503, {}, b""),
    (500, {}, b'{"__type":"InternalServerErrorException:extra"}'),
    # A generic 5xx (empty or HTML body): the status, whatever the header says.
    (503, {"x-amzn-errortype": "GoneException"}, b""),
    (502, {"x-amzn-errortype": "BadGatewayException"}, b"<html><body>Bad</body></html>"),
    (500, {}, b"  \n"),
    # Null codes fall back as botocore's do; an empty header still wins.
    (429, {}, b'{"code":null,"__type":"LimitExceededException"}'),
    (400, {}, b'{"__type":null}'),
    (403, {"x-amzn-errortype": ""}, b'{"code":"ForbiddenException"}'),
]


def _botocore_code(status: int, headers: dict[str, str], body: bytes) -> str:
    """The code botocore's rest-json parser gives this answer to ``PostToConnection``."""
    model = botocore.session.get_session().get_service_model("apigatewaymanagementapi")
    parser = botocore.parsers.create_parser("rest-json")
    parsed: dict[str, Any] = parser.parse(
        {"status_code": status, "headers": headers, "body": body},
        model.operation_model("PostToConnection").output_shape,
    )
    return str(parsed["Error"]["Code"])


@pytest.mark.parametrize(("status", "headers", "body"), WIRE_ANSWERS)
def test_the_lean_path_reads_an_error_code_as_botocore_parses_it(
    status: int, headers: dict[str, str], body: bytes
) -> None:
    response = Response(status, headers, body, will_close=False)
    assert _wire_error_code(response) == _botocore_code(status, headers, body)


@pytest.mark.parametrize("form", ERROR_FORMS)
@pytest.mark.parametrize("status", [403, 410, 413, 429, 503])
def test_both_paths_map_an_error_alike_however_it_names_its_code(form: str, status: int) -> None:
    api = FakeManagementApi(lambda: boto3.session.Session().get_credentials(), REGION)
    api.error_form = form
    with serve(api):
        api.fail("lean", status)
        api.fail("boto3", status)
        lean = lean_transport(api.endpoint)
        boto = Boto3Transport(aws.management_api(api.endpoint))
        assert isinstance(lean, SignedTransport)
        try:
            lean_answer, boto_answer = lean.post("lean", FRAME), boto.post("boto3", FRAME)
        finally:
            lean.close()
    assert lean_answer == boto_answer
    # And what each answer means, whichever form named it.
    assert lean_answer.http_status == status
    if status == 410:
        assert lean_answer.status is SendStatus.GONE
    else:
        assert lean_answer.status is SendStatus.FAILED
        assert lean_answer.transient is (status in (429, 503))
    assert api.bad_signatures == 0


class RotatingRole:
    """Role credentials as STS hands them out: each refresh returns the current keys with an
    expiry inside botocore's mandatory refresh window, so every read refreshes."""

    def __init__(self) -> None:
        self.keys = Credentials("AKIDFIRST", "first-secret", "first-token")
        self.refreshes = 0

    def metadata(self) -> dict[str, str]:
        self.refreshes += 1
        expiry = datetime.datetime.now(datetime.UTC) + datetime.timedelta(minutes=5)
        return {
            "access_key": self.keys.access_key,
            "secret_key": self.keys.secret_key,
            "token": self.keys.token or "",
            "expiry_time": expiry.isoformat(),
        }


def test_the_lean_path_signs_with_the_credentials_botocore_refreshed() -> None:
    role = RotatingRole()
    credentials = RefreshableCredentials.create_from_metadata(
        role.metadata(), refresh_using=role.metadata, method="sts-assume-role"
    )
    frozen_first = Credentials("AKIDFIRST", "first-secret", "first-token")
    # The endpoint checks each signature against the role's keys of the moment.
    api = FakeManagementApi(lambda: role.keys, REGION)
    with serve(api):
        transport = SignedTransport(api.endpoint, credentials, REGION, Timeouts(1, 2))
        stale = SignedTransport(api.endpoint, frozen_first, REGION, Timeouts(1, 2))
        try:
            assert transport.post("a", FRAME) == SENT
            role.keys = Credentials("AKIDSECOND", "second-secret", "second-token")
            refreshed_before = role.refreshes
            assert transport.post("a", FRAME) == SENT
            assert role.refreshes > refreshed_before
            # Keys that were not refreshed are refused: the check above can fail.
            assert stale.post("a", FRAME) == Answer(
                SendStatus.FAILED, code="ForbiddenException", http_status=403
            )
        finally:
            transport.close()
            stale.close()
    assert api.bad_signatures == 1
    assert len(api.delivered) == 2
