"""Verifying writ tokens at a resource server: keys from the broker's
metadata (``jwks_uri``), writ-proto's token checks, required scopes, the
key binding (DPoP proof or client certificate), and the kill switch from the
revocation feed, failing closed when the feed goes silent."""

from __future__ import annotations

import base64
import logging
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Mapping, Sequence

import httpx

from . import _http, _jose, binding, dpop
from . import token as _token
from . import txn as _txn
from .errors import ConfigError, FeedStale, InvalidDpopProof, MissingScope, ProtocolError, Revoked, VerifyError
from .feed import Feed
from .source import TokenSource

log = logging.getLogger("writ.verifier")

#: An unknown ``kid`` refetches the JWKS at most this often (seconds).
JWKS_REFETCH_EVERY = 10.0

_TOKEN_VERDICTS = {
    "malformed": ("malformed", "token is malformed"),
    "wrong_type": ("malformed", "token is malformed"),
    "lifetime": ("malformed", "token is malformed"),
    "algorithm": ("algorithm", "signing algorithm is not allowed"),
    "unknown_key": ("unknown_key", "signing key is unknown"),
    "bad_signature": ("signature", "signature is invalid"),
    "wrong_issuer": ("issuer", "token was issued by another issuer"),
    "wrong_audience": ("audience", "token is for another audience"),
    "expired": ("expired", "token has expired"),
    "not_yet_valid": ("not_yet_valid", "token is not yet valid"),
}


@dataclass(frozen=True)
class Verified:
    """A token that passed every check."""

    #: ``sub``: the principal the token speaks for.
    subject: str
    #: ``client_id``: the acting party (the newest agent when delegated).
    client_id: str
    #: The granted scopes.
    scopes: tuple[str, ...]
    jti: str
    #: ``exp``, seconds since the epoch.
    expires_at: int
    #: Every ``sub`` of the ``act`` chain, newest first.
    actors: tuple[str, ...]
    #: Every claim.
    claims: Mapping[str, Any] = field(repr=False)

    def has_scope(self, scope: str) -> bool:
        """Whether the token grants ``scope``."""
        return scope in self.scopes


@dataclass(frozen=True)
class Presented:
    """How one request presented a token."""

    token: str
    #: ``Bearer`` or ``DPoP``.
    scheme: str = binding.BEARER
    dpop_proof: str | None = None
    #: The request method (the proof's ``htm``).
    method: str = ""
    #: The URL the client addressed (the proof's ``htu``).
    url: str = ""
    #: DER of the TLS client certificate the request arrived with.
    client_certificate: bytes | None = None

    def __repr__(self) -> str:  # token and proof are secrets
        return f"Presented(scheme={self.scheme!r}, method={self.method!r}, url={self.url!r})"

    @classmethod
    def from_headers(cls, authorization: str | None, dpop_values: Sequence[str], method: str, url: str) -> Presented:
        """From the ``Authorization`` value and every ``DPoP`` header value:
        no token (or another scheme) is ``missing``; more than one proof,
        or one that is not visible ASCII, is a malformed proof."""
        split = binding.split_authorization(authorization) if authorization else None
        if split is None:
            raise VerifyError("missing", "no access token was presented")
        if len(dpop_values) > 1:
            raise InvalidDpopProof("malformed", "send exactly one DPoP header")
        proof = dpop_values[0] if dpop_values else None
        if proof is not None and not all(c == "\t" or 0x20 <= ord(c) < 0x7F for c in proof):
            raise InvalidDpopProof("malformed", "DPoP header is not text")
        return cls(token=split[1], scheme=split[0], dpop_proof=proof, method=method, url=url)


def _feed_auth(credential: str | TokenSource | Callable[[], str] | None) -> tuple[Callable[[], str | None], Callable[[], None] | None]:
    if credential is None:
        return (lambda: None), None
    if isinstance(credential, TokenSource):
        source = credential
        return (lambda: f"Bearer {source.token().access_token}"), source.invalidate
    if isinstance(credential, str):
        bearer = credential
        return (lambda: f"Bearer {bearer}"), None
    fn = credential
    return (lambda: f"Bearer {fn()}"), None


class Verifier:
    """Verifies writ access tokens for one audience; thread-safe.

    On construction it reads the broker's metadata and keys and, with
    ``follow_revocations=True``, the whole revocation feed, then follows it
    on a daemon thread (``feed_credential``: an admin bearer token, a
    :class:`TokenSource` whose audience is the broker's issuer, or ``None``
    with ``cert`` for mTLS). Every token is refused once the feed has been
    silent longer than ``max_feed_silence`` seconds."""

    def __init__(
        self,
        broker: str,
        audience: str,
        *,
        ca: str | None = None,
        cert: tuple[str, str] | None = None,
        required_scopes: Iterable[str] = (),
        leeway: int = 30,
        follow_revocations: bool = False,
        feed_credential: str | TokenSource | Callable[[], str] | None = None,
        max_feed_silence: float = 60.0,
        dpop_replay_capacity: int = 1_000_000,
        jwks_refresh: float = 60.0,
        clock: Callable[[], float] = time.monotonic,
        http_client: httpx.Client | None = None,
    ) -> None:
        self._base = _http.base_url(broker)
        self.audience = audience
        self.required_scopes = tuple(required_scopes)
        self.leeway = leeway
        self._clock = clock
        self._max_feed_silence = max_feed_silence
        self._replay = dpop.ReplayCache(dpop_replay_capacity)
        self._owns_client = http_client is None
        self._client = http_client or httpx.Client(verify=_http.tls_context(ca, cert), timeout=_http.TIMEOUT)
        self._keys: dict[str, tuple[Any, str]] = {}
        self._keys_lock = threading.Lock()
        self._last_refetch: float | None = None
        try:
            response = self._client.get(self._base + _http.METADATA_PATH)
        except httpx.HTTPError as e:
            raise _http.transport_error("metadata", e) from None
        _http.raise_for_oauth_error(response, "metadata")
        self._metadata = _http.Metadata.parse(_http.json_body(response, "metadata"))
        self.issuer = self._metadata.issuer
        self.refetch_keys()
        self._stop = threading.Event()
        self._jwks_refresh = max(jwks_refresh, 0.1)
        self._refresher = threading.Thread(target=self._refresh_keys, name="writ-jwks", daemon=True)
        self._refresher.start()
        self._feed: Feed | None = None
        if follow_revocations:
            auth, on_401 = _feed_auth(feed_credential)
            self._feed = Feed(self._client, self._metadata.revocation_feed_endpoint, auth, on_401, leeway, clock)
            self._feed.catch_up()
            self._feed.start()

    def __repr__(self) -> str:
        return f"Verifier(issuer={self.issuer!r}, audience={self.audience!r})"

    # -- keys --------------------------------------------------------------------
    def refetch_keys(self) -> None:
        """Replaces the key set with the broker's current JWKS."""
        try:
            response = self._client.get(self._metadata.jwks_uri)
        except httpx.HTTPError as e:
            raise _http.transport_error("JWKS", e) from None
        _http.raise_for_oauth_error(response, "JWKS")
        doc = _http.json_body(response, "JWKS")
        if not isinstance(doc, dict) or not isinstance(doc.get("keys"), list):
            raise ProtocolError("JWKS has no keys")
        keys: dict[str, tuple[Any, str]] = {}
        for jwk in doc["keys"]:
            if not isinstance(jwk, dict) or not isinstance(jwk.get("kid"), str):
                continue
            alg = _jose.algorithm_of(jwk)
            if alg is None:
                continue
            try:
                keys[jwk["kid"]] = (_jose.public_key(jwk, alg), alg)
            except _jose.KeyFormatError:
                continue
        with self._keys_lock:
            self._keys = keys

    def _refresh_keys(self) -> None:
        while not self._stop.wait(self._jwks_refresh):
            try:
                self.refetch_keys()
            except Exception as e:  # keep the last key set; the broker may be restarting
                log.warning("JWKS refresh failed; keeping the last key set: %s", e)

    def knows_key(self, token: str) -> bool:
        """Whether the token's ``kid`` is known without a refetch (an ASGI
        server refetches off its event loop when not)."""
        try:
            return _token.header(token).kid in self._keys
        except _token.TokenCheckError:
            return True

    def _key(self, kid: str) -> tuple[Any, str]:
        key = self._keys.get(kid)
        if key is not None:
            return key
        now = time.monotonic()
        if self._last_refetch is None or now - self._last_refetch >= JWKS_REFETCH_EVERY:
            self._last_refetch = now
            try:
                self.refetch_keys()
            except Exception as e:
                log.warning("JWKS refetch failed: %s", e)
        key = self._keys.get(kid)
        if key is None:
            raise VerifyError("unknown_key", "signing key is unknown")
        return key

    # -- verification --------------------------------------------------------
    def verify(self, token: str) -> Verified:
        """Verifies a token on its own: signature, ``typ``, ``iss``, ``aud``,
        time, required scopes and the kill switch. A key-bound token is
        refused here (nothing proves the key): use :meth:`verify_presented`."""
        return self.verify_presented(Presented(token=token))

    def verify_presented(self, presented: Presented, now: int | None = None) -> Verified:
        """Verifies a token as a request presented it; for a key-bound token,
        that the request proved the key (a DPoP proof for this method, URL and
        token, seen once; or its client certificate)."""
        now = int(time.time()) if now is None else now
        try:
            header = _token.header(presented.token)
            key, alg = self._key(header.kid)
            expected = _token.Expected(issuer=self.issuer, audience=self.audience, now=now, leeway=self.leeway)
            claims = _token.verify(presented.token, header, key, alg, expected)
        except _token.TokenCheckError as e:
            code, message = _TOKEN_VERDICTS[e.verdict]
            raise VerifyError(code, message) from None
        granted = _token.scopes(claims)
        for scope in self.required_scopes:
            if scope not in granted:
                raise MissingScope(scope)
        cnf = claims.get("cnf")
        if cnf is not None or presented.scheme != binding.BEARER:
            self._check_binding(cnf, presented, now)
        self._check_revocations(claims, header.kid)
        return Verified(
            subject=claims["sub"],
            client_id=claims["client_id"],
            scopes=tuple(granted),
            jti=claims["jti"],
            expires_at=claims["exp"],
            actors=tuple(_token.actors(claims)),
            claims=claims,
        )

    def verify_txn(self, token: str, trust_domain: str, now: int | None = None) -> dict[str, Any]:
        """Verifies a transaction token, as a workload receives it in the
        ``Txn-Token`` header, for ``trust_domain``: signature, ``typ``
        ``txntoken+jwt`` (an access token is refused, as a txn token is by
        :meth:`verify`), ``iss``, ``aud`` = the trust domain, time, and the
        kill switch. Returns the claims (see :mod:`writ.txn` for readers)."""
        now = int(time.time()) if now is None else now
        try:
            header = _txn.header(token)
            key, alg = self._key(header.kid)
            expected = _txn.Expected(issuer=self.issuer, trust_domain=trust_domain, now=now, leeway=self.leeway)
            claims = _txn.verify(token, header, key, alg, expected)
        except _token.TokenCheckError as e:
            code, message = _TOKEN_VERDICTS[e.verdict]
            raise VerifyError(code, message) from None
        self._check_revocations(claims, header.kid)
        return claims

    def _check_revocations(self, claims: dict[str, Any], kid: str) -> None:
        """The kill switch, when followed: a stale feed fails closed, a
        matching entry refuses."""
        if self._feed is None:
            return
        silence = self._feed.silence()
        if silence is None or silence > self._max_feed_silence:
            raise FeedStale()
        entry = self._feed.set.revoked(claims, kid)
        if entry is not None:
            raise Revoked(entry)

    def _check_binding(self, cnf: Any, presented: Presented, now: int) -> None:
        certificate = (
            _jose.sha256_b64url(presented.client_certificate) if presented.client_certificate is not None else None
        )

        def prove() -> str | None:
            if presented.dpop_proof is None:
                return None
            uri = presented.url.split("?", 1)[0].split("#", 1)[0]
            return dpop.verify(presented.dpop_proof, presented.method, uri, now, self._replay, presented.token)

        try:
            binding.check(cnf, presented.scheme, certificate, prove)
        except binding.BindingError as e:
            if e.dpop is not None:
                raise InvalidDpopProof(e.dpop.verdict, str(e.dpop), e.dpop.retry_after) from None
            raise VerifyError("key_binding", "token is bound to a key the request did not prove") from None

    @property
    def feed_connected(self) -> bool:
        """Whether the revocation stream is open now (for health checks;
        verification goes by how long the feed has been silent)."""
        return self._feed is not None and self._feed.connected

    @property
    def revocations(self) -> int:
        """How many revocation entries are held (0 without a feed)."""
        return len(self._feed.set) if self._feed is not None else 0

    def close(self) -> None:
        """Stops the feed and key refresh threads."""
        self._stop.set()
        if self._feed is not None:
            self._feed.stop()
        if self._owns_client:
            self._client.close()

    def __enter__(self) -> Verifier:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def pem_to_der(pem: str) -> bytes:
    """The DER of the first certificate in a PEM string."""
    lines = pem.strip().splitlines()
    try:
        start = lines.index("-----BEGIN CERTIFICATE-----")
        end = lines.index("-----END CERTIFICATE-----", start)
    except ValueError:
        raise ConfigError("not a PEM certificate") from None
    return base64.b64decode("".join(lines[start + 1 : end]))
