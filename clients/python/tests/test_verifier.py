"""The Verifier against the real broker: keys from the metadata, writ's
checks, DPoP and mTLS binding, the revocation feed (real revocations with
``writ revoke``) and failing closed when it goes silent."""

from __future__ import annotations

import json
import ssl
import time
from typing import Any

import httpx
import jwt as pyjwt
import pytest
from cryptography.hazmat.primitives.asymmetric import ec

import writ
from writ.verifier import Presented

from .conftest import AGENTS, CI, PEOPLE, Broker, FakeClock, Idp, wait_until


def user_source(broker: Broker, idp: Idp, user: str, **kw: Any) -> writ.TokenSource:
    kw.setdefault("scopes", "read")
    return writ.TokenSource(broker.url, audience="payments-db", attestation=lambda: idp.token(PEOPLE, user),
                            ca=broker.ca, **kw)


@pytest.fixture(scope="module")
def verifier(broker: Broker) -> Any:
    v = writ.Verifier(broker.url, "payments-db", ca=broker.ca, follow_revocations=True,
                      feed_credential=broker.admin_token)
    yield v
    v.close()


def test_a_minted_token_verifies_with_keys_from_the_metadata(verifier: writ.Verifier, broker: Broker, idp: Idp,
                                                             user: str) -> None:
    token = user_source(broker, idp, user, scopes="read write").token().access_token
    v = verifier.verify(token)
    assert (v.subject, v.client_id, v.scopes) == (user, user, ("read", "write"))
    assert verifier.issuer == broker.url


def test_a_forged_token_under_the_brokers_kid_is_refused(verifier: writ.Verifier, broker: Broker, idp: Idp,
                                                         user: str) -> None:
    real = user_source(broker, idp, user).token().access_token
    header = pyjwt.get_unverified_header(real)
    forged = pyjwt.encode(pyjwt.decode(real, options={"verify_signature": False}) | {"scope": "read write"},
                          ec.generate_private_key(ec.SECP256R1()), algorithm="ES256", headers=header)
    with pytest.raises(writ.VerifyError) as refused:
        verifier.verify(forged)
    assert refused.value.code == "signature"


def test_a_token_for_another_audience_or_past_its_exp_is_refused(broker: Broker, idp: Idp, user: str,
                                                                  verifier: writ.Verifier) -> None:
    other = writ.Verifier(broker.url, "https://rs.test/mcp", ca=broker.ca)
    token = user_source(broker, idp, user).token().access_token
    with pytest.raises(writ.VerifyError) as refused:
        other.verify(token)
    assert refused.value.code == "audience"
    exp = pyjwt.decode(token, options={"verify_signature": False})["exp"]
    with pytest.raises(writ.VerifyError) as expired:
        verifier.verify_presented(Presented(token=token), now=exp + verifier.leeway)
    assert expired.value.code == "expired"
    other.close()


def test_required_scopes_are_enforced(broker: Broker, idp: Idp, user: str) -> None:
    with writ.Verifier(broker.url, "payments-db", ca=broker.ca, required_scopes=["write"]) as v:
        with pytest.raises(writ.MissingScope) as missing:
            v.verify(user_source(broker, idp, user).token().access_token)
        assert missing.value.scope == "write"
        assert v.verify(user_source(broker, idp, user, scopes="read write").token().access_token)


def test_a_dpop_bound_token_needs_a_fresh_proof_of_its_key(verifier: writ.Verifier, broker: Broker, idp: Idp,
                                                           user: str) -> None:
    key = writ.DpopKey.generate()
    source = user_source(broker, idp, user, dpop=key)
    token = source.token().access_token
    url = "https://rs.test/orders"
    proof = key.proof("GET", url, token)
    presented = Presented(token=token, scheme="DPoP", dpop_proof=proof, method="GET", url=url)
    assert verifier.verify_presented(presented).subject == user
    with pytest.raises(writ.InvalidDpopProof) as replayed:
        verifier.verify_presented(presented)
    assert replayed.value.reason == "replay"
    with pytest.raises(writ.VerifyError) as bare:
        verifier.verify(token)
    assert bare.value.code == "key_binding"
    thief = writ.DpopKey.generate()
    with pytest.raises(writ.VerifyError) as stolen:
        verifier.verify_presented(Presented(token=token, scheme="DPoP", dpop_proof=thief.proof("GET", url, token),
                                            method="GET", url=url))
    assert stolen.value.code == "key_binding"
    with pytest.raises(writ.InvalidDpopProof) as elsewhere:
        verifier.verify_presented(Presented(token=token, scheme="DPoP", dpop_proof=key.proof("GET", url, token),
                                            method="GET", url="https://rs.test/admin"))
    assert elsewhere.value.reason == "uri"


def test_a_certificate_bound_token_needs_its_certificate(verifier: writ.Verifier, broker: Broker) -> None:
    source = writ.TokenSource(broker.url, audience="payments-db", scopes="read", client_credentials=True,
                              cert=broker.client_cert, ca=broker.ca)
    token = source.token().access_token
    der = writ.verifier.pem_to_der(open(broker.client_cert[0]).read())
    other = writ.verifier.pem_to_der(open(broker.other_client_cert[0]).read())
    assert verifier.verify_presented(Presented(token=token, client_certificate=der)).subject.startswith("spiffe://")
    for certificate in (None, other):
        with pytest.raises(writ.VerifyError) as refused:
            verifier.verify_presented(Presented(token=token, client_certificate=certificate))
        assert refused.value.code == "key_binding"


def test_a_revoked_subject_is_refused_within_the_feed_and_later_tokens_are_not(
    verifier: writ.Verifier, broker: Broker, idp: Idp, user: str
) -> None:
    source = user_source(broker, idp, user)
    token = source.token().access_token
    assert verifier.verify(token)
    before = verifier.revocations
    entry, effective_at = broker.revoke_at("--subject", user)
    wait_until(lambda: verifier.revocations > before, what="the entry on the feed")
    with pytest.raises(writ.Revoked) as revoked:
        verifier.verify(token)
    assert revoked.value.entry == entry and revoked.value.code == "revoked"
    # A token issued after the entry (iat counts seconds) is not revoked by it.
    wait_until(lambda: time.time() >= effective_at + 1, what="the next second")
    source.invalidate()
    assert verifier.verify(source.token().access_token).subject == user


def test_killing_an_agent_stops_its_delegated_tokens_and_not_the_users_own(
    verifier: writ.Verifier, broker: Broker, idp: Idp, user: str, agent: str
) -> None:
    assistant = writ.TokenSource(broker.url, audience="payments-db", scopes="read",
                                 attestation=lambda: idp.token(AGENTS, agent), ca=broker.ca)
    acting = assistant.act_for(idp.token(PEOPLE, user))
    delegated = acting.token().access_token
    own = user_source(broker, idp, user).token().access_token
    assert verifier.verify(delegated).actors == (agent,)
    before = verifier.revocations
    entry = broker.revoke("--actor", agent, "--block")
    wait_until(lambda: verifier.revocations > before, what="the entry on the feed")
    with pytest.raises(writ.Revoked):
        verifier.verify(delegated)
    assert verifier.verify(own).subject == user
    acting.invalidate()
    with pytest.raises(writ.Denied) as blocked:
        acting.token()
    assert "kill switch" in blocked.value.description and entry[:8] in blocked.value.description


def test_the_feed_can_be_followed_with_a_workload_token_for_the_broker(broker: Broker, idp: Idp, user: str) -> None:
    follower = writ.TokenSource(broker.url, audience=broker.url, scopes="revocations.read",
                                attestation=lambda: idp.token(CI, "feed-follower"), ca=broker.ca)
    with writ.Verifier(broker.url, "payments-db", ca=broker.ca, follow_revocations=True,
                       feed_credential=follower) as v:
        token = user_source(broker, idp, user).token().access_token
        before = v.revocations
        broker.revoke("--jti", pyjwt.decode(token, options={"verify_signature": False})["jti"])
        wait_until(lambda: v.revocations > before, what="the entry on the feed")
        with pytest.raises(writ.Revoked):
            v.verify(token)


def test_the_feed_refuses_a_follower_without_a_credential(broker: Broker) -> None:
    with pytest.raises(writ.Unavailable) as refused:
        writ.Verifier(broker.url, "payments-db", ca=broker.ca, follow_revocations=True)
    assert "401" in str(refused.value)


def test_a_silent_feed_fails_closed(own_broker: Broker, idp: Idp, user: str) -> None:
    clock = FakeClock()
    token = user_source(own_broker, idp, user).token().access_token
    with writ.Verifier(own_broker.url, "payments-db", ca=own_broker.ca, follow_revocations=True,
                       feed_credential=own_broker.admin_token, max_feed_silence=60, clock=clock) as v:
        assert v.verify(token)
        wait_until(lambda: v.feed_connected, what="the stream")
        own_broker.stop()
        wait_until(lambda: not v.feed_connected, what="the stream to break")
        clock.advance(61)
        with pytest.raises(writ.FeedStale) as stale:
            v.verify(token)
        assert stale.value.code == "feed_stale"


def test_the_revocation_entries_on_the_feed_carry_no_reason(broker: Broker, user: str) -> None:
    broker.revoke("--subject", user)
    page = httpx.get(f"{broker.url}/v1/revocations?since=0", verify=ssl.create_default_context(cafile=broker.ca),
                     headers={"Authorization": f"Bearer {broker.admin_token}"}).json()
    assert page["entries"] and all("reason" not in e for e in page["entries"])
    assert json.dumps(page).count(user) >= 1
