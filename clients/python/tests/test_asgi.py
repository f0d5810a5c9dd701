"""The ASGI middleware in front of a Starlette tool server, with tokens from
the real broker: RFC 9728 metadata, the 401/403 challenges as the Rust
layer sends them, DPoP (with a server nonce), revocation, a stale feed."""

from __future__ import annotations

import asyncio
from typing import Any, Awaitable, Callable

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

import writ
from writ import _jose
from writ.asgi import RequireToken, verified

from .conftest import PEOPLE, RESOURCE, Broker, FakeClock, Idp, wait_until

ORIGIN = "https://rs.test"
MCP = f"{ORIGIN}/mcp"


async def whoami(request: Request) -> JSONResponse:
    token = verified(request)
    return JSONResponse({"sub": token.subject, "scopes": list(token.scopes)})


def tool_server(verifier: writ.Verifier, **kw: Any) -> Any:
    app = Starlette(routes=[Route("/mcp", whoami, methods=["GET", "POST"])])
    app.add_middleware(RequireToken, verifier=verifier, origin=ORIGIN, scopes_supported=["read", "write"], **kw)
    return app


def call(app: Any, method: str = "POST", path: str = "/mcp", auth: httpx.Auth | None = None,
         headers: dict[str, str] | None = None) -> httpx.Response:
    async def run() -> httpx.Response:
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url=ORIGIN, auth=auth) as client:
            return await client.request(method, path, headers=headers)

    return asyncio.run(run())


def source(broker: Broker, idp: Idp, user: str, **kw: Any) -> writ.AsyncTokenSource:
    kw.setdefault("scopes", "read")
    return writ.AsyncTokenSource(broker.url, resource=RESOURCE, attestation=lambda: idp.token(PEOPLE, user),
                                 ca=broker.ca, **kw)


def sync_token(broker: Broker, idp: Idp, user: str, scopes: str = "read") -> str:
    return writ.TokenSource(broker.url, resource=RESOURCE, scopes=scopes, attestation=lambda: idp.token(PEOPLE, user),
                            ca=broker.ca).token().access_token


@pytest.fixture(scope="module")
def verifier(broker: Broker) -> Any:
    v = writ.Verifier(broker.url, RESOURCE, ca=broker.ca, required_scopes=["read"], follow_revocations=True,
                      feed_credential=broker.admin_token)
    yield v
    v.close()


def test_the_metadata_is_public_and_names_the_broker(verifier: writ.Verifier, broker: Broker) -> None:
    app = tool_server(verifier)
    for path in ("/.well-known/oauth-protected-resource", "/.well-known/oauth-protected-resource/mcp"):
        response = call(app, "GET", path)
        assert response.status_code == 200 and response.headers["content-type"] == "application/json"
        assert response.json() == {
            "resource": RESOURCE,
            "authorization_servers": [broker.url],
            "scopes_supported": ["read", "write"],
            "bearer_methods_supported": ["header"],
            "dpop_bound_access_tokens_required": False,
        }


def test_a_request_without_a_token_gets_the_challenge_without_an_error_code(verifier: writ.Verifier) -> None:
    response = call(tool_server(verifier))
    assert response.status_code == 401
    assert response.headers["www-authenticate"] == (
        f'Bearer resource_metadata="{ORIGIN}/.well-known/oauth-protected-resource"'
    )


def test_a_valid_token_reaches_the_tool(verifier: writ.Verifier, broker: Broker, idp: Idp, user: str) -> None:
    token = sync_token(broker, idp, user)
    response = call(tool_server(verifier), headers={"Authorization": f"Bearer {token}"})
    assert response.status_code == 200 and response.json() == {"sub": user, "scopes": ["read"]}


def test_a_bad_token_gets_invalid_token(verifier: writ.Verifier, broker: Broker, idp: Idp, user: str) -> None:
    token = sync_token(broker, idp, user)
    h, p, s = token.split(".")
    tampered = f"{h}.{p}.{_jose.b64url_encode(b'x' * 64)}"
    response = call(tool_server(verifier), headers={"Authorization": f"Bearer {tampered}"})
    assert response.status_code == 401
    assert response.headers["www-authenticate"] == (
        'Bearer error="invalid_token", error_description="signature is invalid", '
        f'resource_metadata="{ORIGIN}/.well-known/oauth-protected-resource"'
    )
    assert token not in response.text


def test_a_missing_scope_is_403_insufficient_scope_naming_the_scopes(broker: Broker, idp: Idp, user: str) -> None:
    with writ.Verifier(broker.url, RESOURCE, ca=broker.ca, required_scopes=["read", "write"]) as writer:
        token = sync_token(broker, idp, user)
        response = call(tool_server(writer), headers={"Authorization": f"Bearer {token}"})
        assert response.status_code == 403
        assert response.headers["www-authenticate"] == (
            'Bearer error="insufficient_scope", scope="read write", '
            f'resource_metadata="{ORIGIN}/.well-known/oauth-protected-resource"'
        )
        stepped_up = sync_token(broker, idp, user, scopes="read write")
        assert call(tool_server(writer), headers={"Authorization": f"Bearer {stepped_up}"}).status_code == 200


def test_require_dpop_refuses_a_bearer_token_and_accepts_a_bound_one(
    verifier: writ.Verifier, broker: Broker, idp: Idp, user: str
) -> None:
    app = tool_server(verifier, require_dpop=True)
    bearer = sync_token(broker, idp, user)
    refused = call(app, headers={"Authorization": f"Bearer {bearer}"})
    assert refused.status_code == 401
    assert refused.headers["www-authenticate"].startswith(
        'DPoP error="invalid_token", error_description="a DPoP-bound token is required", '
        'algs="ES256 ES384 EdDSA RS256 PS256"'
    )
    assert call(app, "GET", "/.well-known/oauth-protected-resource").json()["dpop_bound_access_tokens_required"]
    bound = source(broker, idp, user, dpop=writ.DpopKey.generate())
    response = call(app, auth=bound.auth())
    assert response.status_code == 200 and response.json()["sub"] == user


def test_a_replayed_dpop_proof_is_invalid_dpop_proof(verifier: writ.Verifier, broker: Broker, idp: Idp,
                                                     user: str) -> None:
    app = tool_server(verifier)
    key = writ.DpopKey.generate()
    token = writ.TokenSource(broker.url, resource=RESOURCE, scopes="read", dpop=key,
                             attestation=lambda: idp.token(PEOPLE, user), ca=broker.ca)
    headers = token.authorization("POST", MCP)
    assert call(app, headers=headers).status_code == 200
    again = call(app, headers=headers)
    assert again.status_code == 401
    assert again.headers["www-authenticate"].startswith(
        'DPoP error="invalid_dpop_proof", error_description="DPoP proof was replayed"'
    )


def nonce_wall(app: Any, nonce: str, seen: list[str | None]) -> Any:
    """A resource server that demands a DPoP nonce (RFC 9449 section 9)
    before the middleware sees the request."""

    async def wall(scope: Any, receive: Callable[[], Awaitable[Any]], send: Callable[[Any], Awaitable[None]]) -> None:
        if scope["type"] == "http":
            proof = next((v.decode() for k, v in scope["headers"] if k == b"dpop"), None)
            got = _jose.decode_segment(proof.split(".")[1]).get("nonce") if proof else None  # type: ignore[union-attr]
            seen.append(got)
            if got != nonce:
                await send({"type": "http.response.start", "status": 401, "headers": [
                    (b"www-authenticate", b'DPoP error="use_dpop_nonce", error_description="a nonce is required"'),
                    (b"dpop-nonce", nonce.encode())]})
                await send({"type": "http.response.body", "body": b""})
                return
        await app(scope, receive, send)

    return wall


def test_a_dpop_nonce_challenge_is_answered_once(verifier: writ.Verifier, broker: Broker, idp: Idp,
                                                 user: str) -> None:
    seen: list[str | None] = []
    app = nonce_wall(tool_server(verifier), "n-0001", seen)
    bound = source(broker, idp, user, dpop=writ.DpopKey.generate())
    auth = bound.auth()
    assert call(app, auth=auth).status_code == 200
    assert seen == [None, "n-0001"]
    assert call(app, auth=auth).status_code == 200 and seen[-1] == "n-0001", "the nonce is remembered"
    plain = source(broker, idp, user)
    assert call(app, auth=plain.auth()).status_code == 401, "a bearer client has no proof to retry with"


def test_a_revoked_token_is_refused_by_the_middleware(verifier: writ.Verifier, broker: Broker, idp: Idp,
                                                      user: str) -> None:
    token = sync_token(broker, idp, user)
    app = tool_server(verifier)
    assert call(app, headers={"Authorization": f"Bearer {token}"}).status_code == 200
    before = verifier.revocations
    entry = broker.revoke("--subject", user)
    wait_until(lambda: verifier.revocations > before, what="the entry on the feed")
    response = call(app, headers={"Authorization": f"Bearer {token}"})
    assert response.status_code == 401 and f"token was revoked (entry {entry})" in response.text
    assert 'error="invalid_token"' in response.headers["www-authenticate"]


def test_a_stale_feed_is_503_for_every_token(own_broker: Broker, idp: Idp, user: str) -> None:
    clock = FakeClock()
    token = sync_token(own_broker, idp, user)
    with writ.Verifier(own_broker.url, RESOURCE, ca=own_broker.ca, follow_revocations=True,
                       feed_credential=own_broker.admin_token, clock=clock) as v:
        app = tool_server(v)
        assert call(app, headers={"Authorization": f"Bearer {token}"}).status_code == 200
        wait_until(lambda: v.feed_connected, what="the stream")
        own_broker.stop()
        wait_until(lambda: not v.feed_connected, what="the stream to break")
        clock.advance(61)
        response = call(app, headers={"Authorization": f"Bearer {token}"})
        assert response.status_code == 503 and "stale" in response.text


def test_metadata_needs_an_https_resource_and_an_origin_without_a_path(broker: Broker) -> None:
    with writ.Verifier(broker.url, "payments-db", ca=broker.ca) as v:
        with pytest.raises(writ.ConfigError):
            RequireToken(whoami, v, ORIGIN, scopes_supported=["read"])  # type: ignore[arg-type]
        with pytest.raises(writ.ConfigError):
            RequireToken(whoami, v, f"{ORIGIN}/mcp")  # type: ignore[arg-type]
