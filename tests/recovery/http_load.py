"""A bounded HTTP load for recovery tests: writer threads upserting with wait=false.

Each writer sends batches of points with ids unique to it and remembers, per request,
whether the server acknowledged it (with its operation_id) or the request was in flight
when the connection broke. Loops are bounded in count and time (the machine is shared).
"""

from __future__ import annotations

import http.client
import json
import threading
import time
from dataclasses import dataclass, field

POINTS_PER_REQUEST = 20
DIM = 8


def vector_for(point_id: int) -> list[float]:
    """A distinct, reproducible vector per id below 2**32 (one nibble per component), exact
    in float32: any two differ by at least 1.0 in Euclidean distance."""
    return [float((point_id >> (4 * k)) & 0xF) for k in range(DIM)]


def request_json(
    url: str, method: str, path: str, body: object | None = None, timeout_s: float = 30.0
) -> tuple[int, dict]:
    host_port = url.removeprefix("http://")
    connection = http.client.HTTPConnection(host_port, timeout=timeout_s)
    try:
        payload = None if body is None else json.dumps(body)
        connection.request(method, path, body=payload, headers={"Content-Type": "application/json"})
        response = connection.getresponse()
        return response.status, json.loads(response.read() or b"{}")
    finally:
        connection.close()


@dataclass
class WriteLog:
    acknowledged: list[tuple[int, list[int]]] = field(default_factory=list)  # (op_id, ids)
    in_flight: list[list[int]] = field(default_factory=list)  # ids of unanswered requests
    unexpected: list[object] = field(default_factory=list)  # answers that were not an ack
    lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def acknowledged_count(self) -> int:
        with self.lock:
            return len(self.acknowledged)


class Upserter:
    """`writer_count` threads upserting into one collection until stopped or broken."""

    def __init__(
        self,
        url: str,
        collection_name: str,
        writer_count: int = 4,
        requests_max: int = 5_000,
        duration_max_s: float = 60.0,
    ) -> None:
        self.url = url
        self.collection_name = collection_name
        self.log = WriteLog()
        self._stop = threading.Event()
        self._requests_max = requests_max
        self._duration_max_s = duration_max_s
        self._threads = [
            threading.Thread(target=self._run, args=(index,), daemon=True)
            for index in range(writer_count)
        ]

    def start(self) -> Upserter:
        for thread in self._threads:
            thread.start()
        return self

    def stop(self) -> WriteLog:
        """Ask the writers to stop after their current request; return what they saw."""
        self._stop.set()
        return self.join()

    def join(self) -> WriteLog:
        """Wait until every writer has finished (bounded by its count and duration)."""
        for thread in self._threads:
            thread.join(timeout=self._duration_max_s + 60)
        return self.log

    def _run(self, writer_index: int) -> None:
        host_port = self.url.removeprefix("http://")
        connection = http.client.HTTPConnection(host_port, timeout=30)
        deadline_s = time.monotonic() + self._duration_max_s
        for sequence in range(self._requests_max):
            if self._stop.is_set() or time.monotonic() > deadline_s:
                break
            first_id = writer_index * 10_000_000 + sequence * POINTS_PER_REQUEST
            ids = list(range(first_id, first_id + POINTS_PER_REQUEST))
            body = json.dumps(
                {
                    "points": [
                        {
                            "id": i,
                            "vector": vector_for(i),
                            "payload": {"writer": writer_index, "id": i},
                        }
                        for i in ids
                    ]
                }
            )
            try:
                connection.request(
                    "PUT",
                    f"/collections/{self.collection_name}/points?wait=false",
                    body=body,
                    headers={"Content-Type": "application/json"},
                )
                response = connection.getresponse()
                answer = json.loads(response.read())
            except (OSError, http.client.HTTPException, json.JSONDecodeError):
                with self.log.lock:
                    self.log.in_flight.append(ids)
                break
            if response.status != 200 or answer["result"]["status"] != "acknowledged":
                with self.log.lock:
                    self.log.unexpected.append((response.status, answer))
                break
            with self.log.lock:
                self.log.acknowledged.append((answer["result"]["operation_id"], ids))
        connection.close()
