"""writ for Python: get tokens from the writ broker, and verify them at a
resource server.

- :class:`TokenSource` / :class:`AsyncTokenSource`: attest, exchange, cache
  and refresh tokens for one target; DPoP binding; delegation (``act_for``).
- :class:`Verifier`: verify writ tokens (keys from the broker's metadata,
  key binding, the kill switch from the revocation feed, fail closed).
- :class:`writ.asgi.RequireToken`: the ASGI middleware (Starlette, FastAPI).
- :class:`DpopKey`: the key DPoP proofs are signed with.

The rules are writ-proto's, checked against the same test vectors as the
Rust crates (``proto/tests/vectors``).
"""

from .dpop import DpopKey
from .errors import (
    AttestationError,
    ConfigError,
    Denied,
    FeedStale,
    InvalidDpopProof,
    MissingScope,
    ProtocolError,
    Revoked,
    Unavailable,
    VerifyError,
    WritError,
)
from .source import ACCESS_TOKEN, ID_TOKEN, JWT, AsyncTokenSource, Token, TokenSource, WritAuth
from .verifier import Presented, Verified, Verifier

__all__ = [
    "ACCESS_TOKEN",
    "AsyncTokenSource",
    "AttestationError",
    "ConfigError",
    "Denied",
    "DpopKey",
    "FeedStale",
    "ID_TOKEN",
    "InvalidDpopProof",
    "JWT",
    "MissingScope",
    "Presented",
    "ProtocolError",
    "Revoked",
    "Token",
    "TokenSource",
    "Unavailable",
    "Verified",
    "Verifier",
    "VerifyError",
    "WritAuth",
    "WritError",
]
