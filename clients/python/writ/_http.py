"""HTTPS to the broker: TLS settings, its RFC 8414 metadata, and reading
its OAuth error answers into typed errors."""

from __future__ import annotations

import ssl
from dataclasses import dataclass
from typing import Any

import httpx

from .errors import ConfigError, Denied, ProtocolError, Unavailable

METADATA_PATH = "/.well-known/oauth-authorization-server"
TIMEOUT = httpx.Timeout(10.0)


def tls_context(ca: str | None, cert: tuple[str, str] | None = None) -> ssl.SSLContext:
    """A TLS context trusting ``ca`` (a PEM file; the system's store when
    ``None``), presenting the client certificate ``cert`` (cert, key) if given."""
    try:
        context = ssl.create_default_context(cafile=ca)
        if cert is not None:
            context.load_cert_chain(cert[0], cert[1])
    except (OSError, ssl.SSLError) as e:
        raise ConfigError(f"TLS configuration: {e}") from None
    return context


def base_url(broker: str) -> str:
    """The broker's base URL, checked: ``https://host[:port]``, no trailing slash."""
    url = broker.rstrip("/")
    if not url.startswith("https://") or len(url) <= len("https://"):
        raise ConfigError(f"broker URL {broker!r} must be https://host[:port]")
    return url


@dataclass(frozen=True)
class Metadata:
    """What the broker's RFC 8414 document says that clients need."""

    issuer: str
    token_endpoint: str
    jwks_uri: str
    revocation_feed_endpoint: str

    @classmethod
    def parse(cls, doc: Any) -> Metadata:
        """Reads the document; missing members are a protocol error."""
        if not isinstance(doc, dict):
            raise ProtocolError("metadata is not a JSON object")
        try:
            issuer = str(doc["issuer"])
            return cls(
                issuer=issuer,
                token_endpoint=str(doc["token_endpoint"]),
                jwks_uri=str(doc["jwks_uri"]),
                revocation_feed_endpoint=str(doc.get("revocation_feed_endpoint") or f"{issuer}/v1/revocations"),
            )
        except KeyError as e:
            raise ProtocolError(f"metadata lacks {e}") from None


def retry_after(response: httpx.Response) -> float | None:
    """``Retry-After`` in seconds, when it is a number."""
    value = response.headers.get("retry-after")
    try:
        return float(value) if value is not None else None
    except ValueError:
        return None


def json_body(response: httpx.Response, what: str) -> Any:
    """The JSON body of a response; a protocol error otherwise."""
    try:
        return response.json()
    except ValueError:
        raise ProtocolError(f"{what}: {response.status_code} with a body that is not JSON") from None


def raise_for_oauth_error(response: httpx.Response, what: str) -> None:
    """Raises the typed error of a non-2xx answer: 429 and 5xx are
    :class:`Unavailable` (retryable), other RFC 6749 errors :class:`Denied`."""
    status = response.status_code
    if status < 300:
        return
    if status == 429 or status >= 500:
        detail = ""
        try:
            body = response.json()
            if isinstance(body, dict):
                detail = f" {body.get('error', '')}: {body.get('error_description', '')}"
        except ValueError:
            pass
        raise Unavailable(f"{what}: {status}{detail}", retry_after=retry_after(response))
    body = json_body(response, what)
    if not isinstance(body, dict) or not isinstance(body.get("error"), str):
        raise ProtocolError(f"{what}: {status} without an OAuth error")
    raise Denied(
        status,
        body["error"],
        str(body.get("error_description", "")),
        str(body.get("decision_id", "")),
    )


def transport_error(what: str, e: httpx.HTTPError) -> Unavailable:
    """A network failure as a retryable error (no URL query or header in it)."""
    return Unavailable(f"{what}: {type(e).__name__}: {e}")
