"""The kill switch as a verifier sees it: feed entries (writ-proto's
``revocation::Entry``) and the one matcher (``RevocationIndex``), with the
same semantics: an entry revokes a matching token issued at or before its
``effective_at``; lifting a block never un-revokes; an entry whose time
cannot be read revokes every matching token (fail closed)."""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

from . import token as _token

log = logging.getLogger("writ.revocation")

#: How long after a token's ``exp`` a revocation of that one token is kept.
EXPIRED_TOKEN_GRACE = 60
#: Longest selector value accepted.
MAX_VALUE_BYTES = 1024
#: Selector kinds with a value; ``all`` takes ``true``.
VALUE_KINDS = ("jti", "subject", "subject_prefix", "audience", "issuer", "actor", "kid")
END_OF_TIME = 2**64 - 1


class EntryError(ValueError):
    """A feed entry that cannot be read."""


def parse_rfc3339(text: Any) -> int | None:
    """An RFC 3339 UTC time (``Z``) as seconds since the epoch, else ``None``."""
    if not isinstance(text, str) or not text:
        return None
    t = text.strip()
    if t[-1:] in ("Z", "z"):
        t = t[:-1]
    elif "+" in t[10:] or "-" in t[10:]:
        return None
    try:
        parsed = datetime.fromisoformat(t.replace("t", "T").replace(" ", "T"))
    except ValueError:
        return None
    if parsed.tzinfo is not None:
        return None
    return int(parsed.replace(tzinfo=timezone.utc).timestamp())


def _value_ok(v: Any) -> bool:
    return (
        isinstance(v, str)
        and 0 < len(v.encode()) <= MAX_VALUE_BYTES
        and not any(ord(c) < 0x20 or 0x7F <= ord(c) <= 0x9F for c in v)
    )


def parse_selector(v: Any) -> tuple[str, str | None]:
    """``(kind, value)`` of a selector's JSON form; ``value`` is ``None`` for ``all``."""
    if not isinstance(v, dict):
        raise EntryError("selector must be an object")
    if len(v) != 1:
        raise EntryError("selector must name exactly one kind")
    ((kind, value),) = v.items()
    if kind == "all":
        if value is True:
            return "all", None
        raise EntryError("selector all takes the value true")
    if kind not in VALUE_KINDS:
        raise EntryError(f"unknown selector kind {kind!r}")
    if not isinstance(value, str):
        raise EntryError(f"selector {kind} takes a string")
    if not _value_ok(value):
        raise EntryError(f"selector {kind} needs a non-empty value of at most {MAX_VALUE_BYTES} bytes")
    return kind, value


@dataclass(frozen=True)
class Entry:
    """One kill-switch entry as the feed carries it."""

    id: str
    seq: int
    kind: str
    selector_kind: str
    selector_value: str | None
    effective_at: int
    block: bool
    until: int | None
    lifted_at: int | None
    lifts: str | None
    token_exp: int | None

    @classmethod
    def from_json(cls, v: Any) -> Entry:
        """Parses a feed entry; an unreadable ``effective_at`` is the end of
        time, so the entry revokes every matching token."""
        if not isinstance(v, dict):
            raise EntryError("entry must be an object")
        kind = v.get("kind")
        if kind not in ("revoke", "lift"):
            raise EntryError("entry kind must be revoke or lift")
        selector_kind, selector_value = parse_selector(v.get("selector"))
        seq = v.get("seq")
        effective_at = parse_rfc3339(v.get("effective_at"))
        return cls(
            id=v["id"] if isinstance(v.get("id"), str) else "",
            seq=seq if isinstance(seq, int) and not isinstance(seq, bool) and seq >= 0 else 0,
            kind=kind,
            selector_kind=selector_kind,
            selector_value=selector_value,
            effective_at=END_OF_TIME if effective_at is None else effective_at,
            block=v.get("block") is True,
            until=parse_rfc3339(v.get("until")),
            lifted_at=parse_rfc3339(v.get("lifted_at")),
            lifts=v["lifts"] if isinstance(v.get("lifts"), str) else None,
            token_exp=parse_rfc3339(v.get("token_exp")),
        )

    def blocks_at(self, now: int) -> bool:
        """Whether new tokens matching it are refused at ``now``."""
        return (
            self.kind == "revoke"
            and self.block
            and self.lifted_at is None
            and (self.until is None or now < self.until)
        )

    def revokes_issued_at(self, iat: int) -> bool:
        """Whether it revokes a token issued at ``iat``."""
        return self.kind == "revoke" and iat <= self.effective_at

    def matters_at(self, now: int, horizon: int) -> bool:
        """Whether it can still matter at ``now``."""
        if self.blocks_at(now):
            return True
        alive_until = self.token_exp + EXPIRED_TOKEN_GRACE if self.token_exp is not None else self.effective_at + horizon
        return now <= alive_until


class RevocationSet:
    """Revocation entries heard on the feed, indexed by what they select;
    :meth:`revoked` is writ-proto's ``RevocationIndex::revokes``, in the same
    order, so both name the same entry. Thread-safe."""

    def __init__(self, leeway: int = 30) -> None:
        self._leeway = leeway
        self._lock = threading.Lock()
        self._by_kind: dict[str, dict[str, list[Entry]]] = {k: {} for k in VALUE_KINDS}
        self._all: list[Entry] = []
        self._last_seq = 0
        self._len = 0

    def __len__(self) -> int:
        return self._len

    @property
    def last_seq(self) -> int:
        """The highest ``seq`` applied: where the feed resumes."""
        return self._last_seq

    def apply(self, entry: Any) -> None:
        """Applies one feed entry (JSON as the broker sends it). An entry
        that cannot be read is skipped with a warning, its ``seq`` still
        counted; lift entries change nothing (lifting never un-revokes)."""
        seq = entry.get("seq") if isinstance(entry, dict) else None
        with self._lock:
            if isinstance(seq, int) and not isinstance(seq, bool):
                self._last_seq = max(self._last_seq, seq)
            try:
                e = Entry.from_json(entry)
            except EntryError as error:
                log.warning("unreadable revocation entry; ignored: %s", error)
                return
            if e.kind != "revoke":
                return
            if e.effective_at == END_OF_TIME:
                log.warning("revocation entry %s without a readable effective_at; it revokes every matching token", e.id)
            self._upsert(e)

    def _upsert(self, e: Entry) -> None:
        if e.selector_kind == "all":
            bucket = self._all
        else:
            assert e.selector_value is not None
            bucket = self._by_kind[e.selector_kind].setdefault(e.selector_value, [])
        before = len(bucket)
        bucket[:] = [x for x in bucket if x.id != e.id]
        if len(bucket) == before:
            self._len += 1
        bucket.append(e)

    def forget_expired(self, now: int) -> int:
        """Forgets entries revoking one token (RFC 7009) once that token is
        past its ``exp``, the grace and this verifier's leeway."""
        dropped = 0
        at = now - self._leeway
        with self._lock:
            buckets = [self._all] + [b for kind in self._by_kind.values() for b in kind.values()]
            for bucket in buckets:
                keep = [e for e in bucket if e.matters_at(at, END_OF_TIME)]
                dropped += len(bucket) - len(keep)
                bucket[:] = keep
            self._len -= dropped
        return dropped

    def _first(self, kind: str, key: str | None, iat: int) -> Entry | None:
        if key is None:
            return None
        for e in self._by_kind[kind].get(key, ()):
            if e.revokes_issued_at(iat):
                return e
        return None

    def revoked(self, claims: dict[str, Any], kid: str) -> str | None:
        """The id of an entry that revokes the token with these claims,
        signed by key ``kid``, if any."""
        if self._len == 0:
            return None
        iat = claims["iat"]
        subject = claims["sub"]
        issuers = [claims["iss"]]
        if isinstance(claims.get("attestation_issuer"), str):
            issuers.append(claims["attestation_issuer"])
        issuers.extend(_token.actor_issuers(claims))
        candidates: list[tuple[str, str | None]] = [("jti", claims["jti"])]
        candidates += [("jti", a) for a in claims.get("ancestry") or ()]
        candidates += [("subject", subject), ("audience", claims["aud"])]
        candidates += [("issuer", i) for i in issuers]
        candidates += [("actor", a) for a in _token.actors(claims)]
        candidates.append(("kid", kid))
        with self._lock:
            for kind, key in candidates:
                hit = self._first(kind, key, iat)
                if hit is not None:
                    return hit.id
            raw = subject.encode()
            for length in sorted({len(p.encode()) for p in self._by_kind["subject_prefix"]}):
                try:
                    prefix = raw[:length].decode() if len(raw) >= length else None
                except UnicodeDecodeError:
                    continue
                hit = self._first("subject_prefix", prefix, iat)
                if hit is not None:
                    return hit.id
            for e in self._all:
                if e.revokes_issued_at(iat):
                    return e.id
        return None
