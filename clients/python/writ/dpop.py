"""DPoP (RFC 9449): the key that signs one proof per request (client side)
and the proof check with its replay cache (resource-server side), with
writ-proto's ``dpop`` rules and verdicts."""

from __future__ import annotations

import hashlib
import os
import secrets
import threading
import time
from dataclasses import dataclass
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from . import _jose

#: A proof's ``iat`` may be this far in the past...
MAX_AGE_SECS = 60
#: ...or this far in the future.
MAX_SKEW_SECS = 5
#: Proofs longer than this are refused before parsing.
MAX_PROOF_BYTES = 8 * 1024
#: The algorithms a proof may use.
PROOF_ALGORITHMS = ("ES256", "ES384", "EdDSA", "RS256", "PS256")
_PRIVATE_MEMBERS = ("d", "p", "q", "dp", "dq", "qi", "k")
_GENERATION_SECS = 8


def access_token_hash(access_token: str) -> str:
    """``ath``: the base64url SHA-256 of an access token."""
    return _jose.sha256_b64url(access_token.encode())


class DpopKey:
    """An ES256 key that signs DPoP proofs. Generated in memory; persisted
    only on request, to a file created mode 0600."""

    def __init__(self, private_key: ec.EllipticCurvePrivateKey) -> None:
        if not isinstance(private_key.curve, ec.SECP256R1):
            raise ValueError("a DPoP key must be P-256")
        self._key = private_key
        numbers = private_key.public_key().public_numbers()
        self._jwk = {
            "kty": "EC",
            "crv": "P-256",
            "x": _jose.b64url_encode(numbers.x.to_bytes(32, "big")),
            "y": _jose.b64url_encode(numbers.y.to_bytes(32, "big")),
        }
        self._thumbprint = _jose.thumbprint(self._jwk)

    @classmethod
    def generate(cls) -> DpopKey:
        """A fresh P-256 key."""
        return cls(ec.generate_private_key(ec.SECP256R1()))

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> DpopKey:
        """A key saved by :meth:`save` (PKCS#8 PEM)."""
        with open(path, "rb") as f:
            key = serialization.load_pem_private_key(f.read(), password=None)
        if not isinstance(key, ec.EllipticCurvePrivateKey):
            raise ValueError("not an EC private key")
        return cls(key)

    def save(self, path: str | os.PathLike[str]) -> None:
        """Writes the private key as PKCS#8 PEM to a new file, mode 0600."""
        pem = self._key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as f:
            f.write(pem)

    @property
    def thumbprint(self) -> str:
        """The RFC 7638 thumbprint: the ``cnf.jkt`` of tokens bound to it."""
        return self._thumbprint

    @property
    def public_jwk(self) -> dict[str, str]:
        """The public key as a JWK."""
        return dict(self._jwk)

    def proof(
        self,
        method: str,
        uri: str,
        access_token: str | None = None,
        nonce: str | None = None,
        iat: int | None = None,
    ) -> str:
        """A proof for one request: ``method`` and ``uri`` as the server sees
        them (query and fragment dropped), ``ath`` when presenting
        ``access_token``, and the server's ``nonce`` when it asked for one."""
        claims: dict[str, Any] = {
            "htm": method,
            "htu": uri.split("?", 1)[0].split("#", 1)[0],
            "iat": int(time.time()) if iat is None else iat,
            "jti": _jose.b64url_encode(secrets.token_bytes(16)),
        }
        if access_token is not None:
            claims["ath"] = access_token_hash(access_token)
        if nonce is not None:
            claims["nonce"] = nonce
        return _jose.sign(claims, self._key, "ES256", {"typ": "dpop+jwt", "jwk": self._jwk})

    def __repr__(self) -> str:
        return f"DpopKey(jkt={self._thumbprint!r})"


class DpopError(Exception):
    """Why a proof was refused; ``verdict`` is writ-proto's ``DpopError`` in
    snake case: ``malformed``, ``type``, ``algorithm``, ``key``,
    ``signature``, ``method``, ``uri``, ``time``, ``replay``,
    ``access_token_hash``, ``busy``."""

    _TEXT = {
        "malformed": "DPoP proof is malformed",
        "type": "DPoP proof typ must be dpop+jwt",
        "algorithm": "DPoP proof algorithm is not allowed",
        "key": "DPoP proof jwk must be a public key without private parts",
        "signature": "DPoP proof signature is invalid",
        "method": "DPoP proof htm does not match the request",
        "uri": "DPoP proof htu does not match the request",
        "time": "DPoP proof is too old or from the future",
        "replay": "DPoP proof was replayed",
        "access_token_hash": "DPoP proof ath does not match the access token",
        "busy": "too many DPoP proofs in flight",
    }

    def __init__(self, verdict: str, retry_after: int | None = None) -> None:
        super().__init__(self._TEXT.get(verdict, verdict))
        self.verdict = verdict
        self.retry_after = retry_after


@dataclass(frozen=True)
class CheckedProof:
    """A proof that checked out, not yet remembered against replay."""

    jkt: str
    iat: int
    replay_key: bytes


def check(proof: str, method: str, uri: str, now: int, access_token: str | None = None) -> CheckedProof:
    """Everything about a proof but replay: form, ``typ``, ``alg``, a public
    ``jwk``, the signature, ``htm``, ``htu``, the ``iat`` window, ``ath``."""
    if len(proof) > MAX_PROOF_BYTES:
        raise DpopError("malformed")
    parts = _jose.split_compact(proof)
    header = _jose.decode_segment(parts[0]) if parts else None
    if parts is None or header is None:
        raise DpopError("malformed")
    if header.get("typ") != "dpop+jwt":
        raise DpopError("type")
    alg = header.get("alg")
    if alg not in PROOF_ALGORITHMS:
        raise DpopError("algorithm")
    jwk = header.get("jwk")
    if not isinstance(jwk, dict) or any(m in jwk for m in _PRIVATE_MEMBERS):
        raise DpopError("key")
    try:
        jkt = _jose.thumbprint(jwk)
        key = _jose.public_key(jwk, alg)
    except _jose.KeyFormatError:
        raise DpopError("key") from None
    try:
        _jose.verify_signature(proof, key, alg)
    except _jose.SignatureInvalid as e:
        raise DpopError("signature" if str(e) == "signature" else "malformed") from None
    claims = _jose.decode_segment(parts[1])
    if claims is None:
        raise DpopError("malformed")
    if claims.get("htm") != method:
        raise DpopError("method")
    htu = claims.get("htu")
    if not isinstance(htu, str) or htu.split("?", 1)[0].split("#", 1)[0] != uri:
        raise DpopError("uri")
    iat = claims.get("iat")
    if not isinstance(iat, int) or isinstance(iat, bool) or not 0 <= iat < 2**64:
        raise DpopError("time")
    if iat + MAX_AGE_SECS < now or iat > now + MAX_SKEW_SECS:
        raise DpopError("time")
    if access_token is not None and claims.get("ath") != access_token_hash(access_token):
        raise DpopError("access_token_hash")
    jti = claims.get("jti")
    if not isinstance(jti, str) or not 0 < len(jti) <= 256:
        raise DpopError("malformed")
    replay_key = hashlib.sha256(f"{jkt}:{jti}".encode()).digest()[:16]
    return CheckedProof(jkt=jkt, iat=iat, replay_key=replay_key)


class ReplayCache:
    """Remembers every accepted proof until it is too old to verify, so each
    is accepted once. It never forgets a live proof: when ``capacity`` live
    proofs are held, new ones are refused (``busy``) instead."""

    def __init__(self, capacity: int = 1_000_000) -> None:
        self._capacity = capacity
        self._lock = threading.Lock()
        self._generations: dict[int, set[bytes]] = {}
        self._len = 0

    def __len__(self) -> int:
        return self._len

    def remember(self, proof: CheckedProof, now: int) -> None:
        """Records a checked proof; raises ``replay`` or ``busy``."""
        with self._lock:
            for generation in sorted(self._generations):
                newest_iat = generation * _GENERATION_SECS + _GENERATION_SECS - 1
                if newest_iat + MAX_AGE_SECS >= now:
                    break
                self._len -= len(self._generations.pop(generation))
            generation = proof.iat // _GENERATION_SECS
            if proof.replay_key in self._generations.get(generation, ()):
                raise DpopError("replay")
            if self._len >= self._capacity:
                oldest = min(self._generations, default=generation)
                expires = oldest * _GENERATION_SECS + _GENERATION_SECS + MAX_AGE_SECS
                raise DpopError("busy", retry_after=max(expires - now, 1))
            self._generations.setdefault(generation, set()).add(proof.replay_key)
            self._len += 1


def verify(
    proof: str, method: str, uri: str, now: int, replay: ReplayCache, access_token: str | None = None
) -> str:
    """:func:`check`, then remember the proof; returns its key's thumbprint."""
    checked = check(proof, method, uri, now, access_token)
    replay.remember(checked, now)
    return checked.jkt
