"""The claim a full-copy publish (Spark) holds in the state store: one publisher at a time, on
SQLite (a lock file beside the database) and on PostgreSQL (an advisory lock), across
connections; a publisher that cannot get it in time fails with the reason, and gets it once the
holder lets go."""

from __future__ import annotations

import threading
import time

import pytest

from closeloop.engine.publish import publish_claim
from closeloop.engine.state import StateStore
from closeloop.errors import StateError
from support import Backends


def test_one_publisher_at_a_time_holds_the_claim(backends: Backends) -> None:
    holder, waiter = StateStore.connect(backends.state_url), StateStore.connect(backends.state_url)
    holder.migrate()
    held, release = threading.Event(), threading.Event()

    def holding() -> None:
        with publish_claim(holder):
            held.set()
            release.wait(30)

    thread = threading.Thread(target=holding)
    thread.start()
    try:
        assert held.wait(30)
        started = time.monotonic()
        with (
            pytest.raises(StateError, match="another publisher held the claim"),
            publish_claim(waiter, wait=0.3),
        ):
            pass
        assert time.monotonic() - started >= 0.3
        release.set()
        thread.join(30)
        with publish_claim(waiter, wait=5):  # free again
            pass
    finally:
        release.set()
        thread.join(30)
        holder.close()
        waiter.close()


def test_a_store_in_memory_is_claimed_within_the_process() -> None:
    store = StateStore.connect("sqlite://")
    with (
        publish_claim(store),
        pytest.raises(StateError, match="another publisher"),
        publish_claim(store, wait=0.1),
    ):
        pass
    with publish_claim(store, wait=1):
        pass
