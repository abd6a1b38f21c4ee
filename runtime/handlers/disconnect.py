"""``$disconnect``: delete the connection row. Always 200: API Gateway ignores the answer, and
``$disconnect`` is best-effort anyway (the TTL and the 410 clean-up keep the table true)."""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools.utilities.typing import LambdaContext

from runtime.aws import Deadline
from runtime.config import StoreConfig
from runtime.connections import ConnectionStore
from runtime.handlers._common import RequestContext, response
from runtime.observability import Metric, count, handles_invocation, logger

STORE = ConnectionStore(StoreConfig.from_env())


@handles_invocation
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    request_context = RequestContext(event)
    try:
        STORE.remove(request_context.connection_id, deadline=Deadline.of(context))
    except Exception:
        logger.exception("disconnect: could not delete the connection row; its TTL will")
        count(Metric.UNEXPECTED_FAILURES)
    count(Metric.CONNECTIONS_CLOSED)
    logger.info(
        "disconnected",
        extra={
            "disconnectStatusCode": request_context.disconnect_status_code,
            "disconnectReason": request_context.disconnect_reason,
        },
    )
    return response(200)
