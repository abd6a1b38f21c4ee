"""``$connect``: store the connection row for the user the authorizer identified.

401 without an identity, 429 over the per-user connection limit, 500 when the store fails.
"""

from __future__ import annotations

import time
from typing import Any

from aws_lambda_powertools.utilities.data_classes import APIGatewayWebSocketEvent

from runtime.config import StoreConfig
from runtime.connections import ConnectionStore
from runtime.handlers._common import connected_at_ms, response, user_id_of
from runtime.observability import Metric, bind_request, count, emits_metrics, logger

STORE = ConnectionStore(StoreConfig.from_env())


@emits_metrics
def handler(event: dict[str, Any], context: object) -> dict[str, Any]:
    bind_request(event)
    ws_event = APIGatewayWebSocketEvent(event)
    user_id = user_id_of(event)
    if user_id is None:
        logger.warning("connect refused: no userId or principalId from the authorizer")
        return response(401, "Unauthorized")
    connection_id = ws_event.request_context.connection_id
    try:
        limit = STORE.config.max_connections_per_user
        if limit and STORE.count_for_user(user_id) >= limit:
            logger.warning("connect refused: user at the connection limit", extra={"limit": limit})
            return response(429, "Too many connections")
        STORE.add(connection_id, user_id, connected_at_ms(ws_event, int(time.time() * 1000)))
    except Exception:
        logger.exception("connect failed: could not store the connection")
        return response(500, "Internal error")
    count(Metric.CONNECTIONS_OPENED)
    logger.info("connected")
    return response(200)
