"""JOSE plumbing shared by the token, DPoP and binding checks.

Signatures are made and verified by PyJWT on top of ``cryptography``; this
module only splits compact JWS, decodes base64url JSON segments, computes
RFC 7638 thumbprints and turns JWKs into public keys. No cryptography is
written here.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
from typing import Any

import jwt
from jwt.algorithms import get_default_algorithms

#: Every ``alg`` a JWS header may name and still parse (what the broker's
#: ``jsonwebtoken`` reads); a header naming another (``none``) is malformed.
KNOWN_ALGORITHMS = frozenset(
    {
        "HS256", "HS384", "HS512", "ES256", "ES384", "RS256", "RS384", "RS512",
        "PS256", "PS384", "PS512", "EdDSA",
    }
)

_ALGORITHMS = get_default_algorithms()


def b64url_encode(data: bytes) -> str:
    """Base64url without padding (RFC 7515 section 2)."""
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


_TO_STANDARD = str.maketrans("-_", "+/")


def b64url_decode(segment: str) -> bytes | None:
    """Decodes unpadded base64url; ``None`` for anything else (padding, the
    standard alphabet's ``+`` and ``/``, any other character)."""
    if "+" in segment or "/" in segment or "=" in segment or len(segment) % 4 == 1:
        return None
    try:
        return base64.b64decode(segment.translate(_TO_STANDARD) + "=" * (-len(segment) % 4), validate=True)
    except (binascii.Error, ValueError):
        return None


def split_compact(token: str) -> tuple[str, str, str] | None:
    """The three segments of a compact JWS, or ``None``."""
    parts = token.split(".")
    if len(parts) != 3:
        return None
    return parts[0], parts[1], parts[2]


def decode_segment(segment: str) -> dict[str, Any] | None:
    """A base64url segment holding a JSON object, or ``None``."""
    raw = b64url_decode(segment)
    if raw is None:
        return None
    try:
        value = json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        return None
    return value if isinstance(value, dict) else None


def sha256_b64url(data: bytes) -> str:
    """The base64url SHA-256 of ``data`` (``ath``, ``x5t#S256``)."""
    return b64url_encode(hashlib.sha256(data).digest())


class KeyFormatError(ValueError):
    """A JWK that is not a usable public key."""


def thumbprint(jwk: dict[str, Any]) -> str:
    """The RFC 7638 thumbprint of a public JWK (EC, OKP or RSA)."""
    kty = jwk.get("kty")
    if kty == "EC":
        members = {"crv": jwk.get("crv"), "kty": "EC", "x": jwk.get("x"), "y": jwk.get("y")}
    elif kty == "OKP":
        members = {"crv": jwk.get("crv"), "kty": "OKP", "x": jwk.get("x")}
    elif kty == "RSA":
        members = {"e": jwk.get("e"), "kty": "RSA", "n": jwk.get("n")}
    else:
        raise KeyFormatError("not an asymmetric key")
    if not all(isinstance(v, str) for v in members.values()):
        raise KeyFormatError("key members must be strings")
    canonical = json.dumps(members, separators=(",", ":"), sort_keys=True)
    return sha256_b64url(canonical.encode())


#: The key family each algorithm needs, and its curve where it has one.
_FAMILY: dict[str, tuple[str, str | None]] = {
    "ES256": ("EC", "P-256"),
    "ES384": ("EC", "P-384"),
    "EdDSA": ("OKP", "Ed25519"),
    "RS256": ("RSA", None),
    "PS256": ("RSA", None),
}


def algorithm_of(jwk: dict[str, Any]) -> str | None:
    """The algorithm writ signs tokens with for this JWK (ES256 for P-256,
    EdDSA for Ed25519), or ``None``."""
    if jwk.get("kty") == "EC" and jwk.get("crv") == "P-256":
        return "ES256"
    if jwk.get("kty") == "OKP" and jwk.get("crv") == "Ed25519":
        return "EdDSA"
    return None


def public_key(jwk: dict[str, Any], alg: str) -> Any:
    """The ``cryptography`` public key of ``jwk`` for ``alg``; refuses a
    key of another family or curve than ``alg`` needs."""
    family = _FAMILY.get(alg)
    if family is None:
        raise KeyFormatError(f"algorithm {alg} is not supported")
    kty, crv = family
    if jwk.get("kty") != kty or (crv is not None and jwk.get("crv") != crv):
        raise KeyFormatError(f"key does not fit {alg}")
    try:
        return _ALGORITHMS[alg].from_jwk(jwk)
    except (jwt.InvalidKeyError, ValueError, KeyError, TypeError) as e:
        raise KeyFormatError("key cannot be read") from e


class SignatureInvalid(Exception):
    """The JWS signature does not verify."""


def verify_signature(token: str, key: Any, alg: str, parts: tuple[str, str, str] | None = None) -> None:
    """Verifies the compact JWS ``token``'s signature (``parts``: its
    segments, when already split) with ``key`` for ``alg`` (PyJWT does the
    cryptography); raises :class:`SignatureInvalid`."""
    parts = parts or split_compact(token)
    if parts is None:
        raise SignatureInvalid("malformed")
    signature = b64url_decode(parts[2])
    if signature is None:
        raise SignatureInvalid("malformed")
    signing_input = f"{parts[0]}.{parts[1]}".encode("ascii", "replace")
    if not _ALGORITHMS[alg].verify(signing_input, key, signature):
        raise SignatureInvalid("signature")


def sign(payload: dict[str, Any], key: Any, alg: str, headers: dict[str, Any]) -> str:
    """A compact JWS over ``payload`` (PyJWT signs)."""
    return jwt.encode(payload, key, algorithm=alg, headers=headers)
