"""Server-Sent Events decoding for the revocation feed, bounded as
writ-proto's ``sse`` decoder is: lines end at LF (a CR before it dropped), a
blank line ends an event, ``:`` starts a comment (the heartbeat), ``data``
lines are joined, at most ``limit`` bytes are held between chunks."""

from __future__ import annotations

from dataclasses import dataclass, field


class TooLarge(Exception):
    """An event grew past the decoder's limit; drop the stream."""


@dataclass
class Event:
    """One event: its last event id, name and data (bytes)."""

    id: str | None = None
    event: str | None = None
    data: bytes = b""


@dataclass
class Decoder:
    """A decoder of one event stream, fed chunks as they arrive."""

    limit: int = 1 << 20
    _buf: bytearray = field(default_factory=bytearray)
    _data: bytearray = field(default_factory=bytearray)
    _event: bytes | None = None
    _last_id: bytes | None = None

    def held(self) -> int:
        """Bytes held between chunks."""
        return len(self._buf) + len(self._data) + len(self._event or b"") + len(self._last_id or b"")

    def push(self, chunk: bytes) -> list[Event]:
        """Feeds one chunk; returns the events it completes, in order.
        Raises :class:`TooLarge` when more than ``limit`` bytes are held."""
        self._buf += chunk
        events: list[Event] = []
        start = 0
        while True:
            newline = self._buf.find(b"\n", start)
            if newline < 0:
                break
            line = bytes(self._buf[start:newline])
            start = newline + 1
            self._line(line, events)
            if len(self._data) > self.limit:
                raise TooLarge(f"server-sent event larger than {self.limit} bytes")
        del self._buf[:start]
        if self.held() > self.limit:
            raise TooLarge(f"server-sent event larger than {self.limit} bytes")
        return events

    def _line(self, line: bytes, events: list[Event]) -> None:
        if line.endswith(b"\r"):
            line = line[:-1]
        if not line:
            if self._data:
                data = bytes(self._data[:-1])
                events.append(
                    Event(
                        id=self._last_id.decode("utf-8", "replace") if self._last_id is not None else None,
                        event=self._event.decode("utf-8", "replace") if self._event is not None else None,
                        data=data,
                    )
                )
            self._data.clear()
            self._event = None
            return
        if line.startswith(b":"):
            return
        name, _, value = line.partition(b":")
        if value.startswith(b" "):
            value = value[1:]
        if name == b"data":
            self._data += value + b"\n"
        elif name == b"event":
            self._event = value
        elif name == b"id" and b"\0" not in value:
            self._last_id = value
