"""Errors: whether retrying can help (getting tokens), and why a presented
token was refused (verifying them). One hierarchy under :class:`WritError`."""

from __future__ import annotations


class WritError(Exception):
    """Every error this package raises."""

    #: Whether trying again later can succeed.
    retryable: bool = False


class Denied(WritError):
    """The broker refused: policy, kill switch, bad attestation or a bad
    request. Retrying the same request will not help."""

    def __init__(self, status: int, error: str, description: str, decision_id: str) -> None:
        super().__init__(f"refused by the broker: {status} {error}: {description} (decision {decision_id})")
        #: HTTP status, e.g. 403.
        self.status = status
        #: RFC 6749 error code, e.g. ``access_denied``.
        self.error = error
        #: The broker's explanation (safe text, never a secret).
        self.description = description
        #: Finds the broker's audit record.
        self.decision_id = decision_id


class Unavailable(WritError):
    """The broker could not be reached, was overloaded (503, 429) or timed
    out; retrying may help."""

    retryable = True

    def __init__(self, message: str, retry_after: float | None = None) -> None:
        super().__init__(f"broker unavailable: {message}")
        #: Seconds the broker asked to wait (``Retry-After``), if it said.
        self.retry_after = retry_after


class AttestationError(WritError):
    """The attestation (a token file, a callable) could not be read;
    retrying may help once it is there."""

    retryable = True


class ProtocolError(WritError):
    """The broker answered something that is not writ's protocol."""


class ConfigError(WritError):
    """Misconfiguration (a bad URL, CA file or argument)."""


class VerifyError(WritError):
    """A presented token was not accepted. ``code`` says why, in the same
    words as the Rust SDK's ``VerifyError`` (snake case)."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        #: ``malformed``, ``algorithm``, ``unknown_key``, ``signature``,
        #: ``issuer``, ``audience``, ``expired``, ``not_yet_valid``,
        #: ``missing_scope``, ``missing``, ``key_binding``, ``dpop_proof``,
        #: ``revoked``, ``feed_stale``.
        self.code = code


class MissingScope(VerifyError):
    """The token lacks a scope this server requires (403
    ``insufficient_scope``)."""

    def __init__(self, scope: str) -> None:
        super().__init__("missing_scope", f"token lacks scope {scope}")
        #: The first missing scope.
        self.scope = scope


class InvalidDpopProof(VerifyError):
    """The DPoP proof itself was refused (401 ``invalid_dpop_proof``);
    ``reason`` is the proof verdict (``method``, ``replay``...)."""

    def __init__(self, reason: str, message: str, retry_after: int | None = None) -> None:
        super().__init__("dpop_proof", message)
        #: The DPoP verdict, as in the shared test vectors.
        self.reason = reason
        #: Set when the replay cache is full (503).
        self.retry_after = retry_after


class Revoked(VerifyError):
    """The kill switch revoked the token."""

    def __init__(self, entry: str) -> None:
        super().__init__("revoked", f"token was revoked (entry {entry})")
        #: The id of the revoking entry.
        self.entry = entry


class FeedStale(VerifyError):
    """The revocation feed has been silent longer than allowed: every token
    is refused until it is heard again (fail closed, 503)."""

    def __init__(self) -> None:
        super().__init__("feed_stale", "revocation feed is stale; refusing until it is heard again")
