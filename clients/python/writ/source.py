"""Getting tokens: :class:`TokenSource` (sync) and :class:`AsyncTokenSource`
(asyncio) share one core. They attest, exchange (RFC 8693, or
``client_credentials``), cache, refresh at about 80 % of a token's life with
one exchange in flight, back off with jitter (250 ms doubling to 30 s) while
still returning a valid token, bind tokens to a DPoP key (answering a
server's ``DPoP-Nonce``), and act for someone (``act_for``)."""

from __future__ import annotations

import asyncio
import os
import random
import threading
import time
from dataclasses import dataclass
from typing import Any, Awaitable, Callable, Generator, Sequence, Union

import httpx

from . import _http
from .dpop import DpopKey
from .errors import AttestationError, ConfigError, Denied, ProtocolError, Unavailable, WritError

TOKEN_EXCHANGE = "urn:ietf:params:oauth:grant-type:token-exchange"
#: Token types for ``subject_token_type`` / ``actor_token_type``.
JWT = "urn:ietf:params:oauth:token-type:jwt"
ID_TOKEN = "urn:ietf:params:oauth:token-type:id_token"
ACCESS_TOKEN = "urn:ietf:params:oauth:token-type:access_token"

REFRESH_AT = 0.8
BACKOFF_BASE = 0.25
BACKOFF_MAX = 30.0

#: Where an attestation comes from: a file path (read at every exchange,
#: so a rotated file is picked up) or a callable returning the token.
Attestation = Union[str, "os.PathLike[str]", Callable[[], str]]
#: For :class:`AsyncTokenSource`, a callable may also be async.
AsyncAttestation = Union[str, "os.PathLike[str]", Callable[[], str], Callable[[], Awaitable[str]]]


@dataclass(frozen=True)
class Token:
    """An access token from the broker."""

    access_token: str
    #: ``Bearer`` or ``DPoP``.
    token_type: str
    #: The scopes granted (a subset of those asked for).
    scope: str
    #: Seconds the broker said it lives.
    expires_in: int

    def __repr__(self) -> str:  # the token is a secret
        return f"Token(token_type={self.token_type!r}, scope={self.scope!r}, expires_in={self.expires_in})"


@dataclass
class _Cached:
    token: Token
    refresh_at: float
    expires: float


def read_attestation_file(path: str | os.PathLike[str]) -> str:
    """The token in a file (whitespace stripped)."""
    try:
        with open(path, encoding="utf-8") as f:
            value = f.read().strip()
    except OSError as e:
        raise AttestationError(f"cannot read attestation file {os.fspath(path)}: {e.strerror}") from None
    if not value:
        raise AttestationError(f"attestation file {os.fspath(path)} is empty")
    return value


def _jittered(seconds: float) -> float:
    return seconds * (0.5 + 0.5 * random.random())


class _Core:
    """Configuration, cache and backoff state shared by both sources."""

    def __init__(
        self,
        broker: str,
        *,
        audience: str | None,
        resource: str | None,
        scopes: Sequence[str] | str,
        dpop: DpopKey | None,
        requested_ttl: int | None,
        client_credentials: bool,
        clock: Callable[[], float],
    ) -> None:
        self.base = _http.base_url(broker)
        if audience is None and resource is None:
            raise ConfigError("name the target: audience or resource")
        self.audience = audience
        self.resource = resource
        self.scope = scopes if isinstance(scopes, str) else " ".join(scopes)
        if not self.scope.strip():
            raise ConfigError("ask for at least one scope")
        self.dpop = dpop
        self.requested_ttl = requested_ttl
        self.client_credentials = client_credentials
        self.clock = clock
        self.metadata: _http.Metadata | None = None
        self.cached: _Cached | None = None
        self.failures = 0
        self.next_attempt: float | None = None
        self.last_error: WritError | None = None
        self.exchanges = 0
        self.nonce: str | None = None

    # -- cache and backoff -------------------------------------------------
    def fresh(self) -> Token | None:
        c = self.cached
        return c.token if c is not None and self.clock() < c.refresh_at else None

    def valid(self) -> Token | None:
        c = self.cached
        return c.token if c is not None and self.clock() < c.expires else None

    def backing_off(self) -> Token:
        """Inside the backoff window: the valid token, or the last error."""
        valid = self.valid()
        if valid is not None:
            return valid
        raise self.last_error or Unavailable("backing off")

    def in_backoff(self) -> bool:
        return self.next_attempt is not None and self.clock() < self.next_attempt

    def succeeded(self, cached: _Cached) -> Token:
        self.failures, self.next_attempt, self.last_error = 0, None, None
        self.cached = cached
        return cached.token

    def failed(self, e: WritError) -> Token:
        self.failures += 1
        wait = min(BACKOFF_BASE * 2 ** min(self.failures - 1, 10), BACKOFF_MAX)
        if isinstance(e, Unavailable) and e.retry_after is not None:
            wait = max(wait, min(e.retry_after, BACKOFF_MAX))
        self.next_attempt = self.clock() + _jittered(wait)
        self.last_error = e
        valid = self.valid()
        if valid is not None:
            return valid
        raise e

    # -- the exchange ----------------------------------------------------------
    def form(self, subject: str | None, actor: str | None, subject_type: str) -> dict[str, str]:
        form: dict[str, str] = {}
        if subject is None:
            form["grant_type"] = "client_credentials"
        else:
            form.update(grant_type=TOKEN_EXCHANGE, subject_token=subject, subject_token_type=subject_type)
        if actor is not None:
            form.update(actor_token=actor, actor_token_type=JWT)
        if self.audience is not None:
            form["audience"] = self.audience
        if self.resource is not None:
            form["resource"] = self.resource
        form["scope"] = self.scope
        if self.requested_ttl is not None:
            form["requested_ttl"] = str(max(int(self.requested_ttl), 1))
        return form

    def headers(self, token_endpoint: str) -> dict[str, str]:
        if self.dpop is None:
            return {}
        return {"DPoP": self.dpop.proof("POST", token_endpoint, nonce=self.nonce)}

    def wants_nonce(self, response: httpx.Response) -> bool:
        """RFC 9449 section 8: a ``use_dpop_nonce`` answer carrying a nonce."""
        nonce = response.headers.get("dpop-nonce")
        if nonce:
            self.nonce = nonce
        if self.dpop is None or not nonce or response.status_code not in (400, 401):
            return False
        try:
            body = response.json()
        except ValueError:
            body = None
        return (isinstance(body, dict) and body.get("error") == "use_dpop_nonce") or (
            "use_dpop_nonce" in response.headers.get("www-authenticate", "")
        )

    def parse(self, response: httpx.Response, started: float) -> _Cached:
        _http.raise_for_oauth_error(response, "token endpoint")
        body = _http.json_body(response, "token endpoint")
        try:
            access_token = str(body["access_token"])
            token_type = str(body["token_type"])
            expires_in = int(body["expires_in"])
            scope = str(body.get("scope", ""))
        except (KeyError, TypeError, ValueError):
            raise ProtocolError("token response lacks access_token, token_type or expires_in") from None
        if self.dpop is not None and token_type.lower() != "dpop":
            raise ProtocolError(f"asked for a DPoP-bound token, got token_type {token_type!r}")
        life = float(min(max(expires_in, 0), 86_400))
        return _Cached(
            token=Token(access_token, token_type, scope, expires_in),
            refresh_at=started + life * REFRESH_AT,
            expires=started + life,
        )

    def authorization(self, token: Token, method: str, url: str, nonce: str | None) -> dict[str, str]:
        if self.dpop is None:
            return {"Authorization": f"Bearer {token.access_token}"}
        return {
            "Authorization": f"DPoP {token.access_token}",
            "DPoP": self.dpop.proof(method, url, token.access_token, nonce=nonce),
        }


class TokenSource:
    """A token for one target with some scopes, kept fresh; thread-safe.

    ``attestation`` is a file path (read at each exchange) or a callable
    returning the attestation token; ``client_credentials=True`` instead
    lets the broker attest the TLS client certificate ``cert``. Name the
    target with ``audience`` or ``resource`` (RFC 8707). ``dpop`` binds the
    tokens to a key (:meth:`DpopKey.generate`)."""

    def __init__(
        self,
        broker: str,
        *,
        audience: str | None = None,
        resource: str | None = None,
        scopes: Sequence[str] | str,
        attestation: Attestation | None = None,
        attestation_type: str = JWT,
        client_credentials: bool = False,
        dpop: DpopKey | None = None,
        requested_ttl: int | None = None,
        ca: str | None = None,
        cert: tuple[str, str] | None = None,
        http_client: httpx.Client | None = None,
        clock: Callable[[], float] = time.monotonic,
        _subject: Callable[[], str] | None = None,
        _subject_type: str = JWT,
    ) -> None:
        if attestation is None and not client_credentials:
            raise ConfigError("give an attestation (file or callable) or use client_credentials")
        self._core = _Core(
            broker, audience=audience, resource=resource, scopes=scopes, dpop=dpop,
            requested_ttl=requested_ttl, client_credentials=client_credentials, clock=clock,
        )
        self._attestation = attestation
        self._attestation_type = attestation_type
        self._subject = _subject
        self._subject_type = _subject_type
        self._owns_client = http_client is None
        self._ca, self._cert = ca, cert
        self._client = http_client or httpx.Client(verify=_http.tls_context(ca, cert), timeout=_http.TIMEOUT)
        self._state = threading.Lock()
        self._refresh = threading.Lock()

    def __repr__(self) -> str:
        return f"TokenSource(audience={self._core.audience!r}, resource={self._core.resource!r}, scope={self._core.scope!r})"

    @property
    def exchanges(self) -> int:
        """How many exchanges were sent (tests and metrics)."""
        return self._core.exchanges

    @property
    def dpop(self) -> DpopKey | None:
        """The DPoP key tokens are bound to, if any."""
        return self._core.dpop

    def _attest(self) -> str:
        a = self._attestation
        if a is None:
            raise ConfigError("no attestation configured")
        if callable(a):
            try:
                value = a()
            except WritError:
                raise
            except Exception as e:
                raise AttestationError(f"attestation callable failed: {type(e).__name__}") from e
            if not isinstance(value, str) or not value:
                raise AttestationError("attestation callable returned no token")
            return value
        return read_attestation_file(a)

    def _metadata(self) -> _http.Metadata:
        if self._core.metadata is None:
            try:
                response = self._client.get(self._core.base + _http.METADATA_PATH)
            except httpx.HTTPError as e:
                raise _http.transport_error("metadata", e) from None
            _http.raise_for_oauth_error(response, "metadata")
            self._core.metadata = _http.Metadata.parse(_http.json_body(response, "metadata"))
        return self._core.metadata

    def _exchange(self) -> _Cached:
        core = self._core
        endpoint = self._metadata().token_endpoint
        if self._subject is not None:
            form = core.form(self._subject(), self._attest(), self._subject_type)
        elif core.client_credentials:
            form = core.form(None, None, JWT)
        else:
            form = core.form(self._attest(), None, self._attestation_type)
        for attempt in range(2):
            core.exchanges += 1
            started = core.clock()
            try:
                response = self._client.post(endpoint, data=form, headers=core.headers(endpoint))
            except httpx.HTTPError as e:
                raise _http.transport_error("token endpoint", e) from None
            if attempt == 0 and core.wants_nonce(response):
                continue
            return core.parse(response, started)
        raise ProtocolError("the broker asked for a DPoP nonce twice")

    def token(self) -> Token:
        """The current token, exchanging when it is due. However many
        threads call at once, one exchange is in flight; the others get the
        still-valid token or wait for the new one. Raises :class:`Denied`
        (retrying will not help) or :class:`Unavailable` /
        :class:`AttestationError` (it may)."""
        core = self._core
        fresh = core.fresh()
        if fresh is not None:
            return fresh
        if not self._refresh.acquire(blocking=False):
            valid = core.valid()
            if valid is not None:
                return valid
            self._refresh.acquire()
        try:
            fresh = core.fresh()
            if fresh is not None:
                return fresh
            if core.in_backoff():
                return core.backing_off()
            try:
                cached = self._exchange()
            except WritError as e:
                return core.failed(e)
            with self._state:
                return core.succeeded(cached)
        finally:
            self._refresh.release()

    def authorization(self, method: str, url: str, nonce: str | None = None) -> dict[str, str]:
        """The headers presenting the token on one request: ``Authorization``
        and, for a DPoP-bound token, a fresh ``DPoP`` proof for exactly this
        method and URL (with ``ath``, and ``nonce`` if the server gave one)."""
        return self._core.authorization(self.token(), method, url, nonce)

    def auth(self) -> httpx.Auth:
        """An ``httpx.Auth`` presenting the token on every request, that
        answers a resource server's ``DPoP-Nonce`` challenge once."""
        return WritAuth(self)

    def invalidate(self) -> None:
        """Drops the cached token: the next call exchanges again."""
        with self._state:
            self._core.cached = None

    def act_for(
        self,
        subject_token: str | Callable[[], str],
        *,
        subject_token_type: str = JWT,
        audience: str | None = None,
        resource: str | None = None,
        scopes: Sequence[str] | str | None = None,
        dpop: DpopKey | None = None,
        requested_ttl: int | None = None,
    ) -> TokenSource:
        """A source of tokens acting for someone (RFC 8693 delegation):
        ``subject_token`` (the token itself, or a callable) is the party
        acted for, this source's attestation goes as ``actor_token``.
        Target, scopes and DPoP key default to this source's."""
        core = self._core
        subject = subject_token if callable(subject_token) else (lambda: subject_token)  # noqa: E731
        return TokenSource(
            core.base,
            audience=audience if audience is not None or resource is not None else core.audience,
            resource=resource if audience is not None or resource is not None else core.resource,
            scopes=scopes if scopes is not None else core.scope,
            attestation=self._attestation,
            dpop=dpop if dpop is not None else core.dpop,
            requested_ttl=requested_ttl,
            http_client=self._client,
            clock=core.clock,
            _subject=subject,
            _subject_type=subject_token_type,
        )

    def close(self) -> None:
        """Closes the HTTP client (when this source made it)."""
        if self._owns_client:
            self._client.close()

    def __enter__(self) -> TokenSource:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class AsyncTokenSource:
    """:class:`TokenSource` for asyncio: the same options, ``await
    source.token()``. ``attestation`` may also be an async callable."""

    def __init__(
        self,
        broker: str,
        *,
        audience: str | None = None,
        resource: str | None = None,
        scopes: Sequence[str] | str,
        attestation: AsyncAttestation | None = None,
        attestation_type: str = JWT,
        client_credentials: bool = False,
        dpop: DpopKey | None = None,
        requested_ttl: int | None = None,
        ca: str | None = None,
        cert: tuple[str, str] | None = None,
        http_client: httpx.AsyncClient | None = None,
        clock: Callable[[], float] = time.monotonic,
        _subject: Callable[[], str] | None = None,
        _subject_type: str = JWT,
    ) -> None:
        if attestation is None and not client_credentials:
            raise ConfigError("give an attestation (file or callable) or use client_credentials")
        self._core = _Core(
            broker, audience=audience, resource=resource, scopes=scopes, dpop=dpop,
            requested_ttl=requested_ttl, client_credentials=client_credentials, clock=clock,
        )
        self._attestation = attestation
        self._attestation_type = attestation_type
        self._subject = _subject
        self._subject_type = _subject_type
        self._owns_client = http_client is None
        self._client = http_client or httpx.AsyncClient(verify=_http.tls_context(ca, cert), timeout=_http.TIMEOUT)
        self._refresh = asyncio.Lock()

    @property
    def exchanges(self) -> int:
        """How many exchanges were sent."""
        return self._core.exchanges

    async def _attest(self) -> str:
        a = self._attestation
        if a is None:
            raise ConfigError("no attestation configured")
        if callable(a):
            try:
                value: Any = a()
                if asyncio.iscoroutine(value) or isinstance(value, asyncio.Future):
                    value = await value
            except WritError:
                raise
            except Exception as e:
                raise AttestationError(f"attestation callable failed: {type(e).__name__}") from e
            if not isinstance(value, str) or not value:
                raise AttestationError("attestation callable returned no token")
            return value
        return read_attestation_file(a)

    async def _metadata(self) -> _http.Metadata:
        if self._core.metadata is None:
            try:
                response = await self._client.get(self._core.base + _http.METADATA_PATH)
            except httpx.HTTPError as e:
                raise _http.transport_error("metadata", e) from None
            _http.raise_for_oauth_error(response, "metadata")
            self._core.metadata = _http.Metadata.parse(_http.json_body(response, "metadata"))
        return self._core.metadata

    async def _exchange(self) -> _Cached:
        core = self._core
        endpoint = (await self._metadata()).token_endpoint
        if self._subject is not None:
            form = core.form(self._subject(), await self._attest(), self._subject_type)
        elif core.client_credentials:
            form = core.form(None, None, JWT)
        else:
            form = core.form(await self._attest(), None, self._attestation_type)
        for attempt in range(2):
            core.exchanges += 1
            started = core.clock()
            try:
                response = await self._client.post(endpoint, data=form, headers=core.headers(endpoint))
            except httpx.HTTPError as e:
                raise _http.transport_error("token endpoint", e) from None
            if attempt == 0 and core.wants_nonce(response):
                continue
            return core.parse(response, started)
        raise ProtocolError("the broker asked for a DPoP nonce twice")

    async def token(self) -> Token:
        """As :meth:`TokenSource.token`: one exchange in flight, however many
        tasks await it."""
        core = self._core
        fresh = core.fresh()
        if fresh is not None:
            return fresh
        if self._refresh.locked():
            valid = core.valid()
            if valid is not None:
                return valid
        async with self._refresh:
            fresh = core.fresh()
            if fresh is not None:
                return fresh
            if core.in_backoff():
                return core.backing_off()
            try:
                cached = await self._exchange()
            except WritError as e:
                return core.failed(e)
            return core.succeeded(cached)

    async def authorization(self, method: str, url: str, nonce: str | None = None) -> dict[str, str]:
        """As :meth:`TokenSource.authorization`."""
        return self._core.authorization(await self.token(), method, url, nonce)

    def auth(self) -> httpx.Auth:
        """An ``httpx.Auth`` for an ``httpx.AsyncClient``."""
        return WritAuth(self)

    def invalidate(self) -> None:
        """Drops the cached token."""
        self._core.cached = None

    def act_for(
        self,
        subject_token: str | Callable[[], str],
        *,
        subject_token_type: str = JWT,
        audience: str | None = None,
        resource: str | None = None,
        scopes: Sequence[str] | str | None = None,
        dpop: DpopKey | None = None,
        requested_ttl: int | None = None,
    ) -> AsyncTokenSource:
        """As :meth:`TokenSource.act_for`."""
        core = self._core
        subject = subject_token if callable(subject_token) else (lambda: subject_token)  # noqa: E731
        return AsyncTokenSource(
            core.base,
            audience=audience if audience is not None or resource is not None else core.audience,
            resource=resource if audience is not None or resource is not None else core.resource,
            scopes=scopes if scopes is not None else core.scope,
            attestation=self._attestation,
            dpop=dpop if dpop is not None else core.dpop,
            requested_ttl=requested_ttl,
            http_client=self._client,
            clock=core.clock,
            _subject=subject,
            _subject_type=subject_token_type,
        )

    async def aclose(self) -> None:
        """Closes the HTTP client (when this source made it)."""
        if self._owns_client:
            await self._client.aclose()


def _nonce_challenge(response: httpx.Response) -> str | None:
    if response.status_code != 401:
        return None
    nonce = response.headers.get("dpop-nonce")
    if nonce and "use_dpop_nonce" in response.headers.get("www-authenticate", ""):
        return str(nonce)
    return None


class WritAuth(httpx.Auth):
    """Presents a source's token on each request; for a DPoP-bound token, a
    proof for that request, and once more with the server's nonce when it
    answers 401 ``use_dpop_nonce`` (RFC 9449 section 9)."""

    def __init__(self, source: TokenSource | AsyncTokenSource) -> None:
        self._source = source
        self._nonces: dict[str, str] = {}

    def sync_auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        if not isinstance(self._source, TokenSource):
            raise ConfigError("use an AsyncTokenSource with an httpx.AsyncClient")
        origin = f"{request.url.scheme}://{request.url.netloc.decode()}"
        url = str(request.url.copy_with(query=None, fragment=None))
        request.headers.update(self._source.authorization(request.method, url, self._nonces.get(origin)))
        response = yield request
        nonce = _nonce_challenge(response)
        if nonce is not None and self._source.dpop is not None:
            self._nonces[origin] = nonce
            request.headers.update(self._source.authorization(request.method, url, nonce))
            yield request

    async def async_auth_flow(self, request: httpx.Request) -> Any:
        source = self._source
        origin = f"{request.url.scheme}://{request.url.netloc.decode()}"
        url = str(request.url.copy_with(query=None, fragment=None))

        async def headers(nonce: str | None) -> dict[str, str]:
            if isinstance(source, AsyncTokenSource):
                return await source.authorization(request.method, url, nonce)
            return await asyncio.to_thread(source.authorization, request.method, url, nonce)

        request.headers.update(await headers(self._nonces.get(origin)))
        response = yield request
        nonce = _nonce_challenge(response)
        if nonce is not None and source._core.dpop is not None:
            self._nonces[origin] = nonce
            request.headers.update(await headers(nonce))
            yield request


__all__ = [
    "ACCESS_TOKEN", "AsyncTokenSource", "Denied", "ID_TOKEN", "JWT", "Token", "TokenSource", "Unavailable",
    "WritAuth", "read_attestation_file",
]
