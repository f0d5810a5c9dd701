"""Checking a writ transaction token (draft-ietf-oauth-transaction-tokens):
writ-proto's ``txn`` rule. The header's ``typ`` is ``txntoken+jwt``, so a
transaction token never passes for an access token nor the reverse; ``aud``
is the trust domain; the validity window runs from ``iat``. Verdicts are the
same words as :mod:`writ.token`'s."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from . import token as _token

#: The JWS ``typ`` of a transaction token.
TXN_TOKEN_TYP = "txntoken+jwt"
#: Its RFC 8693 token type.
TOKEN_TYPE = "urn:ietf:params:oauth:token-type:txn_token"
#: The HTTP header a workload passes it in.
HEADER = "txn-token"


@dataclass(frozen=True)
class Expected:
    """What a verifier expects of a transaction token besides its signature."""

    issuer: str
    trust_domain: str
    now: int
    leeway: int = 30
    max_lifetime: int | None = None


def header(token: str) -> _token.Header:
    """Reads and checks the protected header (``typ`` ``txntoken+jwt``)."""
    return _token.header_of_type(token, TXN_TOKEN_TYP)


def well_formed(c: dict[str, Any]) -> bool:
    """Whether the claims have the form writ mints: strings ``iss``,
    ``sub``, ``aud``, ``txn``, ``purp``, ``jti``; times ``iat``, ``exp``;
    objects ``rctx`` and ``tctx`` when present; the typed provenance."""
    if not all(isinstance(c.get(k), str) for k in ("iss", "sub", "aud", "txn", "purp", "jti")):
        return False
    if not all(isinstance(c.get(k), int) and not isinstance(c.get(k), bool) and c[k] >= 0 for k in ("iat", "exp")):
        return False
    if "rctx" in c and not isinstance(c["rctx"], dict):
        return False
    if "tctx" in c and not isinstance(c["tctx"], dict):
        return False
    return _token.provenance_well_formed(c)


def verify(token: str, hdr: _token.Header, key: Any, key_alg: str, expected: Expected) -> dict[str, Any]:
    """Verifies the signature, reads the claims and checks them."""
    claims = _token.signed_claims(token, hdr, key, key_alg)
    if claims is None or not well_formed(claims):
        raise _token.TokenCheckError("malformed")
    check_claims(claims, expected)
    return claims


def check_claims(claims: dict[str, Any], expected: Expected) -> None:
    """Issuer, trust domain, validity window from ``iat``, lifetime."""
    if claims["iss"] != expected.issuer:
        raise _token.TokenCheckError("wrong_issuer")
    if claims["aud"] != expected.trust_domain:
        raise _token.TokenCheckError("wrong_audience")
    _token.check_window(
        claims["iat"], claims["iat"], claims["exp"], expected.now, expected.leeway, expected.max_lifetime
    )


def requesting_workloads(claims: dict[str, Any]) -> list[str]:
    """``rctx.req_wl``: the requesting workloads in call order (a string
    when there is one, as the draft allows)."""
    wl = (claims.get("rctx") or {}).get("req_wl")
    if isinstance(wl, str):
        return [wl]
    if isinstance(wl, list):
        return [w for w in wl if isinstance(w, str)]
    return []


def purposes(claims: dict[str, Any]) -> list[str]:
    """The purposes (scopes) the transaction was granted for."""
    return [p for p in str(claims.get("purp", "")).split(" ") if p]
