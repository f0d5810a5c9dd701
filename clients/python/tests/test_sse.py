"""The feed's SSE decoder, as writ-proto's: how a stream is cut never
changes what it decodes to, and an event past the limit is refused."""

from __future__ import annotations

import json
import random

import pytest

from writ.sse import Decoder, TooLarge

STREAM = (
    b": heartbeat\n"
    b"id: 1\nevent: revocation\ndata: {\"seq\": 1, \"selector\": {\"all\": true}}\n\n"
    b": heartbeat\r\n"
    b"id: 2\r\nevent: revocation\r\ndata: {\"seq\": 2,\r\ndata:  \"kind\": \"revoke\"}\r\n\r\n"
    b"event: no-data\n\n"
)


def decode(chunks: list[bytes], limit: int = 1 << 20) -> list[tuple[str | None, bytes]]:
    decoder = Decoder(limit)
    out = []
    for chunk in chunks:
        out += [(e.id, e.data) for e in decoder.push(chunk)]
        assert decoder.held() <= limit
    return out


def test_events_ids_and_multi_line_data_decode() -> None:
    events = decode([STREAM])
    assert [e[0] for e in events] == ["1", "2"]
    assert json.loads(events[0][1]) == {"seq": 1, "selector": {"all": True}}
    assert json.loads(events[1][1].replace(b"\n", b"")) == {"seq": 2, "kind": "revoke"}


def test_cutting_the_stream_anywhere_decodes_the_same() -> None:
    whole = decode([STREAM])
    rng = random.Random(7)
    for _ in range(300):
        cuts = sorted(rng.randrange(len(STREAM) + 1) for _ in range(rng.randrange(1, 12)))
        chunks = [STREAM[a:b] for a, b in zip([0, *cuts], [*cuts, len(STREAM)])]
        assert decode(chunks) == whole


def test_an_endless_line_is_refused_at_the_limit() -> None:
    decoder = Decoder(1024)
    with pytest.raises(TooLarge):
        for _ in range(100):
            decoder.push(b"a" * 100)
    with pytest.raises(TooLarge):
        Decoder(1024).push(b"data: " + b"x" * 2000 + b"\n")
