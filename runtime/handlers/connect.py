"""``$connect``: store the connection row for the user the authorizer identified.

401 without an identity, 429 over the per-user connection limit, 500 when the store fails or
the Lambda's time left cannot cover another call.
"""

from __future__ import annotations

import time
from typing import Any

from aws_lambda_powertools.utilities.typing import LambdaContext

from runtime.aws import Deadline
from runtime.config import StoreConfig
from runtime.connections import ConnectionLimitReached, ConnectionStore
from runtime.handlers._common import RequestContext, connected_at_ms, response, user_id_of
from runtime.observability import Metric, count, handles_invocation, logger

STORE = ConnectionStore(StoreConfig.from_env())


@handles_invocation
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    request_context = RequestContext(event)
    user_id = user_id_of(event)
    if user_id is None:
        logger.warning("connect refused: no userId or principalId from the authorizer")
        return response(401, "Unauthorized")
    connection_id = request_context.connection_id
    try:
        STORE.add(
            connection_id,
            user_id,
            connected_at_ms(request_context, int(time.time() * 1000)),
            deadline=Deadline.of(context),
        )
    except ConnectionLimitReached as exc:
        logger.warning("connect refused: user at the connection limit", extra={"limit": exc.limit})
        return response(429, "Too many connections")
    except Exception:
        logger.exception("connect failed: could not store the connection")
        count(Metric.UNEXPECTED_FAILURES)
        return response(500, "Internal error")
    count(Metric.CONNECTIONS_OPENED)
    logger.info("connected")
    return response(200)
