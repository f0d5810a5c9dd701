#!/usr/bin/env python3
"""Verify a writ access token with PyJWT, using nothing but the broker's
RFC 8414 metadata and its JWKS: proof that any standard JWT library can.

usage: verify_with_pyjwt.py ISSUER_URL CA_PEM AUDIENCE TOKEN
needs: pip install pyjwt cryptography
exit:  0 and the claims on stdout when valid, 1 with the reason otherwise
"""
import json
import ssl
import sys
import urllib.request

import jwt


def main() -> int:
    issuer, ca, audience, token = sys.argv[1:5]
    ctx = ssl.create_default_context(cafile=ca)
    with urllib.request.urlopen(issuer + "/.well-known/oauth-authorization-server", context=ctx) as resp:
        meta = json.load(resp)
    try:
        if jwt.get_unverified_header(token).get("typ") != "at+jwt":
            raise jwt.InvalidTokenError("typ is not at+jwt (RFC 9068)")
        key = jwt.PyJWKClient(meta["jwks_uri"], ssl_context=ctx).get_signing_key_from_jwt(token)
        claims = jwt.decode(
            token,
            key.key,
            algorithms=["ES256", "EdDSA"],
            audience=audience,
            issuer=meta["issuer"],
            options={"require": ["exp", "iat", "iss", "aud", "sub", "jti"]},
        )
    except jwt.PyJWTError as e:
        print(f"invalid: {e}", file=sys.stderr)
        return 1
    print(json.dumps(claims, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
