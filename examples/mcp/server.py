#!/usr/bin/env python3
"""A payments tool server for AI agents: an MCP server (the official `mcp`
SDK, streamable HTTP) guarded by writ's ASGI middleware.

- Every request needs a writ token for this server (its `aud` is the
  server's URL, RFC 8707) with scope `read`; the server publishes RFC 9728
  metadata naming writ, so a client discovers where to get one from the 401.
- The `transfer` tool also needs `write`: without it the call is refused
  with 403 `insufficient_scope, scope="read write"` (MCP step-up).
- It follows writ's revocation feed: a kill-switch entry stops a token here
  within the feed's latency, and a silent feed fails closed.

    python3 server.py --writ https://127.0.0.1:8443 --ca certs/ca.pem \\
        --listen 127.0.0.1:8444 --cert certs/server.pem --key certs/server-key.pem

The feed credential is read from WRIT_FEED_TOKEN (an admin token here).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
from typing import Any

import uvicorn
from mcp.server.fastmcp import Context, FastMCP

import writ
from writ.asgi import RequireToken, verified

WRITE_TOOLS = {"transfer"}

mcp = FastMCP("payments", stateless_http=True, json_response=True)


def caller(ctx: Context) -> writ.Verified:  # type: ignore[type-arg]
    """The token writ's middleware verified for this call."""
    return verified(ctx.request_context.request)


@mcp.tool()
def balance(account: str, ctx: Context) -> str:  # type: ignore[type-arg]
    """The balance of a payments account."""
    token = caller(ctx)
    acting = f", {token.actors[0]} acting" if token.actors else ""
    return f"balance of {account} for {token.subject}{acting}: 1,234.56 EUR (scopes: {' '.join(token.scopes)})"


@mcp.tool()
def transfer(to: str, amount: float, ctx: Context) -> str:  # type: ignore[type-arg]
    """Moves money: needs scope write."""
    token = caller(ctx)
    return f"transferred {amount:.2f} EUR to {to} for {token.subject}"


class StepUp:
    """Refuses a `tools/call` of a write tool with 403 insufficient_scope
    unless the verified token grants `write` (inside writ's middleware)."""

    def __init__(self, app: Any) -> None:
        self.app = app
        self.guard: RequireToken | None = None

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http" or scope.get("method") != "POST":
            await self.app(scope, receive, send)
            return
        messages, body, more = [], b"", True
        while more:
            message = await receive()
            messages.append(message)
            body += message.get("body", b"")
            more = message.get("more_body", False)
        try:
            rpc = json.loads(body)
        except ValueError:
            rpc = None
        wants_write = (
            isinstance(rpc, dict)
            and rpc.get("method") == "tools/call"
            and isinstance(rpc.get("params"), dict)
            and rpc["params"].get("name") in WRITE_TOOLS
        )
        if wants_write and "write" not in verified(scope).scopes and self.guard is not None:
            challenge = self.guard.challenge(False, [("error", "insufficient_scope"), ("scope", "read write")])
            reason = b"token lacks scope write"
            await send({"type": "http.response.start", "status": 403, "headers": [
                (b"www-authenticate", challenge.encode()), (b"content-type", b"text/plain"),
                (b"content-length", str(len(reason)).encode())]})
            await send({"type": "http.response.body", "body": reason})
            return

        async def replay() -> Any:
            return messages.pop(0) if messages else await receive()

        await self.app(scope, replay, send)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--writ", required=True, help="writ's URL")
    parser.add_argument("--ca", required=True, help="the CA that signed writ's (and this server's) certificate")
    parser.add_argument("--listen", default="127.0.0.1:8444")
    parser.add_argument("--cert", required=True)
    parser.add_argument("--key", required=True)
    args = parser.parse_args()
    logging.getLogger("httpx").setLevel(logging.WARNING)
    host, port = args.listen.rsplit(":", 1)
    origin = f"https://{host}:{port}"
    verifier = writ.Verifier(
        args.writ, f"{origin}/mcp", ca=args.ca, required_scopes=["read"],
        follow_revocations=True, feed_credential=os.environ["WRIT_FEED_TOKEN"],
    )
    step_up = StepUp(mcp.streamable_http_app())
    guard = RequireToken(step_up, verifier, origin, scopes_supported=["read", "write"])
    step_up.guard = guard
    print(f"tool server: MCP on {origin}/mcp, tokens from {verifier.issuer}", flush=True)
    uvicorn.run(guard, host=host, port=int(port), ssl_certfile=args.cert, ssl_keyfile=args.key, log_level="warning")


if __name__ == "__main__":
    main()
