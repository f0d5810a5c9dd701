"""Following the broker's revocation feed, as the Rust SDK does: a JSON
catch-up (``GET /v1/revocations?since=``), then Server-Sent Events resumed
with ``Last-Event-ID`` after any break, a catch-up by polling and a growing
pause between tries. Every byte heard (heartbeats too) records that the
feed is alive, so the verifier can fail closed when it goes silent."""

from __future__ import annotations

import json
import logging
import threading
from typing import Callable

import httpx

from . import _http
from .errors import ProtocolError, Unavailable, WritError
from .revocation import RevocationSet
from .sse import Decoder, TooLarge

log = logging.getLogger("writ.feed")

#: A stream silent this long is dropped and resumed (two heartbeats and more).
STREAM_SILENCE = 35.0
#: The most one event may hold.
MAX_EVENT_BYTES = 1 << 20

#: Returns the ``Authorization`` value for the feed (``None``: no header, mTLS).
FeedAuth = Callable[[], "str | None"]


class Feed:
    """The verifier's copy of the kill switch, kept current by a daemon thread."""

    def __init__(
        self,
        client: httpx.Client,
        endpoint: str,
        auth: FeedAuth,
        on_unauthorized: Callable[[], None] | None,
        leeway: int,
        clock: Callable[[], float],
    ) -> None:
        self.set = RevocationSet(leeway)
        self._client = client
        self._endpoint = endpoint
        self._auth = auth
        self._on_unauthorized = on_unauthorized
        self._clock = clock
        self._heard: float | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._response: httpx.Response | None = None
        #: Whether the SSE stream is open now.
        self.connected = False

    def heard(self) -> None:
        """Records that the feed was heard now."""
        self._heard = self._clock()

    def silence(self) -> float | None:
        """Seconds since the feed was last heard (``None``: never)."""
        return None if self._heard is None else self._clock() - self._heard

    def _get(self, url: str, headers: dict[str, str], stream: bool = False) -> httpx.Response:
        def send() -> httpx.Response:
            h = dict(headers)
            value = self._auth()
            if value is not None:
                h["Authorization"] = value
            if stream:
                timeout = httpx.Timeout(10.0, read=STREAM_SILENCE)
                return self._client.send(self._client.build_request("GET", url, headers=h, timeout=timeout), stream=True)
            return self._client.get(url, headers=h)

        try:
            response = send()
            if response.status_code == 401 and self._on_unauthorized is not None:
                response.close()
                self._on_unauthorized()
                response = send()
        except httpx.HTTPError as e:
            raise _http.transport_error("revocation feed", e) from None
        if response.status_code != 200:
            response.close()
            raise Unavailable(f"revocation feed: {response.status_code}")
        return response

    def catch_up(self) -> None:
        """Reads every page after the last seq seen."""
        while True:
            response = self._get(f"{self._endpoint}?since={self.set.last_seq}", {})
            try:
                page = response.json()
            except ValueError:
                raise ProtocolError("revocation feed: a page that is not JSON") from None
            self.heard()
            entries = page.get("entries") if isinstance(page, dict) else None
            if not entries:
                return
            for entry in entries:
                self.set.apply(entry)

    def _stream_once(self) -> None:
        response = self._get(
            f"{self._endpoint}/stream",
            {"Last-Event-ID": str(self.set.last_seq), "Accept": "text/event-stream"},
            stream=True,
        )
        self._response = response
        self.connected = True
        decoder = Decoder(MAX_EVENT_BYTES)
        try:
            self.heard()
            for chunk in response.iter_raw():
                if self._stop.is_set():
                    return
                self.heard()
                for event in decoder.push(chunk):
                    data = event.data.replace(b"\n", b"")
                    try:
                        entry = json.loads(data)
                    except ValueError:
                        raise ProtocolError("unreadable revocation event") from None
                    self.set.apply(entry)
        except TooLarge as e:
            raise ProtocolError(str(e)) from None
        except httpx.HTTPError as e:
            raise _http.transport_error("revocation stream", e) from None
        finally:
            self.connected = False
            self._response = None
            response.close()

    def _run(self) -> None:
        failures = 0
        while not self._stop.is_set():
            try:
                self._stream_once()
                failures = 0
            except WritError as e:
                failures += 1
                if not self._stop.is_set():
                    log.warning("revocation stream broke; catching up by polling: %s", e)
            if self._stop.is_set():
                return
            try:
                self.catch_up()
            except WritError as e:
                log.warning("revocation feed poll failed: %s", e)
            self._stop.wait(0.2 * 2 ** min(failures, 5))

    def start(self) -> None:
        """Follows the stream on a daemon thread until :meth:`stop`."""
        self._thread = threading.Thread(target=self._run, name="writ-revocation-feed", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stops following (the stream is closed)."""
        self._stop.set()
        response = self._response
        if response is not None:
            try:
                response.close()
            except Exception:  # closing from another thread may race; the thread ends anyway
                pass
        if self._thread is not None:
            self._thread.join(timeout=5)

