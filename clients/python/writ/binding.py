"""The key-binding rule of writ-proto's ``binding`` module: a token with
``cnf`` is accepted only from the holder of its key, proven by a DPoP proof
(RFC 9449) or the TLS client certificate (RFC 8705)."""

from __future__ import annotations

from typing import Any, Callable

from .dpop import DpopError

#: ``Bearer`` or ``DPoP``, as the ``Authorization`` header named it.
BEARER = "Bearer"
DPOP = "DPoP"


class BindingError(Exception):
    """Why a binding does not hold: ``not_bound``, ``wrong_scheme``,
    ``no_proof``, ``other_key``, ``unsupported``, or ``proof`` (then
    ``dpop`` is the proof's error)."""

    def __init__(self, verdict: str, dpop: DpopError | None = None) -> None:
        super().__init__(verdict if dpop is None else f"proof: {dpop}")
        self.verdict = verdict
        self.dpop = dpop


def split_authorization(value: str) -> tuple[str, str] | None:
    """``(scheme, token)`` of an ``Authorization`` value with the Bearer or
    DPoP scheme (case-insensitive), else ``None``."""
    scheme, sep, token = value.partition(" ")
    if not sep:
        return None
    if scheme.lower() == "bearer":
        return BEARER, token.strip()
    if scheme.lower() == "dpop":
        return DPOP, token.strip()
    return None


def check(
    cnf: Any,
    scheme: str | None,
    certificate: str | None,
    prove: Callable[[], str | None],
) -> None:
    """Checks ``cnf`` against what the request proves. ``certificate`` is
    the client certificate's ``x5t#S256``; ``prove`` verifies the request's
    DPoP proof and returns its key's thumbprint (``None``: no proof), called
    only for a DPoP-bound token. An unknown binding fails closed."""
    if cnf is None:
        if scheme == DPOP:
            raise BindingError("not_bound")
        return
    if not isinstance(cnf, dict):
        raise BindingError("unsupported")
    known = {"jkt", "x5t#S256"}
    if any(k not in known for k in cnf) or (cnf.get("jkt") is None and cnf.get("x5t#S256") is None):
        raise BindingError("unsupported")
    bound_cert = cnf.get("x5t#S256")
    if bound_cert is not None:
        if certificate is None:
            raise BindingError("no_proof")
        if certificate != bound_cert:
            raise BindingError("other_key")
    bound_key = cnf.get("jkt")
    if bound_key is not None:
        if scheme == BEARER:
            raise BindingError("wrong_scheme")
        try:
            proven = prove()
        except DpopError as e:
            raise BindingError("proof", e) from None
        if proven is None:
            raise BindingError("no_proof")
        if proven != bound_key:
            raise BindingError("other_key")
