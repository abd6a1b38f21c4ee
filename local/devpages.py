"""Local mode's own pages, next to the emulated API on the same port.

- ``/``: the chat page (``web/page/``), built on the browser client;
- ``/client/rag-websocket.js`` (and the rest of ``web/dist/``): the browser client as an ES
  module, built by ``make`` (``make web``), never at start-up;
- ``/_local/token?user=NAME`` → ``{"token": "..."}``: a dev token for the page. It exists only in
  local mode, only when the gateway listens on a loopback address, and answers loopback clients
  only: dev tokens are signed by a key on this machine and open every user's connection.

API Gateway has none of these: on AWS the front end is served elsewhere and tokens come from the
identity provider (Cognito or any OIDC).
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from pathlib import Path

from aiohttp import hdrs, web

from runtime.config import is_loopback

WEB_DIR = Path(__file__).resolve().parent.parent / "web"
TOKEN_PATH = "/_local/token"  # noqa: S105 (a URL path, not a secret)
CLIENT_PREFIX = "/client/"
USER_PATTERN = re.compile(r"[A-Za-z0-9._@-]{1,64}")
NOT_BUILT = "the browser client is not built: run `make web` (npm ci and the build of web/)"


def _json(status: int, body: dict[str, str]) -> web.Response:
    return web.Response(
        status=status,
        text=json.dumps(body),
        content_type="application/json",
        headers={hdrs.CACHE_CONTROL: "no-store"},
    )


def _file(root: Path, relative: str) -> web.StreamResponse:
    """A file under ``root``, never outside it; 404 otherwise (saying so when not built)."""
    if not root.is_dir():
        raise web.HTTPNotFound(text=NOT_BUILT)
    try:
        path = (root / relative).resolve()
        found = path.is_relative_to(root.resolve()) and path.is_file()
    except (OSError, ValueError):  # a NUL byte, a name too long: no such file either
        found = False
    if not found:
        raise web.HTTPNotFound(text="no such file")
    # The build changes these files under a running gateway: always revalidate.
    return web.FileResponse(path, headers={hdrs.CACHE_CONTROL: "no-cache"})


def dev_pages(
    issue_token: Callable[[str], str], host: str, stage: str, web_dir: Path = WEB_DIR
) -> list[web.RouteDef]:
    """The routes above, for a gateway on ``host`` serving ``stage``; ``issue_token`` signs."""
    dist = web_dir / "dist"
    page = (web_dir / "page" / "index.html").read_text(encoding="utf-8")
    # The page connects to the same host and port; only the stage's path is not known to it.
    page = page.replace("{{WEBSOCKET_PATH}}", f"/{stage}")

    async def chat_page(request: web.Request) -> web.StreamResponse:
        return web.Response(
            text=page, content_type="text/html", headers={hdrs.CACHE_CONTROL: "no-cache"}
        )

    async def page_asset(request: web.Request) -> web.StreamResponse:
        return _file(web_dir / "page", request.match_info["name"])

    async def client_module(request: web.Request) -> web.StreamResponse:
        return _file(dist, request.match_info["path"])

    async def token(request: web.Request) -> web.StreamResponse:
        if not is_loopback(request.remote):
            raise web.HTTPForbidden(text="dev tokens are for clients on this machine only")
        user = request.query.get("user", "")
        if not USER_PATTERN.fullmatch(user):
            return _json(
                400,
                {
                    "message": f"user {user[:64]!r} must be 1-64 letters, digits or . _ @ -; "
                    f"ask for {TOKEN_PATH}?user=alice"
                },
            )
        return _json(200, {"token": issue_token(user)})

    routes = [
        web.get("/", chat_page),
        web.get("/page/{name}", page_asset),
        web.get(CLIENT_PREFIX + "{path:.+}", client_module),
    ]
    if is_loopback(host):
        routes.append(web.get(TOKEN_PATH, token))
    return routes
