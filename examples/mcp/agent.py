#!/usr/bin/env python3
"""An AI agent using an MCP tool server for a person, through writ.

1. It calls the tool server with no token: the 401 names the server's
   RFC 9728 metadata, which names writ (discovery).
2. It asks writ for a DPoP-bound token for that server acting for alice:
   alice's token is the `subject_token`, the agent's own attestation the
   `actor_token` (RFC 8693), with scope read.
3. It calls the `balance` tool (MCP, streamable HTTP).
4. It calls `transfer`: the server answers 403 insufficient_scope
   (scope "read write"); the agent asks writ to step up and policy refuses.
5. It keeps calling `balance` until the tool refuses its token (the kill
   switch), asks writ for a new one, is refused, and exits 3.

    python3 agent.py --tool https://127.0.0.1:8444/mcp --ca certs/ca.pem \\
        --user-token-file alice.jwt --agent-token-file agent.jwt [--calls N]
    python3 agent.py --tool ... --ca ... --user-token-file alice.jwt --own
        (alice's own token, no agent: one balance call)
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import ssl
import sys
from typing import Any, AsyncIterator

import httpx
from mcp import ClientSession
from mcp.client.streamable_http import streamablehttp_client

import writ


def claims(token: str) -> dict[str, Any]:
    payload = token.split(".")[1]
    return json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))


def challenge_params(value: str) -> dict[str, str]:
    """The quoted parameters of a WWW-Authenticate value."""
    out: dict[str, str] = {}
    for part in value.split(" ", 1)[-1].split(", "):
        name, _, quoted = part.partition("=")
        out[name.strip()] = quoted.strip().strip('"')
    return out


async def discover(tool: str, tls: ssl.SSLContext, who: str) -> tuple[str, str]:
    """The resource and its authorization server, from the 401 and RFC 9728."""
    async with httpx.AsyncClient(verify=tls) as client:
        probe = await client.post(tool, json={"jsonrpc": "2.0", "id": 0, "method": "ping"})
        metadata_url = challenge_params(probe.headers.get("www-authenticate", "")).get("resource_metadata")
        if probe.status_code != 401 or not metadata_url:
            sys.exit(f"{who}: expected a 401 naming resource_metadata, got {probe.status_code}")
        metadata = (await client.get(metadata_url)).json()
    print(f"{who}: the tool answered 401; {metadata_url} names writ at {metadata['authorization_servers'][0]} "
          f"for resource {metadata['resource']}")
    return metadata["resource"], metadata["authorization_servers"][0]


class Watch(httpx.Auth):
    """writ's auth (token and DPoP proof per request), noting a refusal:
    the MCP client does not surface HTTP statuses to the caller."""

    def __init__(self, inner: httpx.Auth) -> None:
        self.inner = inner
        self.refused: asyncio.Future[tuple[int, str, str]] | None = None

    async def async_auth_flow(self, request: httpx.Request) -> AsyncIterator[httpx.Request]:  # type: ignore[override]
        flow = self.inner.async_auth_flow(request)
        outgoing = await flow.__anext__()
        while True:
            response = yield outgoing
            try:
                outgoing = await flow.asend(response)
            except StopAsyncIteration:
                break
        if response.status_code in (401, 403) and self.refused is not None and not self.refused.done():
            await response.aread()
            self.refused.set_result(
                (response.status_code, response.headers.get("www-authenticate", ""), response.text.strip())
            )


async def call(tool: str, tls: ssl.SSLContext, auth: Watch, name: str, arguments: dict[str, Any]) -> str | tuple[int, str, str]:
    """One tool call in its own MCP session: the result text, or the HTTP refusal."""
    auth.refused = asyncio.get_running_loop().create_future()

    async def session() -> str:
        factory = lambda headers=None, timeout=None, auth=None: httpx.AsyncClient(  # noqa: E731
            verify=tls, headers=headers, timeout=timeout, auth=auth
        )
        async with streamablehttp_client(tool, auth=auth, httpx_client_factory=factory,
                                         terminate_on_close=False) as (read, write, _):
            async with ClientSession(read, write) as s:
                await s.initialize()
                result = await s.call_tool(name, arguments)
                return " ".join(getattr(c, "text", "") for c in result.content)

    task = asyncio.ensure_future(session())
    done, _ = await asyncio.wait({task, auth.refused}, return_when=asyncio.FIRST_COMPLETED)
    if auth.refused in done:
        task.cancel()
        try:
            await task
        except BaseException:  # the cancelled session; its error is the refusal already noted
            pass
        return auth.refused.result()
    return task.result()


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tool", required=True, help="the MCP endpoint, e.g. https://127.0.0.1:8444/mcp")
    parser.add_argument("--ca", required=True)
    parser.add_argument("--user-token-file", required=True)
    parser.add_argument("--agent-token-file")
    parser.add_argument("--own", action="store_true", help="call once with the user's own token, no agent")
    parser.add_argument("--calls", type=int, default=120, help="balance calls to make, two a second")
    args = parser.parse_args()
    tls = ssl.create_default_context(cafile=args.ca)
    resource, broker = await discover(args.tool, tls, "alice" if args.own else "agent")

    if args.own:
        own = writ.AsyncTokenSource(broker, resource=resource, scopes="read", attestation=args.user_token_file,
                                    ca=args.ca)
        answer = await call(args.tool, tls, Watch(own.auth()), "balance", {"account": "alice-main"})
        print(f"alice herself: tool answered: {answer}")
        return

    agent = writ.AsyncTokenSource(broker, resource=resource, scopes="read", attestation=args.agent_token_file,
                                  ca=args.ca, dpop=writ.DpopKey.generate())
    acting = agent.act_for(lambda: open(args.user_token_file).read().strip())
    token = await acting.token()
    c = claims(token.access_token)
    print(f"agent: writ granted {token.scope!r} on {c['aud']} for {c['sub']}, acting as {c['act']['sub']}, "
          f"{token.token_type}-bound to {c['cnf']['jkt'][:12]}…, for {token.expires_in} s")
    auth = Watch(acting.auth())

    answer = await call(args.tool, tls, auth, "balance", {"account": "alice-main"})
    print(f"agent: tool balance answered: {answer}")

    refused = await call(args.tool, tls, auth, "transfer", {"to": "mallory", "amount": 1000})
    if not isinstance(refused, tuple) or refused[0] != 403:
        sys.exit(f"agent: expected transfer to need a step-up, got {refused}")
    wanted = challenge_params(refused[1]).get("scope", "").split()
    missing = " ".join(s for s in wanted if s not in token.scope.split())
    print(f"agent: tool transfer refused 403 insufficient_scope: it needs scope {' '.join(wanted)!r}; "
          f"asking writ for {missing!r}")
    try:
        await agent.act_for(lambda: open(args.user_token_file).read().strip(), scopes=missing).token()
        sys.exit("agent: writ granted a write for alice; the policy should refuse it")
    except writ.Denied as e:
        print(f"agent: writ refused the step-up: {e.status} {e.error}: {e.description}")

    for _ in range(args.calls):
        answer = await call(args.tool, tls, auth, "balance", {"account": "alice-main"})
        if isinstance(answer, tuple):
            print(f"agent: tool refused {answer[0]}: {answer[2]}")
            print("agent: the tool no longer accepts my token; asking writ for a new one")
            acting.invalidate()
            try:
                await acting.token()
            except writ.Denied as e:
                print(f"agent: writ refused: {e.status} {e.error}: {e.description}")
                sys.exit(3)
            sys.exit("agent: writ granted a new token after the kill switch")
        print(f"agent: tool answered 200: {answer}", flush=True)
        await asyncio.sleep(0.5)
    sys.exit("agent: never stopped")


if __name__ == "__main__":
    asyncio.run(main())
