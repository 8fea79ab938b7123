"""A readers-writer lock for threads.

hnswlib allows searches beside `add_items`, but not beside `resize_index` or `save_index`;
LMDB allows readers beside the writer, but not beside `set_mapsize`. Those rare operations
take the lock exclusively; everything else shares it.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager


class ReadWriteLock:
    """Many shared holders or one exclusive holder; a waiting writer blocks new readers."""

    def __init__(self) -> None:
        self._condition = threading.Condition()
        self._reader_count = 0
        self._is_writing = False
        self._writers_waiting = 0

    @contextmanager
    def shared(self) -> Iterator[None]:
        with self._condition:
            while self._is_writing or self._writers_waiting:
                self._condition.wait()
            self._reader_count += 1
        try:
            yield
        finally:
            with self._condition:
                self._reader_count -= 1
                assert self._reader_count >= 0, self._reader_count
                if self._reader_count == 0:
                    self._condition.notify_all()

    @contextmanager
    def exclusive(self) -> Iterator[None]:
        with self._condition:
            self._writers_waiting += 1
            while self._is_writing or self._reader_count:
                self._condition.wait()
            self._writers_waiting -= 1
            self._is_writing = True
        try:
            yield
        finally:
            with self._condition:
                self._is_writing = False
                self._condition.notify_all()
