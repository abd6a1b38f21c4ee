"""A general API Gateway WebSocket API emulator: a route table of Lambda handlers on one port.

Layout after moto's: state in ``models``, HTTP surface in ``responses``, routing in ``urls``,
errors in ``exceptions``; ``session`` runs a connection's life, ``invoker`` the handlers.
"""

from __future__ import annotations

from local.gateway.access_log import AccessRecord, StreamAccessLog
from local.gateway.invoker import Handler, HandlerRef, LambdaContext
from local.gateway.models import GatewaySettings, RouteTable
from local.gateway.server import Gateway

__all__ = [
    "AccessRecord",
    "Gateway",
    "GatewaySettings",
    "Handler",
    "HandlerRef",
    "LambdaContext",
    "RouteTable",
    "StreamAccessLog",
]
