"""Local mode's pages: the chat page, the built client module and the loopback-only dev tokens."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from pathlib import Path
from unittest import mock

import jwt
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer, make_mocked_request

from local.devpages import TOKEN_PATH, dev_pages
from local.tokens import LOCAL_AUDIENCE, DevTokens
from runtime.config import is_loopback
from tests.web.support import require_web_build

Scenario = Callable[[TestClient[web.Request, web.Application]], Awaitable[None]]


def serve(routes: list[web.RouteDef], scenario: Scenario) -> None:
    async def main() -> None:
        app = web.Application()
        app.add_routes(routes)
        async with TestClient(TestServer(app, host="127.0.0.1")) as client:
            await scenario(client)

    asyncio.run(main())


@pytest.fixture(scope="module")
def tokens(tmp_path_factory: pytest.TempPathFactory) -> DevTokens:
    return DevTokens.load_or_create(tmp_path_factory.mktemp("state"))


def test_the_token_endpoint_signs_a_dev_token_for_the_user(tokens: DevTokens) -> None:
    async def scenario(client: TestClient[web.Request, web.Application]) -> None:
        response = await client.get(TOKEN_PATH, params={"user": "alice"})
        assert response.status == 200
        assert response.headers["Cache-Control"] == "no-store"
        token = (await response.json())["token"]
        key = jwt.PyJWKSet.from_dict(tokens.jwks()).keys[0]
        claims = jwt.decode(token, key.key, algorithms=["RS256"], audience=LOCAL_AUDIENCE)
        assert claims["sub"] == "alice"

    serve(dev_pages(tokens.issue, "127.0.0.1", "dev"), scenario)


@pytest.mark.parametrize("user", ["", "a b", "x" * 65, "<script>"])
def test_a_bad_user_is_a_400_naming_the_fix(tokens: DevTokens, user: str) -> None:
    async def scenario(client: TestClient[web.Request, web.Application]) -> None:
        response = await client.get(TOKEN_PATH, params={"user": user})
        assert response.status == 400
        assert "?user=alice" in (await response.json())["message"]

    serve(dev_pages(tokens.issue, "127.0.0.1", "dev"), scenario)


def test_no_token_endpoint_unless_the_gateway_listens_on_loopback(tokens: DevTokens) -> None:
    for host in ("0.0.0.0", "192.168.1.20", "::"):  # noqa: S104 - names, nothing binds
        paths = {route.path for route in dev_pages(tokens.issue, host, "dev")}
        assert TOKEN_PATH not in paths
        assert "/" in paths
    for host in ("127.0.0.1", "::1", "localhost"):
        assert is_loopback(host)


def test_the_token_endpoint_refuses_a_client_not_on_this_machine(tokens: DevTokens) -> None:
    (route,) = [r for r in dev_pages(tokens.issue, "127.0.0.1", "dev") if r.path == TOKEN_PATH]
    transport = mock.Mock()
    transport.get_extra_info.return_value = ("10.0.0.7", 51000)
    request = make_mocked_request("GET", f"{TOKEN_PATH}?user=alice", transport=transport)
    with pytest.raises(web.HTTPForbidden):
        asyncio.run(route.handler(request))


def test_the_page_and_the_client_module_are_served(tokens: DevTokens) -> None:
    require_web_build()

    async def scenario(client: TestClient[web.Request, web.Application]) -> None:
        page = await client.get("/")
        assert page.status == 200
        html = await page.text()
        assert '<meta name="rag-websocket-path" content="/stage-x" />' in html
        assert '<label for="question">' in html
        module = await client.get("/client/rag-websocket.js")
        assert module.status == 200
        assert module.content_type in {"application/javascript", "text/javascript"}
        assert "ChatClient" in await module.text()
        assert (await client.get("/client/rag-websocket.d.ts")).status == 200
        assert (await client.get("/page/style.css")).status == 200

    serve(dev_pages(tokens.issue, "127.0.0.1", "stage-x"), scenario)


@pytest.mark.parametrize(
    "path",
    ["/client/../../README.md", "/client/%2e%2e/%2e%2e/README.md", "/client/a%00b", "/page/x"],
)
def test_nothing_outside_the_web_folders_is_served(tokens: DevTokens, path: str) -> None:
    async def scenario(client: TestClient[web.Request, web.Application]) -> None:
        response = await client.get(path)
        assert response.status == 404

    serve(dev_pages(tokens.issue, "127.0.0.1", "dev"), scenario)


def test_an_unbuilt_client_is_a_404_saying_how_to_build_it(
    tokens: DevTokens, tmp_path: Path
) -> None:
    (tmp_path / "page").mkdir()
    (tmp_path / "page" / "index.html").write_text("{{WEBSOCKET_PATH}}")

    async def scenario(client: TestClient[web.Request, web.Application]) -> None:
        response = await client.get("/client/rag-websocket.js")
        assert response.status == 404
        assert "make web" in await response.text()

    serve(dev_pages(tokens.issue, "127.0.0.1", "dev", web_dir=tmp_path), scenario)
