"""URL routing of the gateway: one port serves the WebSocket API, the management API and JWKS."""

from __future__ import annotations

from collections.abc import Sequence

from aiohttp import web

from local.gateway.responses import GatewayResponses, gateway_errors

JWKS_PATH = "/.well-known/jwks.json"
# The management API's bodies are checked against the 128 KB limit by the handler (413 with
# the typed error); aiohttp's own, untyped 413 only guards far bigger bodies.
CLIENT_MAX_SIZE = 4 * 1024 * 1024


def url_paths(responses: GatewayResponses) -> list[web.RouteDef]:
    return [
        web.get(JWKS_PATH, responses.jwks),
        web.route("*", "/{stage}/@connections/{connection_id:.+}", responses.connections),
        web.get("/{stage}", responses.websocket),
        web.route("*", "/{tail:.*}", responses.unknown),
    ]


def build_app(responses: GatewayResponses, pages: Sequence[web.RouteDef] = ()) -> web.Application:
    app = web.Application(middlewares=[gateway_errors], client_max_size=CLIENT_MAX_SIZE)
    # Pages first: the API's last route answers every other path.
    app.add_routes([*pages, *url_paths(responses)])
    return app
