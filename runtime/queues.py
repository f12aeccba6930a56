"""The pipeline's hand-offs between threads: a bounded queue with the two policies of a
live pipeline, under its own lock (a deque and a condition, so a look-ahead task can look at
the next frame without reading ``queue.Queue``'s internals).

``put(item, wait=True)`` waits for room (a file read as fast as possible: nothing dropped,
the producer is held back); ``put(item, wait=False)`` drops the oldest items to make room
and says how many, for the caller to count.
"""

from __future__ import annotations

import threading
from collections import deque

__all__ = ["BoundedQueue"]


class BoundedQueue:
    """At most ``maxsize`` items, oldest first."""

    def __init__(self, maxsize: int):
        if maxsize < 1:
            raise ValueError(f"maxsize={maxsize}: a queue holds 1 item or more")
        self.maxsize = maxsize
        self._items: deque = deque()
        self._cond = threading.Condition()

    def put(self, item, wait: bool, stop: threading.Event | None = None) -> int | None:
        """Add ``item``: with ``wait``, once there is room; else at once, dropping the oldest.
        Returns how many were dropped, or None if ``stop`` was set while waiting (not added)."""
        with self._cond:
            while wait and len(self._items) >= self.maxsize:
                if stop is not None and stop.is_set():
                    return None
                self._cond.wait(0.1)
            dropped = 0
            while len(self._items) >= self.maxsize:
                self._items.popleft()
                dropped += 1
            self._items.append(item)
            self._cond.notify_all()
            return dropped

    def get(self, timeout: float | None = None):
        """The oldest item, waiting up to ``timeout`` s (None: until one comes); None if none came."""
        with self._cond:
            if not self._cond.wait_for(lambda: self._items, timeout):
                return None
            item = self._items.popleft()
            self._cond.notify_all()
            return item

    def take(self, n: int) -> list:
        """Up to ``n`` items already waiting, without waiting."""
        with self._cond:
            out = [self._items.popleft() for _ in range(min(n, len(self._items)))]
            self._cond.notify_all()
            return out

    def skip_while(self, item, ready) -> tuple[object, int]:
        """``item``, or the newest waiting item whose predecessors back to ``item`` and itself
        all pass ``ready(waiting_item)`` (those before it removed); and how many were skipped."""
        skipped = 0
        with self._cond:
            while self._items and ready(self._items[0]):
                item = self._items.popleft()
                skipped += 1
            if skipped:
                self._cond.notify_all()
        return item, skipped

    def __len__(self) -> int:
        with self._cond:
            return len(self._items)
