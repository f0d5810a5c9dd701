"""Checking a writ access token: the rule of writ-proto's ``token`` module
(header, signature, issuer, audience, validity window, lifetime) and its
typed claims. Verdicts are writ-proto's ``TokenError`` in snake case, the
words the shared test vectors use."""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Any

from . import _jose

#: The longest token accepted, in bytes.
MAX_TOKEN_BYTES = 16 * 1024
#: The algorithms writ signs with.
ALGORITHMS = ("ES256", "EdDSA")

_ATTESTATIONS = {"kubernetes", "oidc", "mtls", "unix", "writ", "id-jag"}
_PRINCIPAL_TYPES = {"Workload", "Agent", "User"}


class TokenCheckError(Exception):
    """Why a token was refused; ``verdict`` is one of ``malformed``,
    ``wrong_type``, ``algorithm``, ``unknown_key``, ``bad_signature``,
    ``wrong_issuer``, ``wrong_audience``, ``expired``, ``not_yet_valid``,
    ``lifetime``."""

    def __init__(self, verdict: str) -> None:
        super().__init__(verdict)
        self.verdict = verdict


@dataclass(frozen=True)
class Header:
    """A checked protected header: the key to look up."""

    kid: str
    alg: str


@dataclass(frozen=True)
class Expected:
    """What a verifier expects of a token besides its signature."""

    issuer: str
    audience: str | None
    now: int
    leeway: int = 30
    max_lifetime: int | None = None


def header(token: str) -> Header:
    """Reads and checks the protected header: size, a JSON header naming a
    JWS algorithm, ``typ`` ``at+jwt``, an algorithm writ signs with, a ``kid``."""
    return header_of_type(token, "at+jwt")


def header_of_type(token: str, typ: str) -> Header:
    """The header check of any token writ signs, whose ``typ`` must be
    ``typ`` exactly: a token of one kind is never accepted as another."""
    if len(token) > MAX_TOKEN_BYTES:
        raise TokenCheckError("malformed")
    parts = _jose.split_compact(token)
    if parts is None:
        raise TokenCheckError("malformed")
    checked = _header(parts[0], typ)
    if isinstance(checked, str):
        raise TokenCheckError(checked)
    return checked


@functools.lru_cache(maxsize=1024)
def _header(segment: str, typ: str) -> Header | str:
    """The checked header of one encoded header segment, or the verdict.
    Every token a key signs carries the same header, so this is cached."""
    h = _jose.decode_segment(segment)
    if h is None or h.get("alg") not in _jose.KNOWN_ALGORITHMS:
        return "malformed"
    for member in ("typ", "kid", "cty"):
        if h.get(member) is not None and not isinstance(h[member], str):
            return "malformed"
    if h.get("typ") != typ:
        return "wrong_type"
    if h["alg"] not in ALGORITHMS:
        return "algorithm"
    kid = h.get("kid")
    if kid is None:
        return "unknown_key"
    return Header(kid=kid, alg=h["alg"])


def verify(token: str, hdr: Header, key: Any, key_alg: str, expected: Expected) -> dict[str, Any]:
    """Verifies the signature with ``key`` (for ``key_alg``), reads the
    claims as writ mints them, and checks them against ``expected``."""
    claims = signed_claims(token, hdr, key, key_alg)
    if claims is None or not well_formed(claims):
        raise TokenCheckError("malformed")
    check_claims(claims, expected)
    return claims


def _u64(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool) and 0 <= v < 2**64


def _opt_str(v: Any) -> bool:
    return v is None or isinstance(v, str)


def _actor_chain(v: Any, depth: int = 0) -> bool:
    if not isinstance(v, dict) or depth > 64:
        return False
    if not isinstance(v.get("sub"), str) or not _opt_str(v.get("iss")):
        return False
    return v.get("act") is None or _actor_chain(v["act"], depth + 1)


def well_formed(c: dict[str, Any]) -> bool:
    """Whether the claims have writ's typed form (CONTRACT section 3): an
    unknown attestation kind, principal type or confirmation shape is
    malformed, never a quiet default."""
    if not all(isinstance(c.get(k), str) for k in ("iss", "sub", "aud", "client_id", "scope", "jti")):
        return False
    if not all(_u64(c.get(k)) for k in ("iat", "nbf", "exp")):
        return False
    if not provenance_well_formed(c):
        return False
    cnf = c.get("cnf")
    if cnf is not None:
        if not isinstance(cnf, dict) or not _opt_str(cnf.get("jkt")) or not _opt_str(cnf.get("x5t#S256")):
            return False
    return True


def provenance_well_formed(c: dict[str, Any]) -> bool:
    """Whether the claims every token kind writ signs shares are typed:
    ``attestation``, ``principal_type``, ``attestation_issuer``, ``act``,
    ``ancestry``."""
    if c.get("attestation") is not None and c["attestation"] not in _ATTESTATIONS:
        return False
    if c.get("principal_type") is not None and c["principal_type"] not in _PRINCIPAL_TYPES:
        return False
    if not _opt_str(c.get("attestation_issuer")):
        return False
    if c.get("act") is not None and not _actor_chain(c["act"]):
        return False
    ancestry = c.get("ancestry")
    return "ancestry" not in c or (isinstance(ancestry, list) and all(isinstance(a, str) for a in ancestry))


def check_claims(claims: dict[str, Any], expected: Expected) -> None:
    """Issuer, audience, the validity window with leeway (valid only before
    ``exp``), and lifetime."""
    if claims["iss"] != expected.issuer:
        raise TokenCheckError("wrong_issuer")
    if expected.audience is not None and claims["aud"] != expected.audience:
        raise TokenCheckError("wrong_audience")
    check_window(claims["nbf"], claims["iat"], claims["exp"], expected.now, expected.leeway, expected.max_lifetime)


def check_window(not_before: int, iat: int, exp: int, now: int, leeway: int, max_lifetime: int | None) -> None:
    """The validity window at ``now`` within ``leeway`` and the lifetime,
    for any token writ signs (writ-proto's ``check_window``)."""
    if now >= exp + leeway:
        raise TokenCheckError("expired")
    if not_before > now + leeway:
        raise TokenCheckError("not_yet_valid")
    if max_lifetime is not None and max(exp - iat, 0) > max_lifetime:
        raise TokenCheckError("lifetime")


def signed_claims(token: str, hdr: Header, key: Any, key_alg: str) -> dict[str, Any] | None:
    """The signature check every token kind shares: the claims once it
    verifies (``None`` when they are not a JSON object)."""
    if hdr.alg != key_alg:
        raise TokenCheckError("algorithm")
    parts = _jose.split_compact(token)
    if parts is None:
        raise TokenCheckError("malformed")
    try:
        _jose.verify_signature(token, key, key_alg, parts)
    except _jose.SignatureInvalid as e:
        raise TokenCheckError("bad_signature" if str(e) == "signature" else "malformed") from None
    return _jose.decode_segment(parts[1])


def scopes(claims: dict[str, Any]) -> list[str]:
    """The granted scopes."""
    return [s for s in str(claims.get("scope", "")).split(" ") if s]


def actors(claims: dict[str, Any]) -> list[str]:
    """Every ``sub`` in the ``act`` chain, newest actor first."""
    out: list[str] = []
    level = claims.get("act")
    while isinstance(level, dict):
        out.append(level["sub"])
        level = level.get("act")
    return out


def actor_issuers(claims: dict[str, Any]) -> list[str]:
    """The ``iss`` of every actor that names one, newest first."""
    out: list[str] = []
    level = claims.get("act")
    while isinstance(level, dict):
        if isinstance(level.get("iss"), str):
            out.append(level["iss"])
        level = level.get("act")
    return out
