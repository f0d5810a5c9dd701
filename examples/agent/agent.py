#!/usr/bin/env python3
"""An AI agent acting for a person, with nothing but the standard library.

It holds two credentials, neither a standing secret: its own OIDC token
(from the agent platform) and the token of the person it works for. It
exchanges both at writ (RFC 8693: subject_token = the person, actor_token =
the agent) for a short-lived token for one tool, then calls the tool with it
every second. When an operator pulls the kill switch on the agent, the tool
refuses the token (it follows writ's revocation feed), the agent asks writ
for a new one and is refused too, and it stops.

    python3 agent.py --broker https://127.0.0.1:8443 --ca certs/ca.pem \\
        --tool http://127.0.0.1:8080/balance \\
        --user-token-file alice.jwt --agent-token-file agent.jwt [--calls N]
"""

import argparse
import base64
import json
import ssl
import sys
import time
import urllib.error
import urllib.parse
import urllib.request

TOKEN_EXCHANGE = "urn:ietf:params:oauth:grant-type:token-exchange"
JWT = "urn:ietf:params:oauth:token-type:jwt"


def claims(token: str) -> dict:
    payload = token.split(".")[1]
    return json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))


def exchange(args, tls) -> str:
    form = urllib.parse.urlencode(
        {
            "grant_type": TOKEN_EXCHANGE,
            "subject_token": open(args.user_token_file).read().strip(),
            "subject_token_type": JWT,
            "actor_token": open(args.agent_token_file).read().strip(),
            "actor_token_type": JWT,
            "audience": args.audience,
            "scope": args.scope,
        }
    ).encode()
    request = urllib.request.Request(f"{args.broker}/oauth2/token", data=form, method="POST")
    try:
        with urllib.request.urlopen(request, context=tls, timeout=10) as response:
            body = json.load(response)
    except urllib.error.HTTPError as refused:
        error = json.load(refused)
        print(f"agent: writ refused: {refused.code} {error['error']}: {error['error_description']}")
        sys.exit(3)
    token = body["access_token"]
    c = claims(token)
    print(f"agent: writ granted {body['scope']!r} on {c['aud']} for {c['sub']}, acting as {c['act']['sub']}, "
          f"for {body['expires_in']} s")
    return token


def call_tool(args, token: str) -> int:
    request = urllib.request.Request(args.tool, headers={"Authorization": f"Bearer {token}"})
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            print(f"agent: tool answered {response.status}: {response.read().decode().strip()}")
            return response.status
    except urllib.error.HTTPError as refused:
        print(f"agent: tool refused {refused.code}: {refused.read().decode().strip()}")
        return refused.code


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--broker", default="https://127.0.0.1:8443")
    parser.add_argument("--ca", default="certs/ca.pem")
    parser.add_argument("--tool", default="http://127.0.0.1:8080/balance")
    parser.add_argument("--audience", default="payments-db")
    parser.add_argument("--scope", default="read")
    parser.add_argument("--user-token-file", required=True)
    parser.add_argument("--agent-token-file", required=True)
    parser.add_argument("--calls", type=int, default=60, help="calls to make, one a second")
    args = parser.parse_args()
    tls = ssl.create_default_context(cafile=args.ca)

    token = exchange(args, tls)
    for _ in range(args.calls):
        if call_tool(args, token) != 200:
            print("agent: the tool no longer accepts my token; asking writ for a new one")
            exchange(args, tls)  # exits when refused
            return
        time.sleep(1)


if __name__ == "__main__":
    main()
