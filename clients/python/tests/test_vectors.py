"""The shared test vectors (proto/tests/vectors/*.json): the Python
package gives every verdict writ-proto gives (proto/tests/vectors.rs runs
the same files in Rust)."""

from __future__ import annotations

import json
import pathlib
from typing import Any

import pytest

from writ import _jose, binding, dpop, token, txn
from writ.revocation import Entry, RevocationSet

VECTORS = pathlib.Path(__file__).resolve().parents[3] / "proto" / "tests" / "vectors"


def load(name: str) -> Any:
    return json.loads((VECTORS / f"{name}.json").read_text())


TOKENS = load("tokens")
BINDING = load("binding")
REVOCATION = load("revocation")
TXN = load("txn")


def token_verdict(case: dict[str, Any]) -> str:
    keys = {}
    for jwk in TOKENS["jwks"]["keys"]:
        alg = _jose.algorithm_of(jwk)
        assert alg is not None
        keys[jwk["kid"]] = (_jose.public_key(jwk, alg), alg)
    expected = token.Expected(
        issuer=TOKENS["issuer"], audience=TOKENS["audience"], now=case["now"], leeway=TOKENS["leeway"]
    )
    try:
        header = token.header(case["token"])
        if header.kid not in keys:
            return "unknown_key"
        key, alg = keys[header.kid]
        claims = token.verify(case["token"], header, key, alg, expected)
    except token.TokenCheckError as e:
        return e.verdict
    if case["require_scope"] and case["require_scope"] not in token.scopes(claims):
        return "missing_scope"
    return "ok"


@pytest.mark.parametrize("case", TOKENS["cases"], ids=[c["name"] for c in TOKENS["cases"]])
def test_token_vector(case: dict[str, Any]) -> None:
    assert token_verdict(case) == case["verdict"]


def txn_verdict(case: dict[str, Any]) -> str:
    keys = {jwk["kid"]: _jose.public_key(jwk, "ES256") for jwk in TXN["jwks"]["keys"]}
    try:
        if case["as"] == "txn":
            header = txn.header(case["token"])
            if header.kid not in keys:
                return "unknown_key"
            expected = txn.Expected(issuer=TXN["issuer"], trust_domain=TXN["trust_domain"], now=case["now"],
                                    leeway=TXN["leeway"])
            txn.verify(case["token"], header, keys[header.kid], "ES256", expected)
        else:
            header = token.header(case["token"])
            if header.kid not in keys:
                return "unknown_key"
            access = token.Expected(issuer=TXN["issuer"], audience=TXN["trust_domain"], now=case["now"],
                                    leeway=TXN["leeway"])
            token.verify(case["token"], header, keys[header.kid], "ES256", access)
    except token.TokenCheckError as e:
        return e.verdict
    return "ok"


@pytest.mark.parametrize("case", TXN["cases"], ids=[c["name"] for c in TXN["cases"]])
def test_txn_vector(case: dict[str, Any]) -> None:
    assert txn_verdict(case) == case["verdict"]


def test_binding_vectors_in_order_with_one_replay_cache() -> None:
    cache = dpop.ReplayCache(1_000)
    got = []
    for case in BINDING["cases"]:

        def prove(case: dict[str, Any] = case) -> str | None:
            if case["proof"] is None:
                return None
            return dpop.verify(case["proof"], case["method"], case["uri"], case["now"], cache, case["access_token"])

        try:
            binding.check(case["cnf"], case["scheme"], case["certificate"], prove)
            verdict = "ok"
        except binding.BindingError as e:
            verdict = f"dpop:{e.dpop.verdict}" if e.dpop is not None else e.verdict
        got.append((case["name"], verdict))
    assert got == [(c["name"], c["verdict"]) for c in BINDING["cases"]]


@pytest.mark.parametrize("case", REVOCATION["cases"], ids=[c["name"] for c in REVOCATION["cases"]])
def test_revocation_vector(case: dict[str, Any]) -> None:
    feed = RevocationSet()
    for entry in case["entries"]:
        feed.apply(entry)
    revoked = feed.revoked(case["claims"], case["kid"])
    assert ("ok" if revoked is None else f"revoked:{revoked}") == case["verdict"]


@pytest.mark.parametrize("case", REVOCATION["blocks"], ids=[c["name"] for c in REVOCATION["blocks"]])
def test_block_vector(case: dict[str, Any]) -> None:
    assert Entry.from_json(case["entry"]).blocks_at(case["now"]) is case["blocks"]


def test_the_vectors_cover_what_they_claim() -> None:
    verdicts = {c["verdict"] for c in TOKENS["cases"]}
    assert {"ok", "wrong_issuer", "wrong_audience", "expired", "not_yet_valid", "wrong_type", "algorithm",
            "unknown_key", "bad_signature", "malformed"} <= verdicts
    verdicts = {c["verdict"] for c in BINDING["cases"]}
    assert {"no_proof", "other_key", "dpop:method", "dpop:uri", "dpop:access_token_hash", "dpop:time",
            "dpop:replay"} <= verdicts
