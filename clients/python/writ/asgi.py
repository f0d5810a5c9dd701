"""An ASGI middleware (Starlette, FastAPI, any ASGI app) that lets a request
through only with a valid writ token, as the Rust SDK's ``RequireToken``
layer does: the verified token lands in ``scope["state"]["writ"]``
(``request.state.writ`` in Starlette); a request without a token gets the
challenge alone (RFC 6750 section 3.1), a bad token 401 ``invalid_token``,
a bad DPoP proof 401 ``invalid_dpop_proof``, a missing scope 403
``insufficient_scope`` naming the scopes needed, a stale revocation feed
503; with :meth:`RequireToken.publish_metadata`-style ``scopes_supported``
it answers RFC 9728 ``/.well-known/oauth-protected-resource`` itself and
every challenge names it in ``resource_metadata``.

    app.add_middleware(RequireToken, verifier=verifier,
                       origin="https://mcp.example.com",
                       scopes_supported=["tools.read", "tools.write"])
"""

from __future__ import annotations

import asyncio
import json
import logging
from typing import Any, Awaitable, Callable, MutableMapping, Sequence

from .errors import ConfigError, FeedStale, InvalidDpopProof, MissingScope, VerifyError
from .verifier import Presented, Verified, Verifier, pem_to_der

log = logging.getLogger("writ.asgi")

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

#: Where RFC 9728 section 3 puts a protected resource's metadata.
METADATA_PATH = "/.well-known/oauth-protected-resource"
#: The DPoP algorithms a challenge offers.
DPOP_ALGS = "ES256 ES384 EdDSA RS256 PS256"


def _header_safe(value: str) -> bool:
    return all(c.isascii() and 0x20 <= ord(c) < 0x7F and c not in '"\\' for c in value)


def _scope_token(scope: str) -> bool:
    return bool(scope) and all(c == "!" or 0x23 <= ord(c) <= 0x5B or 0x5D <= ord(c) <= 0x7E for c in scope)


def _quoted(value: str) -> str:
    out = "".join(("\\" + c) if c in '"\\' else c for c in value if c.isprintable())
    return f'"{out}"'


def path_inserted(resource: str) -> str | None:
    """RFC 9728 section 3.1: the well-known path with the resource's path
    after it, for a resource with a path."""
    _, sep, rest = resource.partition("://")
    if not sep:
        return None
    at = min((i for i in (rest.find("/"), rest.find("?")) if i >= 0), default=-1)
    if at < 0:
        return None
    path = rest[at:].split("?", 1)[0].rstrip("/")
    return f"{METADATA_PATH}{path}" if path else None


def verified(scope_or_request: Any) -> Verified:
    """The token the middleware verified, from an ASGI scope or a Starlette request."""
    scope = getattr(scope_or_request, "scope", scope_or_request)
    value = scope.get("state", {}).get("writ")
    if not isinstance(value, Verified):
        raise VerifyError("missing", "no access token was verified for this request")
    return value


def transaction(scope_or_request: Any) -> dict[str, Any] | None:
    """The transaction token's claims the middleware verified from the
    ``Txn-Token`` header (with ``txn_trust_domain`` set), or ``None`` when
    the request carried none."""
    scope = getattr(scope_or_request, "scope", scope_or_request)
    value = scope.get("state", {}).get("writ_txn")
    return value if isinstance(value, dict) else None


class RequireToken:
    """Guards an ASGI app with ``verifier``. ``origin`` is the scheme and
    authority clients address (e.g. ``https://mcp.example.com``): DPoP
    proofs must name it in ``htu`` (the ``Host`` header is the client's to
    choose). ``scopes_supported`` publishes RFC 9728 metadata;
    ``require_dpop`` accepts only DPoP-bound tokens; ``txn_trust_domain``
    verifies a ``Txn-Token`` header when a request carries one (401 when it
    is not valid) and hands its claims to :func:`transaction`."""

    def __init__(
        self,
        app: ASGIApp,
        verifier: Verifier,
        origin: str,
        scopes_supported: Sequence[str] | None = None,
        require_dpop: bool = False,
        txn_trust_domain: str | None = None,
    ) -> None:
        origin = origin.rstrip("/")
        authority = origin.removeprefix("https://") if origin.startswith("https://") else origin.removeprefix("http://")
        if authority == origin or not authority or any(c in authority for c in "/?#@ ") or not _header_safe(authority):
            raise ConfigError(f"RequireToken origin {origin!r} must be scheme://host[:port], without a path")
        self.app = app
        self.verifier = verifier
        self.origin = origin
        self.require_dpop = require_dpop
        self.txn_trust_domain = txn_trust_domain
        self._required = " ".join(verifier.required_scopes)
        self._metadata: bytes | None = None
        self._paths: tuple[str, ...] = ()
        if scopes_supported is not None:
            audience = verifier.audience
            if not (audience[:8].lower() == "https://" and len(audience) > 8 and "#" not in audience and " " not in audience) or not _header_safe(audience):
                raise ConfigError(
                    f"the verifier's audience {audience!r} must be an https URI without fragment, quotes or "
                    "control characters to be published as the resource"
                )
            if not _header_safe(verifier.issuer):
                raise ConfigError("the broker's issuer holds characters a header may not carry")
            for s in [*scopes_supported, *verifier.required_scopes]:
                if not _scope_token(s):
                    raise ConfigError(f"scope {s!r} is not an RFC 6749 scope token")
            self._metadata = json.dumps(
                {
                    "resource": audience,
                    "authorization_servers": [verifier.issuer],
                    "scopes_supported": list(scopes_supported),
                    "bearer_methods_supported": ["header"],
                    "dpop_bound_access_tokens_required": require_dpop,
                }
            ).encode()
            inserted = path_inserted(audience)
            self._paths = (METADATA_PATH,) + ((inserted,) if inserted else ())

    @property
    def metadata_url(self) -> str:
        """The URL of the metadata document."""
        return f"{self.origin}{METADATA_PATH}"

    def challenge(self, dpop: bool, params: Sequence[tuple[str, str]]) -> str:
        """A ``WWW-Authenticate`` value: ``DPoP`` (with ``algs``) or
        ``Bearer``, ``params``, and ``resource_metadata`` when published."""
        parts = [f"{name}={_quoted(value)}" for name, value in params]
        if dpop:
            parts.append(f"algs={_quoted(DPOP_ALGS)}")
        if self._metadata is not None:
            parts.append(f"resource_metadata={_quoted(self.metadata_url)}")
        scheme = "DPoP" if dpop else "Bearer"
        return f"{scheme} {', '.join(parts)}" if parts else scheme

    async def _respond(
        self, send: Send, status: int, body: str, headers: Sequence[tuple[str, str]] = (), content_type: str = "text/plain; charset=utf-8"
    ) -> None:
        raw = body.encode()
        all_headers = [(b"content-type", content_type.encode()), (b"content-length", str(len(raw)).encode())]
        all_headers += [(k.lower().encode(), v.encode()) for k, v in headers]
        await send({"type": "http.response.start", "status": status, "headers": all_headers})
        await send({"type": "http.response.body", "body": raw})

    async def _refuse(self, send: Send, e: VerifyError) -> None:
        if e.code == "missing":
            reason = "a DPoP-bound token is required" if self.require_dpop else "a bearer token is required"
            await self._respond(send, 401, reason, [("www-authenticate", self.challenge(self.require_dpop, []))])
        elif isinstance(e, InvalidDpopProof) and e.reason == "busy":
            await self._respond(send, 503, str(e), [("retry-after", str(e.retry_after or 1))])
        elif isinstance(e, InvalidDpopProof):
            why = str(e)
            params = [("error", "invalid_dpop_proof"), ("error_description", why)]
            await self._respond(send, 401, why, [("www-authenticate", self.challenge(True, params))])
        elif isinstance(e, MissingScope):
            params = [("error", "insufficient_scope"), ("scope", self._required)]
            await self._respond(send, 403, str(e), [("www-authenticate", self.challenge(self.require_dpop, params))])
        elif isinstance(e, FeedStale):
            await self._respond(send, 503, str(e))
        else:
            await self._unauthorized(send, str(e))

    async def _unauthorized(self, send: Send, reason: str) -> None:
        params = [("error", "invalid_token"), ("error_description", reason)]
        await self._respond(send, 401, reason, [("www-authenticate", self.challenge(self.require_dpop, params))])

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path = scope.get("path", "")
        if self._metadata is not None and scope.get("method") == "GET" and path in self._paths:
            await self._respond(
                send, 200, self._metadata.decode(), [("cache-control", "public, max-age=300")], "application/json"
            )
            return
        headers: list[tuple[bytes, bytes]] = scope.get("headers", [])
        authorization = next((v.decode("latin-1") for k, v in headers if k == b"authorization"), None)
        proofs = [v.decode("latin-1") for k, v in headers if k == b"dpop"]
        raw_path = scope.get("raw_path")
        url_path = raw_path.decode("latin-1").split("?", 1)[0] if isinstance(raw_path, bytes) else path
        url = f"{self.origin}{url_path}"
        certificate = None
        tls = scope.get("extensions", {}).get("tls") or {}
        chain = tls.get("client_cert_chain") or []
        try:
            if chain:
                certificate = pem_to_der(chain[0])
            presented = Presented.from_headers(authorization, proofs, scope.get("method", "GET"), url)
            presented = Presented(
                token=presented.token, scheme=presented.scheme, dpop_proof=presented.dpop_proof,
                method=presented.method, url=presented.url, client_certificate=certificate,
            )
            if self.verifier.knows_key(presented.token):
                result = self.verifier.verify_presented(presented)
            else:  # a JWKS refetch: off the event loop
                result = await asyncio.to_thread(self.verifier.verify_presented, presented)
        except VerifyError as e:
            log.info("request refused by the writ verifier: %s", e)
            await self._refuse(send, e)
            return
        except ConfigError:
            await self._unauthorized(send, "client certificate cannot be read")
            return
        if self.require_dpop and not (isinstance(result.claims.get("cnf"), dict) and result.claims["cnf"].get("jkt")):
            log.info("request refused: the token is not DPoP-bound")
            await self._unauthorized(send, "a DPoP-bound token is required")
            return
        if self.txn_trust_domain is not None:
            txn_tokens = [v.decode("latin-1") for k, v in headers if k == b"txn-token"]
            if len(txn_tokens) > 1:
                await self._unauthorized(send, "more than one Txn-Token header")
                return
            if txn_tokens:
                try:
                    txn_claims = await asyncio.to_thread(
                        self.verifier.verify_txn, txn_tokens[0], self.txn_trust_domain
                    )
                except VerifyError as e:
                    log.info("request refused: its Txn-Token: %s", e)
                    await self._unauthorized(send, f"Txn-Token: {e}")
                    return
                scope.setdefault("state", {})["writ_txn"] = txn_claims
        scope.setdefault("state", {})["writ"] = result
        await self.app(scope, receive, send)
