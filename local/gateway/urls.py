"""URL routing of the gateway: one port serves the WebSocket API, the management API and JWKS."""

from __future__ import annotations

import logging
from collections.abc import Sequence

from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError

from local.gateway.responses import GatewayResponses, typed_errors

JWKS_PATH = "/.well-known/jwks.json"
# The management API's bodies are checked against the 128 KB limit by the handler (413 with
# the typed error); aiohttp's own, untyped 413 only guards far bigger bodies.
CLIENT_MAX_SIZE = 4 * 1024 * 1024
# aiohttp refuses a request line over 8,190 bytes itself, with an HTTP/1.0 400 that WebSocket
# clients cannot parse: past API Gateway's 4,096-character URL quota, the gateway answers 414.
MAX_REQUEST_LINE_BYTES = 64 * 1024


class UnparsableRequestFilter(logging.Filter):
    """aiohttp's ERROR for a request it cannot parse quotes the start of it, where a token
    sits in the query: keep the line, drop the quote."""

    def filter(self, record: logging.LogRecord) -> bool:
        error = record.exc_info[1] if record.exc_info else None
        if isinstance(error, HttpProcessingError):
            record.msg = f"{record.msg} ({type(error).__name__}; request not quoted)"
            record.exc_info = None
            record.exc_text = None
        return True


def quiet_unparsable_requests() -> None:
    """Install ``UnparsableRequestFilter`` on aiohttp's server logger (once)."""
    logger = logging.getLogger("aiohttp.server")
    if not any(isinstance(f, UnparsableRequestFilter) for f in logger.filters):
        logger.addFilter(UnparsableRequestFilter())


def url_paths(responses: GatewayResponses) -> list[web.RouteDef]:
    return [
        web.get(JWKS_PATH, typed_errors(responses.jwks)),
        web.route(
            "*", "/{stage}/@connections/{connection_id:.+}", typed_errors(responses.connections)
        ),
        web.get("/{stage}", typed_errors(responses.websocket)),
        web.route("*", "/{tail:.*}", typed_errors(responses.unknown)),
    ]


def build_app(responses: GatewayResponses, pages: Sequence[web.RouteDef] = ()) -> web.Application:
    app = web.Application(client_max_size=CLIENT_MAX_SIZE)
    # Pages first: the API's last route answers every other path.
    app.add_routes([*pages, *url_paths(responses)])
    return app
