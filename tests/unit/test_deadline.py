"""The per-request deadline: one watchdog thread for every request, each deadline fired on
time whatever the order they were set in, and a finished request's socket never shut."""

from __future__ import annotations

import os
import socket
import threading
import time

from dbt_moengage.deadline import Deadline, _Watchdog, within


def test_many_requests_share_one_watchdog_thread() -> None:
    with within(60):
        pass  # the watchdog's thread exists from the first deadline on
    before = threading.active_count()
    for _ in range(200):
        with within(60) as one:
            assert not one.expired
    assert threading.active_count() == before
    names = [t.name for t in threading.enumerate()]
    assert names.count("moengage-deadlines") == 1


def test_a_shorter_deadline_set_later_still_fires_first() -> None:
    watchdog = _Watchdog()
    late, early = Deadline(), Deadline()
    watchdog.watch(late, 30)
    started = time.monotonic()
    watchdog.watch(early, 0.2)
    while not early.expired and time.monotonic() - started < 5:
        time.sleep(0.01)
    assert early.expired and 0.15 < time.monotonic() - started < 5
    assert not late.expired


def test_an_expired_deadline_shuts_the_socket_a_blocked_read_waits_on() -> None:
    ours, theirs = socket.socketpair()
    try:
        with within(0.2) as one:
            one.watch(ours)
            started = time.monotonic()
            assert ours.recv(10) == b""  # shut: the read ends at once, with no data
        assert one.expired and time.monotonic() - started < 5
    finally:
        ours.close()
        theirs.close()


def test_a_finished_request_is_never_shut_later() -> None:
    ours, theirs = socket.socketpair()
    try:
        with within(0.1) as one:
            one.watch(ours)
        time.sleep(0.4)
        assert not one.expired
        theirs.sendall(b"still open")
        assert ours.recv(10) == b"still open"
    finally:
        ours.close()
        theirs.close()


def test_a_forked_child_gets_a_watchdog_of_its_own() -> None:
    with within(60):
        pass  # the parent's watchdog thread is running
    pid = os.fork()
    if pid == 0:  # the child: the parent's thread did not come along
        code = 1
        try:
            ours, _theirs = socket.socketpair()
            with within(0.2) as one:
                one.watch(ours)
                ours.settimeout(5)
                ours.recv(10)
            code = 0 if one.expired else 1
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
