"""Handler events for one connection, built by ``local.events`` as the local gateway builds them."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from benchmarks.environment import ACCOUNT_ID, REGION
from local import events
from runtime import schema

API_ID = "bench00001"
STAGE = "bench"
DOMAIN_NAME = f"{API_ID}.execute-api.{REGION}.amazonaws.com"
SOURCE_IP = "127.0.0.1"
USER_AGENT = "rag-websocket-benchmark"


@dataclass(frozen=True)
class ConnectionEvents:
    """The events API Gateway would send for one connection of ``user_id``."""

    user_id: str
    facts: events.ConnectionFacts

    @classmethod
    def new(
        cls, user_id: str, token: str | None = None, instance_id: str | None = None
    ) -> ConnectionEvents:
        """``instance_id`` is the client's ``?instanceId=``, as both clients send it."""
        query: tuple[tuple[str, str], ...] = ()
        if token is not None:
            query += ((schema.TOKEN_QUERY_PARAMETER, token),)
        if instance_id is not None:
            query += ((schema.INSTANCE_QUERY_PARAMETER, instance_id),)
        facts = events.ConnectionFacts(
            connection_id=events.new_connection_id(),
            connected_at_ms=events.now_ms(),
            api_id=API_ID,
            stage=STAGE,
            domain_name=DOMAIN_NAME,
            source_ip=SOURCE_IP,
            user_agent=USER_AGENT,
            headers=(("Host", DOMAIN_NAME), ("User-Agent", USER_AGENT)),
            query=query,
        )
        return cls(user_id, facts)

    @property
    def connection_id(self) -> str:
        return self.facts.connection_id

    @property
    def authorizer_context(self) -> dict[str, Any]:
        return {"principalId": self.user_id, schema.ATTR_USER_ID: self.user_id}

    def authorizer(self) -> dict[str, Any]:
        arn = events.method_arn(REGION, ACCOUNT_ID, API_ID, STAGE, schema.ROUTE_CONNECT)
        return events.authorizer_event(self.facts, arn, events.new_request_id(), events.now_ms())

    def connect(self) -> dict[str, Any]:
        return events.connect_event(
            self.facts, self.authorizer_context, events.new_request_id(), events.now_ms()
        )

    def disconnect(self) -> dict[str, Any]:
        return events.disconnect_event(
            self.facts,
            self.authorizer_context,
            1000,
            "Client closed the connection",
            events.new_request_id(),
            events.now_ms(),
        )

    def message(self, body: dict[str, Any]) -> dict[str, Any]:
        route = body.get("action")
        route_key = route if route in schema.MESSAGE_ROUTES else schema.ROUTE_DEFAULT
        return events.message_event(
            self.facts,
            str(route_key),
            json.dumps(body),
            self.authorizer_context,
            events.new_request_id(),
            events.now_ms(),
        )

    def chat_message(
        self, content: str = "What is retrieval-augmented generation?"
    ) -> dict[str, Any]:
        return self.message(
            {
                "action": schema.ROUTE_CHAT_MESSAGE,
                "conversationId": f"conversation-{self.user_id}",
                "content": content,
                "clientMessageId": events.new_event_message_id().strip("="),
            }
        )

    def ping(self) -> dict[str, Any]:
        return self.message({"action": schema.ROUTE_PING})
