"""Fault injection into real boto3 clients, through botocore's own event hooks.

``AwsFault`` answers a client's calls of one operation with an AWS error before the request
leaves the client (``before-send``), exactly as a throttled or failing service would: botocore
parses it, its retry policy retries it, and the code under test gets the same ``ClientError``
(or typed exception) it would get from AWS. ``LostResponse`` lets the call reach the service and
turns the answer into a 500 afterwards (``after-call``): the call took effect but the caller
never learns it, like a timeout on the way back. ``SdkSleeps`` records the SDK's retry delays
instead of sleeping them, so a test of a throttled call takes no wall-clock time.
"""

from __future__ import annotations

import json
import threading
import time
import types
from collections.abc import Callable, Iterable
from types import TracebackType
from typing import Any, Self
from uuid import uuid4

import pytest
from botocore.awsrequest import AWSPreparedRequest, AWSResponse

INJECTED_MESSAGE = "injected by the reliability tests"


class _Body:
    def __init__(self, data: bytes) -> None:
        self._data = data

    def stream(self, **kwargs: Any) -> Iterable[bytes]:
        yield self._data


def _service_id(client: Any) -> str:
    return str(client.meta.service_model.service_id.hyphenize())


class _ClientHook:
    """A handler on one of ``client``'s botocore events while the ``with`` block runs."""

    client: Any
    event: str
    _id: str
    _first = False  # ahead of botocore's own handlers of the event

    def _handle(self, *args: Any, **kwargs: Any) -> Any:
        raise NotImplementedError

    def __enter__(self) -> Self:
        events = self.client.meta.events
        register = events.register_first if self._first else events.register
        register(self.event, self._handle, unique_id=self._id)
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.client.meta.events.unregister(self.event, unique_id=self._id)


class AwsFault(_ClientHook):
    """``client``'s ``operation`` answered with ``code``/``status`` — the first ``times``
    attempts (every attempt when None) among those ``only`` selects (all when None).

    ``calls`` counts the attempts answered with the fault, SDK retries included.
    """

    def __init__(
        self,
        client: Any,
        operation: str,
        code: str,
        status: int,
        *,
        times: int | None = None,
        only: Callable[[AWSPreparedRequest], bool] | None = None,
    ) -> None:
        self.client = client
        self.event = f"before-send.{_service_id(client)}.{operation}"
        self.code = code
        self.status = status
        self.times = times
        self.only = only
        self.calls = 0
        self._id = f"aws-fault-{uuid4().hex}"
        self._lock = threading.Lock()

    _first = True

    def _handle(self, request: AWSPreparedRequest, **kwargs: Any) -> AWSResponse | None:
        if self.only is not None and not self.only(request):
            return None
        with self._lock:
            if self.times is not None and self.calls >= self.times:
                return None
            self.calls += 1
        body = json.dumps({"__type": self.code, "message": INJECTED_MESSAGE}).encode()
        headers = {
            "x-amzn-ErrorType": self.code,
            "x-amzn-query-error": f"{self.code};Sender",
            "Content-Type": "application/x-amz-json-1.0",
            "x-amzn-RequestId": uuid4().hex,
        }
        return AWSResponse(request.url, self.status, headers, _Body(body))


class LostResponse(_ClientHook):
    """``client``'s ``operation`` reaches the service, then its first ``times`` answers become
    a 500 ``InternalError``: done, but reported as failed."""

    def __init__(self, client: Any, operation: str, *, times: int = 1) -> None:
        self.client = client
        self.event = f"after-call.{_service_id(client)}.{operation}"
        self.times = times
        self.calls = 0
        self._id = f"lost-response-{uuid4().hex}"
        self._lock = threading.Lock()

    def _handle(self, http_response: AWSResponse, parsed: dict[str, Any], **kwargs: Any) -> None:
        with self._lock:
            if self.calls >= self.times or http_response.status_code >= 300:
                return
            self.calls += 1
        http_response.status_code = 500
        parsed["Error"] = {"Code": "InternalError", "Message": INJECTED_MESSAGE}
        parsed.setdefault("ResponseMetadata", {})["HTTPStatusCode"] = 500


class SdkSleeps:
    """The delays botocore's retry policy asked for (it sleeps them in ``botocore.endpoint``)."""

    def __init__(self) -> None:
        self.delays: list[float] = []

    def sleep(self, seconds: float) -> None:
        self.delays.append(seconds)

    def install(self, monkeypatch: pytest.MonkeyPatch) -> SdkSleeps:
        import botocore.endpoint

        # Only botocore's endpoint module sees this clock: everything else keeps time.sleep.
        monkeypatch.setattr(
            botocore.endpoint, "time", types.SimpleNamespace(sleep=self.sleep, time=time.time)
        )
        return self
