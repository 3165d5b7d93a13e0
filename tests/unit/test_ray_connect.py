"""Joining a Ray cluster: an address where nothing answers is one clear error at once (Ray
itself would retry it for many minutes). No Ray is started here."""

from __future__ import annotations

import socket

import pytest

from lmforge.errors import LmforgeError
from lmforge.ray_connect import join_ray, unreachable


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])  # closed again when the block ends


@pytest.mark.parametrize("scheme", ["", "ray://"])
def test_a_dead_address_is_one_error_naming_the_setting(scheme: str) -> None:
    address = f"{scheme}127.0.0.1:{_closed_port()}"
    with pytest.raises(LmforgeError) as raised:
        join_ray(address, "executor.address")
    message = str(raised.value)
    assert message.startswith(f"executor.address: cannot join the Ray cluster at {address}: nothing answers")
    assert "ray start --head" in message  # the check before ray.init, not Ray's minutes of retries


def test_a_listening_port_is_reachable() -> None:
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen()
        assert unreachable(f"127.0.0.1:{server.getsockname()[1]}") is None


@pytest.mark.parametrize("address", ["auto", "local", "127.0.0.1", "host:port", ":6379"])
def test_addresses_ray_resolves_itself_are_left_to_it(address: str) -> None:
    assert unreachable(address) is None
