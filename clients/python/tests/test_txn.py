"""Transaction tokens against the real broker: the Verifier checks one from
the ``Txn-Token`` header as writ-proto does (never an access token in its
place, nor the reverse), follows the kill switch for it, and the ASGI
middleware hands its claims to the tool."""

from __future__ import annotations

import base64
import json
import ssl
from typing import Any

import httpx
import jwt as pyjwt
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

import writ
from writ import txn
from writ.asgi import RequireToken, transaction

from .conftest import PEOPLE, RESOURCE, TRUST_DOMAIN, Broker, Idp, wait_until
from .test_asgi import ORIGIN, call, sync_token

TOKEN_EXCHANGE = "urn:ietf:params:oauth:grant-type:token-exchange"


def txn_token(broker: Broker, idp: Idp, user: str, details: dict[str, Any] | None = None) -> str:
    form = {
        "grant_type": TOKEN_EXCHANGE,
        "requested_token_type": txn.TOKEN_TYPE,
        "subject_token": idp.token(PEOPLE, user),
        "subject_token_type": writ.JWT,
        "audience": TRUST_DOMAIN,
        "scope": "checkout",
    }
    if details is not None:
        form["request_details"] = json.dumps(details)
    reply = httpx.post(f"{broker.url}/oauth2/token", data=form, verify=ssl.create_default_context(cafile=broker.ca))
    assert reply.status_code == 200, reply.text
    assert reply.json()["issued_token_type"] == txn.TOKEN_TYPE
    return str(reply.json()["access_token"])


@pytest.fixture(scope="module")
def verifier(broker: Broker) -> Any:
    v = writ.Verifier(broker.url, RESOURCE, ca=broker.ca, follow_revocations=True,
                      feed_credential=broker.admin_token)
    yield v
    v.close()


def test_a_txn_token_verifies_for_the_trust_domain(verifier: writ.Verifier, broker: Broker, idp: Idp,
                                                    user: str) -> None:
    token = txn_token(broker, idp, user, {"order": "o-17"})
    claims = verifier.verify_txn(token, TRUST_DOMAIN)
    assert claims["sub"] == user
    assert txn.purposes(claims) == ["checkout"]
    assert txn.requesting_workloads(claims) == [user]
    assert claims["tctx"] == {"order": "o-17"}


def test_neither_token_passes_for_the_other_nor_for_another_domain(verifier: writ.Verifier, broker: Broker,
                                                                   idp: Idp, user: str) -> None:
    token = txn_token(broker, idp, user)
    access = sync_token(broker, idp, user)
    with pytest.raises(writ.VerifyError) as e:
        verifier.verify(token)
    assert e.value.code == "malformed"
    with pytest.raises(writ.VerifyError) as e:
        verifier.verify_txn(access, TRUST_DOMAIN)
    assert e.value.code == "malformed"
    with pytest.raises(writ.VerifyError) as e:
        verifier.verify_txn(token, "other.local")
    assert e.value.code == "audience"
    # Claims changed after signing.
    header, _, signature = token.split(".")
    changed = {**pyjwt.decode(token, options={"verify_signature": False}), "sub": "root"}
    forged_claims = base64.urlsafe_b64encode(json.dumps(changed).encode()).rstrip(b"=").decode()
    with pytest.raises(writ.VerifyError) as e:
        verifier.verify_txn(f"{header}.{forged_claims}.{signature}", TRUST_DOMAIN)
    assert e.value.code == "signature"


def test_blocking_the_subject_revokes_its_txn_tokens(verifier: writ.Verifier, broker: Broker, idp: Idp,
                                                      user: str) -> None:
    token = txn_token(broker, idp, user)
    verifier.verify_txn(token, TRUST_DOMAIN)
    entry = broker.revoke("--subject", user, "--block")

    def refused() -> bool:
        try:
            verifier.verify_txn(token, TRUST_DOMAIN)
        except writ.Revoked as e:
            return str(entry) in str(e)
        return False

    wait_until(refused, what="the verifier to refuse the revoked txn token")


async def chain(request: Request) -> JSONResponse:
    claims = transaction(request)
    if claims is None:
        return JSONResponse({"transaction": None})
    return JSONResponse({"transaction": claims["txn"], "sub": claims["sub"]})


def test_the_middleware_reads_the_txn_token_header(verifier: writ.Verifier, broker: Broker, idp: Idp,
                                                  user: str) -> None:
    app = Starlette(routes=[Route("/mcp", chain, methods=["GET", "POST"])])
    app.add_middleware(RequireToken, verifier=verifier, origin=ORIGIN, txn_trust_domain=TRUST_DOMAIN)
    access = sync_token(broker, idp, user)
    token = txn_token(broker, idp, user)
    bearer = {"Authorization": f"Bearer {access}"}
    with_txn = call(app, headers={**bearer, "Txn-Token": token})
    assert with_txn.status_code == 200, with_txn.text
    assert with_txn.json()["sub"] == user
    assert call(app, headers=bearer).json() == {"transaction": None}
    refused = call(app, headers={**bearer, "Txn-Token": access})
    assert refused.status_code == 401
    assert 'error="invalid_token"' in refused.headers["www-authenticate"]
