#!/usr/bin/env python3
"""Figures for the Python client, on one core, against the real broker:

- Verifier.verify: writ tokens (ES256) verified per CPU-second of one
  core (process time, so other load on the machine does not count), with the
  revocation feed followed, beside the raw ``cryptography`` ES256 verify of
  the same token's signature in the same run;
- TokenSource.token() on a cached token: the time it adds per call.

    WRIT_BIN=target/debug/writ python3 clients/python/bench/bench.py [SECONDS]

It starts a broker in a temporary directory as the tests do
(clients/python/tests/conftest.py). Needs the package's test extras.
"""

from __future__ import annotations

import os
import pathlib
import ssl
import sys
import tempfile
import time
from typing import Callable

import httpx
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature

HERE = pathlib.Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

import writ  # noqa: E402
from writ import _jose  # noqa: E402
from tests.conftest import PEOPLE, Broker, Idp  # noqa: E402


def rate(call: Callable[[], object], seconds: float) -> tuple[float, float, int]:
    """Calls ``call`` for about ``seconds`` of this process's CPU time;
    returns calls per CPU-second (what one core does, however busy the
    machine), calls per wall-clock second, and the number of calls."""
    n = 0
    cpu, wall = time.process_time(), time.perf_counter()
    deadline = cpu + seconds
    while True:
        for _ in range(200):
            call()
        n += 200
        now = time.process_time()
        if now >= deadline:
            return n / (now - cpu), n / (time.perf_counter() - wall), n


def main() -> None:
    seconds = float(sys.argv[1]) if len(sys.argv) > 1 else 3.0
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {sorted(os.sched_getaffinity(0))[0]})
    with tempfile.TemporaryDirectory() as tmp:
        idp = Idp(pathlib.Path(tmp))
        broker = Broker(pathlib.Path(tmp) / "writ", idp)
        try:
            source = writ.TokenSource(broker.url, audience="payments-db", scopes="read",
                                      attestation=lambda: idp.token(PEOPLE, "bench@example.com"), ca=broker.ca)
            token = source.token().access_token
            with writ.Verifier(broker.url, "payments-db", ca=broker.ca, follow_revocations=True,
                               feed_credential=broker.admin_token) as verifier:
                verifier.verify(token)
                verify_rate, verify_wall, verify_n = rate(lambda: verifier.verify(token), seconds)

            # The same signature, verified by cryptography alone.
            header = _jose.decode_segment(token.split(".")[0]) or {}
            jwks = httpx.get(f"{broker.url}/jwks.json", verify=ssl.create_default_context(cafile=broker.ca)).json()
            jwk = next(k for k in jwks["keys"] if k["kid"] == header["kid"])
            key = _jose.public_key(jwk, "ES256")
            h, p, s = token.split(".")
            raw = _jose.b64url_decode(s) or b""
            der = encode_dss_signature(int.from_bytes(raw[:32], "big"), int.from_bytes(raw[32:], "big"))
            signing_input = f"{h}.{p}".encode()
            algorithm = ec.ECDSA(hashes.SHA256())
            raw_rate, raw_wall, raw_n = rate(lambda: key.verify(der, signing_input, algorithm), seconds)

            cached_rate, _, cached_n = rate(source.token, seconds)
            source.close()
        finally:
            broker.stop()
    print(f"Verifier.verify (ES256, feed followed): {verify_rate:,.0f} tokens per CPU-second "
          f"({verify_wall:,.0f}/s wall clock, {verify_n:,} calls)")
    print(f"cryptography ES256 verify, same token:  {raw_rate:,.0f} verifies per CPU-second "
          f"({raw_wall:,.0f}/s wall clock, {raw_n:,} calls)")
    print(f"TokenSource.token(), cached:            {1e6 / cached_rate:.2f} us of CPU per call ({cached_n:,} calls)")

if __name__ == "__main__":
    main()
