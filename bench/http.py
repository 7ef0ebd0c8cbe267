"""Timed requests to the real API (gunicorn), over one kept-alive connection, as an internal tool would call it."""

from __future__ import annotations

import http.client
import json
import time
from typing import Any

from bench.stats import latency_summary


class ApiClient:
    def __init__(self, port: int):
        self.connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)

    def call(self, method: str, path: str, body: Any = None) -> tuple[int, Any, float]:
        """Status, decoded body and milliseconds of one request."""
        payload = None if body is None else json.dumps(body)
        headers = {"Content-Type": "application/json"} if payload else {}
        started = time.perf_counter()
        self.connection.request(method, path, payload, headers)
        response = self.connection.getresponse()
        raw = response.read()
        elapsed_ms = (time.perf_counter() - started) * 1000
        return response.status, json.loads(raw) if raw else None, elapsed_ms

    def timed(self, method: str, path: str, repeat: int, body: Any = None) -> dict[str, float]:
        """Latency percentiles of ``repeat`` identical requests (after one unmeasured warm-up)."""
        self.call(method, path, body)
        timings = []
        for _ in range(repeat):
            status, answer, elapsed_ms = self.call(method, path, body)
            if status >= 400:
                raise SystemExit(f"{method} {path}: {status} {answer}")
            timings.append(elapsed_ms)
        return latency_summary(timings)

    def close(self) -> None:
        self.connection.close()


def wait_until_serving(port: int, timeout_s: float = 60) -> None:
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            client = ApiClient(port)
            status, _body, _ms = client.call("GET", "/healthz")
            client.close()
            if status == 200:
                return
        except OSError:
            pass
        if time.monotonic() > deadline:
            raise SystemExit("the API did not start")
        time.sleep(0.2)
