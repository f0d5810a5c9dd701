"""TokenSource and AsyncTokenSource against the real broker: exchange,
caching and refresh, one exchange in flight, typed errors, backoff, DPoP,
delegation."""

from __future__ import annotations

import asyncio
import os
import pathlib
import stat
import threading
from typing import Any

import jwt as pyjwt
import pytest
from cryptography.hazmat.primitives.asymmetric import ec

import writ
from writ.source import REFRESH_AT

from .conftest import AGENTS, CI, PEOPLE, RESOURCE, Broker, FakeClock, Idp


def claims(token: str) -> dict[str, Any]:
    return pyjwt.decode(token, options={"verify_signature": False})


def test_a_file_attestation_is_exchanged_for_a_token_with_the_granted_scopes(
    broker: Broker, idp: Idp, tmp_path: pathlib.Path, user: str
) -> None:
    path = tmp_path / "user.jwt"
    path.write_text(idp.token(PEOPLE, user))
    with writ.TokenSource(broker.url, audience="payments-db", scopes=["read", "write"], attestation=path,
                          ca=broker.ca) as source:
        token = source.token()
    assert token.token_type == "Bearer"
    assert token.scope == "read write"
    c = claims(token.access_token)
    assert (c["sub"], c["aud"], c["iss"]) == (user, "payments-db", broker.url)
    assert "Token(" in repr(token) and token.access_token not in repr(token)


def test_a_callable_attestation_and_a_resource_indicator_name_the_target(broker: Broker, idp: Idp, user: str) -> None:
    source = writ.TokenSource(broker.url, resource=RESOURCE, scopes="read", attestation=lambda: idp.token(PEOPLE, user),
                              ca=broker.ca)
    assert claims(source.token().access_token)["aud"] == RESOURCE


def test_a_policy_refusal_is_denied_and_not_retryable(broker: Broker, idp: Idp, user: str) -> None:
    source = writ.TokenSource(broker.url, audience="payments-db", scopes="admin",
                              attestation=lambda: idp.token(PEOPLE, user), ca=broker.ca)
    with pytest.raises(writ.Denied) as refused:
        source.token()
    assert (refused.value.status, refused.value.error) == (403, "access_denied")
    assert refused.value.decision_id and not refused.value.retryable


def test_a_forged_attestation_is_denied_as_invalid_grant(broker: Broker, idp: Idp, user: str) -> None:
    forger = ec.generate_private_key(ec.SECP256R1())
    source = writ.TokenSource(broker.url, audience="payments-db", scopes="read",
                              attestation=lambda: idp.token(PEOPLE, user, key=forger), ca=broker.ca)
    with pytest.raises(writ.Denied) as refused:
        source.token()
    assert (refused.value.status, refused.value.error) == (400, "invalid_grant")


def test_a_missing_attestation_file_is_a_retryable_attestation_error(broker: Broker, tmp_path: pathlib.Path) -> None:
    source = writ.TokenSource(broker.url, audience="payments-db", scopes="read", attestation=tmp_path / "absent.jwt",
                              ca=broker.ca)
    with pytest.raises(writ.AttestationError) as failed:
        source.token()
    assert failed.value.retryable


def test_bad_configuration_is_refused_up_front(broker: Broker) -> None:
    with pytest.raises(writ.ConfigError):
        writ.TokenSource("http://127.0.0.1:1", audience="a", scopes="read", attestation=lambda: "t")
    with pytest.raises(writ.ConfigError):
        writ.TokenSource(broker.url, scopes="read", attestation=lambda: "t", ca=broker.ca)
    with pytest.raises(writ.ConfigError):
        writ.TokenSource(broker.url, audience="a", scopes="read", attestation=lambda: "t", ca="/nonexistent/ca.pem")


def test_a_cached_token_is_reused_until_80_percent_of_its_life_then_refreshed(
    broker: Broker, idp: Idp, user: str
) -> None:
    clock = FakeClock()
    source = writ.TokenSource(broker.url, audience="payments-db", scopes="read", requested_ttl=100,
                              attestation=lambda: idp.token(PEOPLE, user), ca=broker.ca, clock=clock)
    first = source.token()
    assert first.expires_in == 100
    clock.advance(100 * REFRESH_AT - 1)
    assert source.token() is first and source.exchanges == 1
    clock.advance(2)
    second = source.token()
    assert second.access_token != first.access_token and source.exchanges == 2


def test_many_threads_asking_at_once_cause_one_exchange(broker: Broker, idp: Idp, user: str) -> None:
    source = writ.TokenSource(broker.url, audience="payments-db", scopes="read",
                              attestation=lambda: idp.token(PEOPLE, user), ca=broker.ca)
    barrier = threading.Barrier(8)
    tokens: list[str] = []

    def ask() -> None:
        barrier.wait()
        tokens.append(source.token().access_token)

    threads = [threading.Thread(target=ask) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(tokens) == 8 and len(set(tokens)) == 1
    assert source.exchanges == 1


def test_an_unreachable_broker_is_retryable_backs_off_and_keeps_a_valid_token(
    own_broker: Broker, idp: Idp, user: str
) -> None:
    clock = FakeClock()
    source = writ.TokenSource(own_broker.url, audience="payments-db", scopes="read", requested_ttl=300,
                              attestation=lambda: idp.token(PEOPLE, user), ca=own_broker.ca, clock=clock)
    held = source.token()
    own_broker.stop()
    clock.advance(300 * REFRESH_AT + 1)  # due for refresh, still valid
    assert source.token() is held, "a still-valid token is returned while the broker is down"
    exchanges = source.exchanges
    assert source.token() is held and source.exchanges == exchanges, "no new attempt inside the backoff"
    clock.advance(300)  # expired now
    with pytest.raises(writ.Unavailable) as down:
        source.token()
    assert down.value.retryable
    own_broker.start()
    clock.advance(31)  # past the longest backoff
    assert source.token().access_token != held.access_token


def test_a_503_from_the_broker_is_unavailable_with_its_retry_after(tmp_path: pathlib.Path, idp: Idp, user: str) -> None:
    broker = Broker(tmp_path / "writ", idp, extra_tokens="dpop_replay_cache = 1")
    try:
        first = writ.TokenSource(broker.url, audience="payments-db", scopes="read", dpop=writ.DpopKey.generate(),
                                 attestation=lambda: idp.token(PEOPLE, user), ca=broker.ca)
        assert first.token().token_type == "DPoP"
        second = writ.TokenSource(broker.url, audience="payments-db", scopes="read", dpop=writ.DpopKey.generate(),
                                  attestation=lambda: idp.token(PEOPLE, user), ca=broker.ca)
        with pytest.raises(writ.Unavailable) as busy:
            second.token()
        assert busy.value.retryable and "503" in str(busy.value)
        assert busy.value.retry_after is not None and busy.value.retry_after > 0
        exchanges = second.exchanges
        with pytest.raises(writ.Unavailable):
            second.token()
        assert second.exchanges == exchanges, "backing off, the broker is not asked again"
    finally:
        broker.stop()


def test_a_dpop_source_gets_tokens_bound_to_its_key(broker: Broker, idp: Idp, user: str, tmp_path: pathlib.Path) -> None:
    key = writ.DpopKey.generate()
    source = writ.TokenSource(broker.url, audience="payments-db", scopes="read", dpop=key,
                              attestation=lambda: idp.token(PEOPLE, user), ca=broker.ca)
    token = source.token()
    assert token.token_type == "DPoP"
    assert claims(token.access_token)["cnf"] == {"jkt": key.thumbprint}
    headers = source.authorization("GET", "https://rs.test/orders?page=2")
    assert headers["Authorization"] == f"DPoP {token.access_token}"
    proof = claims(headers["DPoP"])
    assert proof["htu"] == "https://rs.test/orders" and proof["htm"] == "GET" and "ath" in proof
    saved = tmp_path / "dpop-key.pem"
    key.save(saved)
    assert stat.S_IMODE(os.stat(saved).st_mode) == 0o600
    assert writ.DpopKey.load(saved).thumbprint == key.thumbprint
    with pytest.raises(FileExistsError):
        key.save(saved)


def test_an_agent_acts_for_a_user_with_its_own_attestation_as_actor_token(
    broker: Broker, idp: Idp, user: str, agent: str
) -> None:
    assistant = writ.TokenSource(broker.url, audience="payments-db", scopes="read",
                                 attestation=lambda: idp.token(AGENTS, agent), ca=broker.ca)
    for_user = assistant.act_for(idp.token(PEOPLE, user))
    c = claims(for_user.token().access_token)
    assert (c["sub"], c["client_id"], c["act"]["sub"]) == (user, agent, agent)


def test_an_agent_acting_for_a_user_is_refused_a_write_by_policy(
    broker: Broker, idp: Idp, user: str, agent: str
) -> None:
    assistant = writ.TokenSource(broker.url, audience="payments-db", scopes="read",
                                 attestation=lambda: idp.token(AGENTS, agent), ca=broker.ca)
    with pytest.raises(writ.Denied) as refused:
        assistant.act_for(idp.token(PEOPLE, user), scopes="write").token()
    assert refused.value.error == "access_denied" and "agents-never-write-for-others" in refused.value.description


def test_client_credentials_over_mtls_bind_the_token_to_the_certificate(broker: Broker) -> None:
    source = writ.TokenSource(broker.url, audience="payments-db", scopes="read", client_credentials=True,
                              cert=broker.client_cert, ca=broker.ca)
    c = claims(source.token().access_token)
    assert c["attestation"] == "mtls" and "x5t#S256" in c["cnf"]


def test_the_async_source_exchanges_once_for_many_tasks(broker: Broker, idp: Idp, user: str) -> None:
    async def run() -> tuple[list[str], int]:
        async def attest() -> str:
            return idp.token(CI, f"ci-{user}")

        source = writ.AsyncTokenSource(broker.url, audience="payments-db", scopes="read", attestation=attest,
                                       ca=broker.ca)
        tokens = await asyncio.gather(*(source.token() for _ in range(8)))
        await source.aclose()
        return [t.access_token for t in tokens], source.exchanges

    tokens, exchanges = asyncio.run(run())
    assert len(set(tokens)) == 1 and exchanges == 1


def test_the_async_source_raises_the_same_typed_errors(broker: Broker, idp: Idp, user: str) -> None:
    async def run() -> None:
        source = writ.AsyncTokenSource(broker.url, audience="payments-db", scopes="admin",
                                       attestation=lambda: idp.token(PEOPLE, user), ca=broker.ca)
        try:
            await source.token()
        finally:
            await source.aclose()

    with pytest.raises(writ.Denied):
        asyncio.run(run())
