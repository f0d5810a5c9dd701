#!/usr/bin/env python3
"""Generates the shared test vectors in this directory: tokens.json,
binding.json (DPoP proofs and key binding), revocation.json (feed
entries and the matcher) and txn.json (transaction tokens). Run once; the output is committed and checked by
both proto/tests/vectors.rs (writ-proto, Rust) and
clients/python/tests/test_vectors.py (the Python package).

Keys are generated fresh on each run and only their public halves are
written: they are test keys. Every case carries its own `now`, so verdicts
do not depend on the clock. Needs PyJWT and cryptography:

    python3 proto/tests/vectors/generate.py [NAME...]   # e.g. txn; none: all
"""

from __future__ import annotations

import base64
import copy
import hashlib
import json
import os

import jwt
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from jwt.algorithms import ECAlgorithm, OKPAlgorithm

HERE = os.path.dirname(os.path.abspath(__file__))
NOW = 1_800_000_000
ISSUER = "https://writ.test"
AUDIENCE = "payments-db"


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def b64json(value: object) -> str:
    return b64(json.dumps(value, separators=(",", ":")).encode())


def public_jwk(key: object, kid: str | None = None) -> dict:
    if isinstance(key, ec.EllipticCurvePrivateKey):
        jwk = json.loads(ECAlgorithm.to_jwk(key.public_key()))
    else:
        jwk = json.loads(OKPAlgorithm.to_jwk(key.public_key()))
    jwk = {k: v for k, v in jwk.items() if k in ("kty", "crv", "x", "y")}
    if kid:
        jwk["kid"] = kid
    return jwk


def claims(**over: object) -> dict:
    c = {
        "iss": ISSUER,
        "sub": "spiffe://cluster.local/ns/payments/sa/api",
        "aud": AUDIENCE,
        "client_id": "spiffe://cluster.local/ns/payments/sa/api",
        "scope": "read",
        "iat": NOW - 60,
        "nbf": NOW - 60,
        "exp": NOW + 240,
        "jti": "kRsPeHqgHLxfkYSvCMQnyg",
        "attestation": "kubernetes",
        "principal_type": "Workload",
        "attestation_issuer": "https://kubernetes.default.svc",
    }
    c.update(over)
    return {k: v for k, v in c.items() if v is not None}


def tokens() -> dict:
    es = ec.generate_private_key(ec.SECP256R1())
    ed = ed25519.Ed25519PrivateKey.generate()
    other = ec.generate_private_key(ec.SECP256R1())
    rs = rsa.generate_private_key(public_exponent=65537, key_size=2048)

    def sign(c: dict, key: object = es, alg: str = "ES256", **header: object) -> str:
        h = {"typ": "at+jwt", "kid": "k-es256" if alg == "ES256" else "k-ed25519"}
        h.update(header)
        h = {k: v for k, v in h.items() if v is not None}
        return jwt.encode(c, key, algorithm=alg, headers=h)

    valid = sign(claims())
    h, p, s = valid.split(".")
    tampered_payload = f"{h}.{b64json(claims(scope='read write'))}.{s}"
    alg_none = f"{b64json({'alg': 'none', 'typ': 'at+jwt', 'kid': 'k-es256'})}.{b64json(claims())}."
    hs256 = jwt.encode(claims(), b"the-public-key-as-an-hmac-secret!", algorithm="HS256",
                       headers={"typ": "at+jwt", "kid": "k-es256"})
    cases = [
        ("valid ES256 token", valid, NOW, None, "ok"),
        ("valid EdDSA token", sign(claims(), ed, "EdDSA"), NOW, None, "ok"),
        ("valid delegated, DPoP-bound token", sign(claims(
            sub="alice@example.com", client_id="assistant", principal_type="User", attestation="oidc",
            act={"sub": "assistant", "iss": "https://agents.idp.test"}, ancestry=["parent"],
            cnf={"jkt": "0ZcOCORZNYy-DWpqq30jZyJGHTN0d2HglBV3uiguA4I"})), NOW, None, "ok"),
        ("token granting the required scope", sign(claims(scope="read write")), NOW, "write", "ok"),
        ("token without the required scope", valid, NOW, "write", "missing_scope"),
        ("wrong iss", sign(claims(iss="https://evil.test")), NOW, None, "wrong_issuer"),
        ("wrong aud", sign(claims(aud="cache")), NOW, None, "wrong_audience"),
        ("expired past the leeway", sign(claims(iat=NOW - 400, nbf=NOW - 400, exp=NOW - 31)), NOW, None, "expired"),
        ("expired at exactly exp plus leeway", sign(claims(iat=NOW - 400, nbf=NOW - 400, exp=NOW - 30)), NOW, None, "expired"),
        ("expired within the leeway", sign(claims(iat=NOW - 400, nbf=NOW - 400, exp=NOW - 29)), NOW, None, "ok"),
        ("not yet valid past the leeway", sign(claims(iat=NOW + 31, nbf=NOW + 31, exp=NOW + 300)), NOW, None, "not_yet_valid"),
        ("not yet valid within the leeway", sign(claims(iat=NOW + 30, nbf=NOW + 30, exp=NOW + 300)), NOW, None, "ok"),
        ("typ JWT", sign(claims(), typ="JWT"), NOW, None, "wrong_type"),
        ("no typ", sign(claims(), typ=None), NOW, None, "wrong_type"),
        ("alg none", alg_none, NOW, None, "malformed"),
        ("HS256 key confusion", hs256, NOW, None, "algorithm"),
        ("RS256 token", jwt.encode(claims(), rs, algorithm="RS256", headers={"typ": "at+jwt", "kid": "k-es256"}), NOW, None, "algorithm"),
        ("ES256 header on the EdDSA key", sign(claims(), es, "ES256", kid="k-ed25519"), NOW, None, "algorithm"),
        ("unknown kid", sign(claims(), other, kid="k-unknown"), NOW, None, "unknown_key"),
        ("no kid", sign(claims(), kid=None), NOW, None, "unknown_key"),
        ("signed by another key under a known kid", sign(claims(), other), NOW, None, "bad_signature"),
        ("payload changed after signing", tampered_payload, NOW, None, "bad_signature"),
        ("two segments", f"{h}.{p}", NOW, None, "malformed"),
        ("header not base64url JSON", f"bm90IGpzb24.{p}.{s}", NOW, None, "malformed"),
        ("unknown attestation kind", sign(claims(attestation="password")), NOW, None, "malformed"),
        ("aud as an array", sign(claims(aud=[AUDIENCE])), NOW, None, "malformed"),
        ("exp not a number", sign(claims(exp="soon")), NOW, None, "malformed"),
    ]
    return {
        "description": "writ access tokens (CONTRACT section 3) and the verdict of writ-proto's token::header + token::verify "
        "(TokenError in snake case), or missing_scope when require_scope is not granted, or ok.",
        "issuer": ISSUER,
        "audience": AUDIENCE,
        "leeway": 30,
        "jwks": {"keys": [public_jwk(es, "k-es256"), public_jwk(ed, "k-ed25519")]},
        "cases": [
            {"name": n, "token": t, "now": now, "require_scope": r, "verdict": v} for n, t, now, r, v in cases
        ],
    }


def txn() -> dict:
    es = ec.generate_private_key(ec.SECP256R1())
    other = ec.generate_private_key(ec.SECP256R1())
    trust_domain = "writ.local"

    def txn_claims(**over: object) -> dict:
        c = {
            "iss": ISSUER,
            "iat": NOW - 10,
            "exp": NOW + 50,
            "aud": trust_domain,
            "txn": "Kx2uNpS5cTQ8WzVd1bYh0w",
            "sub": "spiffe://cluster.local/ns/payments/sa/api",
            "purp": "checkout",
            "jti": "6uHRmw7w3p0pG0Xn2Zc0Vw",
            "rctx": {"req_ip": "10.1.2.3", "req_wl": ["spiffe://cluster.local/ns/payments/sa/api"]},
            "tctx": {"order": "o-17"},
            "attestation": "kubernetes",
            "principal_type": "Workload",
            "ancestry": ["kRsPeHqgHLxfkYSvCMQnyg"],
        }
        c.update(over)
        return {k: v for k, v in c.items() if v is not None}

    def sign(c: dict, key: object = es, typ: str | None = "txntoken+jwt", kid: str = "k-es256") -> str:
        h = {"typ": typ, "kid": kid}
        return jwt.encode(c, key, algorithm="ES256", headers={k: v for k, v in h.items() if v is not None})

    valid = sign(txn_claims())
    access = sign(claims(aud=trust_domain), typ="at+jwt")
    cases = [
        ("valid txn token", valid, "txn", NOW, "ok"),
        ("a replacement: req_wl grows, delegated", sign(txn_claims(
            rctx={"req_wl": ["spiffe://cluster.local/ns/payments/sa/api", "spiffe://cluster.local/ns/payments/sa/worker"]},
            act={"sub": "assistant", "iss": "https://agents.idp.test"})), "txn", NOW, "ok"),
        ("an access token presented as a txn token", access, "txn", NOW, "wrong_type"),
        ("a txn token presented as an access token", valid, "access", NOW, "wrong_type"),
        ("typ JWT", sign(txn_claims(), typ="JWT"), "txn", NOW, "wrong_type"),
        ("for another trust domain", sign(txn_claims(aud="other.local")), "txn", NOW, "wrong_audience"),
        ("from another broker", sign(txn_claims(iss="https://evil.test")), "txn", NOW, "wrong_issuer"),
        ("expired past the leeway", sign(txn_claims(iat=NOW - 200, exp=NOW - 31)), "txn", NOW, "expired"),
        ("expired within the leeway", sign(txn_claims(iat=NOW - 200, exp=NOW - 29)), "txn", NOW, "ok"),
        ("issued in the future past the leeway", sign(txn_claims(iat=NOW + 31, exp=NOW + 90)), "txn", NOW, "not_yet_valid"),
        ("signed by another key under the known kid", sign(txn_claims(), other), "txn", NOW, "bad_signature"),
        ("unknown kid", sign(txn_claims(), other, kid="k-unknown"), "txn", NOW, "unknown_key"),
        ("no txn claim", sign(txn_claims(txn=None)), "txn", NOW, "malformed"),
        ("no purpose", sign(txn_claims(purp=None)), "txn", NOW, "malformed"),
        ("rctx not an object", sign(txn_claims(rctx=["gw"])), "txn", NOW, "malformed"),
        ("an unknown attestation kind", sign(txn_claims(attestation="password")), "txn", NOW, "malformed"),
    ]
    return {
        "description": "writ transaction tokens (CONTRACT section 9) checked as `as` says: txn by writ-proto's "
        "txn::header + txn::verify for the trust domain, access by token::header + token::verify for the trust "
        "domain as audience; the verdict is TokenError in snake case, or ok.",
        "issuer": ISSUER,
        "trust_domain": trust_domain,
        "leeway": 30,
        "jwks": {"keys": [public_jwk(es, "k-es256")]},
        "cases": [{"name": n, "token": t, "as": a, "now": now, "verdict": v} for n, t, a, now, v in cases],
    }


def binding() -> dict:
    a = ec.generate_private_key(ec.SECP256R1())
    b = ec.generate_private_key(ec.SECP256R1())
    jwk_a, jwk_b = public_jwk(a), public_jwk(b)

    def thumb(jwk: dict) -> str:
        canon = json.dumps({"crv": jwk["crv"], "kty": "EC", "x": jwk["x"], "y": jwk["y"]}, separators=(",", ":"))
        return b64(hashlib.sha256(canon.encode()).digest())

    access_token = "eyJ0eXAiOiJhdCtqd3QifQ.the-access-token.sig"
    ath = b64(hashlib.sha256(access_token.encode()).digest())
    uri = "https://rs.test/orders"
    counter = iter(range(1000))

    def proof(key: object = a, jwk: dict | None = None, alg: str = "ES256", typ: str = "dpop+jwt", **over: object) -> str:
        c = {"htm": "GET", "htu": uri, "iat": NOW, "jti": f"proof-{next(counter)}", "ath": ath}
        c.update(over)
        c = {k: v for k, v in c.items() if v is not None}
        return jwt.encode(c, key, algorithm=alg, headers={"typ": typ, "jwk": jwk if jwk is not None else jwk_a})

    good = proof()
    gh, gp, gs = good.split(".")
    cert = b64(hashlib.sha256(b"the client certificate DER").digest())
    other_cert = b64(hashlib.sha256(b"another certificate DER").digest())
    dpop_cnf = {"jkt": thumb(jwk_a)}
    rows = [
        ("unbound token as Bearer", None, "Bearer", None, None, "ok"),
        ("unbound token with the DPoP scheme", None, "DPoP", None, proof(), "not_bound"),
        ("DPoP-bound token with a proof of its key", dpop_cnf, "DPoP", None, good, "ok"),
        ("the same proof again (replayed jti)", dpop_cnf, "DPoP", None, good, "dpop:replay"),
        ("DPoP-bound token sent as Bearer", dpop_cnf, "Bearer", None, proof(), "wrong_scheme"),
        ("DPoP-bound token without a proof", dpop_cnf, "DPoP", None, None, "no_proof"),
        ("proof by another key", dpop_cnf, "DPoP", None, proof(b, jwk_b), "other_key"),
        ("wrong htm", dpop_cnf, "DPoP", None, proof(htm="POST"), "dpop:method"),
        ("wrong htu", dpop_cnf, "DPoP", None, proof(htu="https://rs.test/admin"), "dpop:uri"),
        ("htu of another origin", dpop_cnf, "DPoP", None, proof(htu="https://evil.test/orders"), "dpop:uri"),
        ("htu with a query is the same URI", dpop_cnf, "DPoP", None, proof(htu=uri + "?page=2"), "ok"),
        ("wrong ath", dpop_cnf, "DPoP", None, proof(ath=b64(b"x" * 32)), "dpop:access_token_hash"),
        ("no ath", dpop_cnf, "DPoP", None, proof(ath=None), "dpop:access_token_hash"),
        ("iat 61 s old (stale)", dpop_cnf, "DPoP", None, proof(iat=NOW - 61), "dpop:time"),
        ("iat 60 s old", dpop_cnf, "DPoP", None, proof(iat=NOW - 60), "ok"),
        ("iat 6 s ahead", dpop_cnf, "DPoP", None, proof(iat=NOW + 6), "dpop:time"),
        ("iat 5 s ahead", dpop_cnf, "DPoP", None, proof(iat=NOW + 5), "ok"),
        ("iat not a number", dpop_cnf, "DPoP", None, proof(iat="now"), "dpop:time"),
        ("no jti", dpop_cnf, "DPoP", None, proof(jti=None), "dpop:malformed"),
        ("typ JWT", dpop_cnf, "DPoP", None, proof(typ="JWT"), "dpop:type"),
        ("alg HS256", dpop_cnf, "DPoP", None,
         f"{b64json({'typ': 'dpop+jwt', 'alg': 'HS256', 'jwk': jwk_a})}.{gp}.{gs}", "dpop:algorithm"),
        ("alg none", dpop_cnf, "DPoP", None, f"{b64json({'typ': 'dpop+jwt', 'alg': 'none', 'jwk': jwk_a})}.{gp}.", "dpop:algorithm"),
        ("jwk with a private member", dpop_cnf, "DPoP", None,
         proof(jwk={**jwk_a, "d": b64(b"\x01" * 32)}), "dpop:key"),
        ("no jwk", dpop_cnf, "DPoP", None, f"{b64json({'typ': 'dpop+jwt', 'alg': 'ES256'})}.{gp}.{gs}", "dpop:key"),
        ("signature of another key", dpop_cnf, "DPoP", None,
         f"{gh}.{gp}.{proof(b, jwk_a).split('.')[2]}", "dpop:signature"),
        ("payload changed after signing", dpop_cnf, "DPoP", None,
         f"{gh}.{b64json({'htm': 'GET', 'htu': uri, 'iat': NOW, 'jti': 'changed', 'ath': ath})}.{gs}", "dpop:signature"),
        ("not a JWS", dpop_cnf, "DPoP", None, "not-a-proof", "dpop:malformed"),
        ("certificate-bound token with its certificate", {"x5t#S256": cert}, "Bearer", cert, None, "ok"),
        ("certificate-bound token with another certificate", {"x5t#S256": cert}, "Bearer", other_cert, None, "other_key"),
        ("certificate-bound token without a certificate", {"x5t#S256": cert}, "Bearer", None, None, "no_proof"),
        ("a binding no one can check", {"x5t": "sha1"}, "Bearer", cert, None, "unsupported"),
        ("an empty cnf", {}, "DPoP", None, good, "unsupported"),
    ]
    return {
        "description": "A token's cnf against what a GET request proves, in order with one DPoP replay cache: "
        "writ-proto's binding::check with dpop::verify as the prover (BindingError in snake case, or dpop:<DpopError>).",
        "cases": [
            {"name": n, "cnf": cnf, "scheme": scheme, "certificate": c, "proof": pr, "method": "GET", "uri": uri,
             "now": NOW, "access_token": access_token, "verdict": v}
            for n, cnf, scheme, c, pr, v in rows
        ],
    }


def rfc3339(t: int) -> str:
    import datetime

    return datetime.datetime.fromtimestamp(t, datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def revocation() -> dict:
    token = claims(
        sub="alice@example.com", client_id="assistant", principal_type="User", attestation="oidc",
        attestation_issuer="https://people.idp.test", jti="tok-1", ancestry=["parent-1"],
        act={"sub": "assistant", "iss": "https://agents.idp.test", "act": {"sub": "planner"}}, iat=NOW, nbf=NOW,
        exp=NOW + 300,
    )
    own = claims(sub="alice@example.com", client_id="alice@example.com", principal_type="User",
                 attestation="oidc", attestation_issuer="https://people.idp.test", jti="tok-2", iat=NOW, nbf=NOW,
                 exp=NOW + 300)
    seq = iter(range(1, 1000))

    def entry(selector: dict, effective_at: int = NOW, **over: object) -> dict:
        e = {"id": f"e{next(seq):02d}", "seq": 0, "kind": "revoke", "selector": selector,
             "effective_at": rfc3339(effective_at), "block": False, "until": None, "lifted_at": None, "lifts": None}
        e["seq"] = int(e["id"][1:])
        e.update(over)
        return e

    cases = []

    def case(name: str, entries: list, verdict_index: int | None, t: dict = token, kid: str = "k-es256") -> None:
        verdict = "ok" if verdict_index is None else f"revoked:{entries[verdict_index]['id']}"
        cases.append({"name": name, "entries": entries, "claims": copy.deepcopy(t), "kid": kid, "verdict": verdict})

    case("by subject, effective at the token's iat", [entry({"subject": "alice@example.com"})], 0)
    case("by subject, effective before the token was issued", [entry({"subject": "alice@example.com"}, NOW - 1)], None)
    case("by subject prefix", [entry({"subject_prefix": "alice@"})], 0)
    case("by another subject", [entry({"subject": "bob@example.com"})], None)
    case("by actor, the newest", [entry({"actor": "assistant"})], 0)
    case("by actor, deeper in the act chain", [entry({"actor": "planner"})], 0)
    case("by actor, on the subject's own token", [entry({"actor": "assistant"})], None, own)
    case("by another actor", [entry({"actor": "helper"})], None)
    case("by target (audience)", [entry({"audience": AUDIENCE})], 0)
    case("by another target", [entry({"audience": "cache"})], None)
    case("by kid", [entry({"kid": "k-es256"})], 0)
    case("by another kid", [entry({"kid": "k-ed25519"})], None)
    case("by jti", [entry({"jti": "tok-1"})], 0)
    case("by the jti of an ancestor", [entry({"jti": "parent-1"})], 0)
    case("by the broker's issuer", [entry({"issuer": ISSUER})], 0)
    case("by the attestation issuer", [entry({"issuer": "https://people.idp.test"})], 0)
    case("by an agent's issuer", [entry({"issuer": "https://agents.idp.test"})], 0)
    case("all", [entry({"all": True})], 0)
    case("all, effective before the token", [entry({"all": True}, NOW - 60)], None)
    case("a lift never un-revokes",
         [entry({"actor": "assistant"}, block=True), entry({"actor": "assistant"}, NOW + 10, kind="lift", lifts="e25")], 0)
    case("an unreadable effective_at revokes (fail closed)", [entry({"subject": "alice@example.com"})], 0)
    case("an unknown selector is ignored", [entry({"team": "payments"})], None)
    case("the first match in the matcher's order: jti before all",
         [entry({"all": True}), entry({"jti": "tok-1"})], 1)
    case("the first match in the matcher's order: subject before actor",
         [entry({"actor": "assistant"}), entry({"subject": "alice@example.com"})], 1)
    # Fix the lift's `lifts` to the id of the entry it lifts.
    for c in cases:
        if c["name"] == "a lift never un-revokes":
            c["entries"][1]["lifts"] = c["entries"][0]["id"]
        if c["name"].startswith("an unreadable"):
            c["entries"][0]["effective_at"] = "soon"
    blocks = []
    for name, e, now, expected in [
        ("a block without until", entry({"actor": "assistant"}, block=True), NOW + 3600, True),
        ("a block before its until", entry({"actor": "assistant"}, block=True, until=rfc3339(NOW + 60)), NOW + 59, True),
        ("a block at its until", entry({"actor": "assistant"}, block=True, until=rfc3339(NOW + 60)), NOW + 60, False),
        ("a lifted block", entry({"actor": "assistant"}, block=True, lifted_at=rfc3339(NOW + 5)), NOW + 10, False),
        ("a plain revocation", entry({"actor": "assistant"}), NOW, False),
        ("a lift entry", entry({"actor": "assistant"}, kind="lift", block=True, lifts="e01"), NOW, False),
    ]:
        blocks.append({"name": name, "entry": e, "now": now, "blocks": expected})
    return {
        "description": "Feed entries (GET /v1/revocations) applied to a verifier's copy of the kill switch: writ-proto's "
        "RevocationIndex (revoke entries only; lifts never un-revoke) and Entry::blocks_at.",
        "cases": cases,
        "blocks": blocks,
    }


if __name__ == "__main__":
    import sys

    builders = (("tokens", tokens), ("binding", binding), ("revocation", revocation), ("txn", txn))
    wanted = set(sys.argv[1:])  # names to write; none: all
    for name, build in builders:
        if wanted and name not in wanted:
            continue
        with open(os.path.join(HERE, f"{name}.json"), "w") as f:
            json.dump(build(), f, indent=1)
            f.write("\n")
        print(f"wrote {name}.json")
