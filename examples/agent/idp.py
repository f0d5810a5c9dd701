#!/usr/bin/env python3
"""A stand-in identity provider for the agent example: it signs OIDC tokens
for people ("https://people.idp.example") and for AI agents
("https://agents.idp.example") with one RSA key. Standard library only;
signing shells out to the openssl command line (RS256 = RSA PKCS#1 v1.5
over SHA-256, what `openssl dgst -sha256 -sign` makes).

    python3 idp.py init DIR                      # key + JWKS (DIR/jwks.json)
    python3 idp.py token DIR ISSUER SUB [SECS]   # prints a signed JWT
"""

import base64
import json
import os
import subprocess
import sys
import time

PEOPLE = "https://people.idp.example"
AGENTS = "https://agents.idp.example"
ISSUERS = {"people": PEOPLE, "agents": AGENTS}


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def init(directory: str) -> None:
    os.makedirs(directory, exist_ok=True)
    key = os.path.join(directory, "idp-key.pem")
    if not os.path.exists(key):
        subprocess.run(
            ["openssl", "genpkey", "-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048", "-out", key],
            check=True,
            capture_output=True,
        )
        os.chmod(key, 0o600)
    modulus = subprocess.run(
        ["openssl", "rsa", "-in", key, "-noout", "-modulus"], check=True, capture_output=True, text=True
    ).stdout.strip().split("=", 1)[1]
    n = bytes.fromhex(modulus)
    jwk = {"kty": "RSA", "alg": "RS256", "use": "sig", "kid": "idp-1", "n": b64url(n), "e": "AQAB"}
    with open(os.path.join(directory, "jwks.json"), "w") as f:
        json.dump({"keys": [jwk]}, f)
    print(f"identity provider key and JWKS in {directory}")


def token(directory: str, issuer: str, sub: str, lifetime: int = 600) -> str:
    now = int(time.time())
    header = {"alg": "RS256", "typ": "JWT", "kid": "idp-1"}
    claims = {"iss": ISSUERS.get(issuer, issuer), "aud": "writ", "sub": sub, "iat": now, "nbf": now, "exp": now + lifetime}
    signing_input = f"{b64url(json.dumps(header).encode())}.{b64url(json.dumps(claims).encode())}"
    signature = subprocess.run(
        ["openssl", "dgst", "-sha256", "-sign", os.path.join(directory, "idp-key.pem")],
        input=signing_input.encode(),
        check=True,
        capture_output=True,
    ).stdout
    return f"{signing_input}.{b64url(signature)}"


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "init":
        init(sys.argv[2])
    elif len(sys.argv) in (5, 6) and sys.argv[1] == "token":
        print(token(sys.argv[2], sys.argv[3], sys.argv[4], *(int(a) for a in sys.argv[5:])))
    else:
        sys.exit(__doc__)
