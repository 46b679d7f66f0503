"""The webhook senders of benchmark 1, for the service and its floor alike.

N senders in one asyncio loop, each with one keep-alive HTTP/1.1 connection; each takes the next order
and posts its webhooks (the exact bytes and headers the simulator generated) one after another,
waiting for each answer. The requests are built before the clock starts and written as raw bytes,
so the senders cost little of the machine's two cores (httpx cost several times more per request,
CPU taken from the processes being measured).

- closed loop (``rate=None``): as fast as the answers come, for at most ``seconds``;
- open loop (``rate`` orders/s): order k is due at start + k / rate, whatever the answers do; a
  sender that finds its next order due later sleeps until then (lateness is reported).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import defaultdict
from urllib.parse import urlsplit

from bench import harness


def build_requests(url: str, batches: list[list[tuple[bytes, dict]]]) -> list[list[bytes]]:
    """Each order's webhooks as complete HTTP/1.1 requests."""
    parts = urlsplit(url)
    host = parts.netloc.encode()
    path = (parts.path or "/").encode()
    out = []
    for batch in batches:
        requests = []
        for body, headers in batch:
            head = [b"POST " + path + b" HTTP/1.1", b"Host: " + host]
            head += [f"{k}: {v}".encode() for k, v in headers.items() if k.lower() != "content-length"]
            head.append(b"Content-Length: " + str(len(body)).encode())
            requests.append(b"\r\n".join(head) + b"\r\n\r\n" + body)
        out.append(requests)
    return out


class _Connection:
    def __init__(self, host: str, port: int) -> None:
        self.host, self.port = host, port
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def post(self, request: bytes) -> int:
        for attempt in (1, 2):  # one reconnect if the server closed an idle keep-alive connection
            if self.writer is None:
                self.reader, self.writer = await asyncio.open_connection(self.host, self.port)
            try:
                self.writer.write(request)
                head = await self.reader.readuntil(b"\r\n\r\n")
                status = int(head[9:12])
                lower = head.lower()
                at = lower.find(b"content-length:")
                if at >= 0:
                    length = int(lower[at + 15:lower.index(b"\r\n", at)])
                    if length:
                        await self.reader.readexactly(length)
                elif b"transfer-encoding: chunked" in lower:
                    while True:
                        size = int((await self.reader.readuntil(b"\r\n")).strip(), 16)
                        await self.reader.readexactly(size + 2)
                        if size == 0:
                            break
                if b"connection: close" in lower:
                    await self.close()
                return status
            except (asyncio.IncompleteReadError, ConnectionError):
                await self.close()
                if attempt == 2:
                    raise
        raise AssertionError("unreachable")

    async def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
            with contextlib.suppress(ConnectionError):
                await self.writer.wait_closed()
        self.reader = self.writer = None


async def _send(url: str, orders: list[list[bytes]], clients: int, seconds: float, rate: float | None) -> dict:
    parts = urlsplit(url)
    host, port = parts.hostname, parts.port
    statuses: dict[int, int] = defaultdict(int)
    latencies: list[float] = []
    late: list[float] = []
    next_order = 0
    started = time.monotonic()
    stop_at = started + seconds
    if rate:
        orders = orders[:int(rate * seconds) + 1]

    async def sender() -> None:
        nonlocal next_order
        connection = _Connection(host, port)
        try:
            while next_order < len(orders):
                now = time.monotonic()
                if not rate and now >= stop_at:
                    return
                k = next_order
                next_order = k + 1
                if rate:
                    due = started + k / rate
                    if due > now:
                        await asyncio.sleep(due - now)
                    else:
                        late.append(now - due)
                for request in orders[k]:
                    t = time.perf_counter()
                    statuses[await connection.post(request)] += 1
                    latencies.append(time.perf_counter() - t)
        finally:
            await connection.close()

    await asyncio.gather(*(sender() for _ in range(clients)))
    send_s = time.monotonic() - started
    return {"orders_sent": next_order, "send_s": round(send_s, 2), "statuses": dict(statuses),
            "http_p50_ms": _ms(harness.percentile(latencies, 50)),
            "http_p99_ms": _ms(harness.percentile(latencies, 99)),
            **({"offered_per_s": rate, "achieved_per_s": round(next_order / send_s, 1),
                "late_p99_ms": _ms(harness.percentile(late, 99)) or 0.0} if rate else {})}


def send(url: str, orders: list[list[bytes]], *, clients: int, seconds: float, rate: float | None = None) -> dict:
    """Send ``orders`` (from :func:`build_requests`); returns counts, HTTP latencies and, in open loop, pacing."""
    return asyncio.run(_send(url, orders, clients, seconds, rate))


def _ms(seconds: float | None) -> float | None:
    return None if seconds is None else round(seconds * 1000, 1)
