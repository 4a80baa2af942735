"""The test servers' ports (tests/support/processes.py free_port): outside the kernel's
ephemeral range, and never the same for two pytest-xdist workers."""

from __future__ import annotations

import socket

import pytest

from tests.support import processes


def test_the_workers_shares_are_disjoint_and_below_the_ephemeral_range(monkeypatch) -> None:
    shares = []
    for index in range(3):
        monkeypatch.setenv("PYTEST_XDIST_WORKER", f"gw{index}")
        monkeypatch.setenv("PYTEST_XDIST_WORKER_COUNT", "3")
        shares.append(set(processes._worker_share()))
    assert not (shares[0] & shares[1] or shares[1] & shares[2] or shares[0] & shares[2])
    assert all(processes.PORTS.start <= port < 32_768 for share in shares for port in share)


def test_a_port_is_free_and_never_handed_out_twice(monkeypatch) -> None:
    monkeypatch.setattr(processes, "_next_port", 0)
    ports = [processes.free_port() for _ in range(20)]
    assert len(set(ports)) == 20
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", ports[-1]))  # still free: nothing listens on it


def test_a_taken_port_is_passed_over(monkeypatch) -> None:
    monkeypatch.setattr(processes, "_next_port", 0)
    taken = processes.free_port()
    monkeypatch.setattr(processes, "_next_port", processes._next_port - 1)  # offer it again
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", taken))
        holder.listen()
        assert processes.free_port() != taken


@pytest.mark.parametrize("worker", ["", "gw0"])
def test_outside_xdist_or_alone_the_whole_range_is_used(monkeypatch, worker) -> None:
    monkeypatch.setenv("PYTEST_XDIST_WORKER", worker)
    monkeypatch.setenv("PYTEST_XDIST_WORKER_COUNT", "1")
    assert processes._worker_share() == processes.PORTS
