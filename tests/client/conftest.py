"""Helpers for the client's tests: run a scenario on a fresh event loop, with a fake server."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Coroutine, Iterator
from typing import Any, TypeVar

import pytest

from .fakeserver import FakeServer

T = TypeVar("T")


def arun(coroutine: Coroutine[Any, Any, T], timeout: float = 15.0) -> T:
    """Run one async test scenario, bounded in time."""

    async def bounded() -> T:
        return await asyncio.wait_for(coroutine, timeout)

    return asyncio.run(bounded())


class ThreadedFake:
    """A FakeServer on its own event loop in a thread (for blocking code: CLI, SyncClient)."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.server = FakeServer()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self.address = self.call(self.server.start())

    def call(self, coroutine: Coroutine[Any, Any, T]) -> T:
        return asyncio.run_coroutine_threadsafe(coroutine, self.loop).result(10)

    def stop(self) -> None:
        self.call(self.server.stop())
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)


@pytest.fixture
def threaded_fake() -> Iterator[ThreadedFake]:
    fake = ThreadedFake()
    try:
        yield fake
    finally:
        fake.stop()
