"""Helpers of the gateway tests: a recorder of the events handlers receive, authorizer
answers, and polling for what happens after a socket closes."""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping
from typing import Any

from local.gateway.invoker import Handler
from tests.support import wait_until


class Recorder:
    """Builds handlers that record every event they receive (from any thread)."""

    def __init__(self) -> None:
        self.events: list[dict[str, Any]] = []
        self._lock = threading.Lock()

    def handler(self, answer: Callable[[dict[str, Any]], Any] | Any = None) -> Handler:
        def handle(event: dict[str, Any], context: Any) -> Any:
            with self._lock:
                self.events.append(event)
            return answer(event) if callable(answer) else answer

        return handle

    def of(self, kind: str) -> list[dict[str, Any]]:
        """Events of an eventType (CONNECT...), a routeKey, or ``AUTHORIZER`` events."""
        with self._lock:
            events = list(self.events)
        if kind == "AUTHORIZER":
            return [e for e in events if e.get("type") == "REQUEST"]
        return [
            e
            for e in events
            if e.get("type") != "REQUEST"
            and kind in (e["requestContext"].get("eventType"), e["requestContext"].get("routeKey"))
        ]

    def wait_for(self, kind: str, count: int = 1) -> list[dict[str, Any]]:
        wait_until(lambda: len(self.of(kind)) >= count)
        return self.of(kind)


def allow(
    principal: str = "user-1",
    context: Mapping[str, Any] | None = None,
    resource: str | None = None,
    effect: str = "Allow",
) -> Callable[[dict[str, Any]], dict[str, Any]]:
    """An authorizer answer: a policy on ``resource`` (default: the event's methodArn)."""

    def answer(event: dict[str, Any]) -> dict[str, Any]:
        return {
            "principalId": principal,
            "policyDocument": {
                "Version": "2012-10-17",
                "Statement": [
                    {
                        "Action": "execute-api:Invoke",
                        "Effect": effect,
                        "Resource": resource or event["methodArn"],
                    }
                ],
            },
            "context": dict(context or {"userId": principal}),
        }

    return answer
