"""Joining a Ray cluster, or starting a Ray of our own, the same way for every command.

Ray (2.59 on) turns token authentication on for a local Ray it starts, and `ray start --head`
turns it on whenever a token is at hand (`~/.ray/auth_token`, which a local Ray writes,
`RAY_AUTH_TOKEN` or `RAY_AUTH_TOKEN_PATH`). But `ray.init(address)` of a running cluster never
does, so a client is refused by such a cluster, after ~20 s of retries, as "Failed to connect
to Ray cluster". A client in token mode also joins a cluster without authentication, so, with
a token at hand and no `RAY_AUTH_MODE` set, lmforge joins in token mode: Ray's own step for a
cluster it finds by itself (which also refreshes the mode Ray read at import; setting the
variable alone after `import ray` is not seen). A cluster that cannot be joined is one error
naming the setting that gave its address and what to check, not Ray's traceback.
"""

from __future__ import annotations

import os
import socket
from pathlib import Path

from lmforge.errors import LmforgeError

AUTH_MODE = "RAY_AUTH_MODE"


def default_token_file() -> Path:
    return Path.home() / ".ray" / "auth_token"


def _token_mode_when_a_token_is_at_hand() -> None:
    try:  # a private module of Ray's (pyproject admits Ray from 2.9, before token authentication)
        from ray._private.authentication.authentication_token_setup import (
            maybe_enable_token_auth_if_token_available,
        )
    except ImportError:  # a Ray without token authentication, or one that moved it: Ray decides
        return
    maybe_enable_token_auth_if_token_available(warn_if_disabled=False)  # no-op with a mode set


def unreachable(address: str, timeout: float = 5.0) -> str | None:
    """Why nothing answers at a `host:port` (or `ray://host:port`) address, or None when
    something does or the address is one Ray resolves itself ("auto")."""
    host, colon, port = address.removeprefix("ray://").rpartition(":")
    if not colon or not port.isdigit() or not host:
        return None
    try:
        socket.create_connection((host.strip("[]"), int(port)), timeout=timeout).close()
    except OSError as error:
        return f"nothing answers at {host}:{port} ({error.strerror or type(error).__name__})"
    return None


def join_ray(address: str, setting: str) -> None:
    """`ray.init(address)` of a running cluster; `setting` names where the address came from
    (`executor.address`, `$RAY_ADDRESS`, `--ray`) for the error."""
    # Ray retries a dead address for many minutes (a typo would hang the run): ask first.
    if reason := unreachable(address):
        raise LmforgeError(
            f"{setting}: cannot join the Ray cluster at {address}: {reason}",
            hint="is it started? `ray start --head` prints the address to use; `ray status` checks it",
        )
    import ray
    from ray.exceptions import RayError

    _token_mode_when_a_token_is_at_hand()
    try:
        ray.init(address=address, log_to_driver=False)
    except (ConnectionError, RayError) as error:
        mode = os.environ.get(AUTH_MODE) or "disabled"
        raise LmforgeError(
            f"{setting}: cannot join the Ray cluster at {address} ({type(error).__name__}: "
            f"{str(error).splitlines()[0] if str(error) else 'no detail'})",
            hint=(
                f"is it up? `ray status --address {address}` on this machine says. This client's "
                f"{AUTH_MODE} is {mode!r}: a cluster started by `ray start --head` (Ray 2.59 or "
                f"later) asks for a token, so export {AUTH_MODE}=token with the head's token in "
                f"{default_token_file()} or in RAY_AUTH_TOKEN (`ray get-auth-token` prints it on "
                "the head)"
            ),
        ) from error


def start_local_ray(num_cpus: int | None = None) -> None:
    """A new Ray of our own on this machine, never a cluster `ray start` left here (address
    "local"; without it, ray.init joins the one named in /tmp/ray/ray_current_cluster, even a
    dead one). Ray's default: token authentication (it writes `~/.ray/auth_token` when there is
    none) unless `RAY_AUTH_MODE` says otherwise."""
    import ray

    ray.init(address="local", num_cpus=num_cpus, include_dashboard=False, log_to_driver=False)
