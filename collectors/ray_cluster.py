"""The one way every command reaches Ray (``collect``, ``bench`` and ``demo`` with ``--engine ray``).

Ray is an optional extra (``pip install -e '.[ray]'``): nothing imports it until a command runs
with ``--engine ray``, so the default local engine needs nothing beyond the base install. This
module sits in ``collectors``, the lowest package that runs work on Ray, so that ``agents``
reuses its start-up, its options and its shared-filesystem check instead of keeping a copy.

Whether the workers see the driver's output directory is not something Ray knows. The driver
writes a marker file holding a fresh random token into that directory; a worker that reads the
same token back is on a shared filesystem (a stale marker copied elsewhere holds another token).

>>> import tempfile
>>> out = tempfile.mkdtemp()
>>> with shared_fs_marker(out) as token:
...     sees_marker(out, token), sees_marker(out, "another run's token")
(True, False)
>>> sees_marker(out, token)  # removed on exit
False
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import pathlib
import secrets
from types import ModuleType
from typing import Iterator

from collectors.atomic import write_atomic

INSTALL_HINT = "pip install -e '.[ray]'"
MARKER_PREFIX = ".rewardswap-shared-fs-"


class RayUnavailableError(RuntimeError):
    """Ray is not installed, or the cluster named by ``--address`` cannot be reached."""


def import_ray() -> ModuleType:
    """The ``ray`` module, or an error that says how to install it."""
    try:
        import ray
    except ImportError as exc:
        raise RayUnavailableError(f"--engine ray needs Ray, which is not installed here ({exc}); install the extra "
                                  f"with `{INSTALL_HINT}` (or use the default --engine local)") from None
    return ray


@contextlib.contextmanager
def ray_session(address: str | None = None) -> Iterator[ModuleType]:
    """Ray, connected: to the cluster at ``address`` (``host:port`` of its head, ``auto`` for the
    one this machine joined with ``ray start``), else to a local cluster started here and stopped
    on exit. A session the caller opened already (a test's ``ray.init``) is reused and left open."""
    ray = import_ray()
    if ray.is_initialized():
        yield ray
        return
    if not address:
        require_token(ray)
    try:
        # No dashboard: it is a separate extra (ray[default]) and nothing here reads it.
        ray.init(address=address, include_dashboard=False, logging_level=logging.WARNING)
    except (ConnectionError, TimeoutError, RuntimeError) as exc:
        where = f"the Ray cluster at {address!r}" if address else "a local Ray cluster"
        hint = ("start one with `ray start --head` on the head node, or drop --address to run a local one"
                if address else "see the error above")
        raise RayUnavailableError(f"could not start or join {where} ({exc}); {hint}") from exc
    try:
        yield ray
    finally:
        ray.shutdown()


def require_token(ray: ModuleType) -> None:
    """Make the cluster this command starts accept only clients holding a token made here.

    Ray 2.60's GCS server, raylet and workers listen on every interface whatever node address they
    are given (their bind address is not configurable; measured with ``_node_ip_address``), so the
    sockets cannot be confined to 127.0.0.1; Ray's token authentication (``RAY_AUTH_MODE=token``)
    makes them refuse anyone without the token, which lives only in this process's environment
    (and its children's).
    """
    os.environ["RAY_AUTH_MODE"] = "token"
    os.environ.setdefault("RAY_AUTH_TOKEN", secrets.token_hex(32))
    # Ray reads its settings once, at import: re-read them (what `ray start` does when it enables tokens)
    ray._raylet.Config.initialize("")


def add_engine_arguments(parser: argparse.ArgumentParser) -> None:
    """``--engine`` and ``--address``, the same for every command that can run on Ray."""
    # A parser that does not print defaults itself (collect's) gets them spelled out.
    spelled = not issubclass(parser.formatter_class, argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--engine", choices=("local", "ray"), default="local",
                        help="where the work runs: local (processes on this machine) or ray (tasks on a Ray cluster; "
                             f"needs `{INSTALL_HINT}`)" + (" (default: local)" if spelled else ""))
    parser.add_argument("--address", default=None, metavar="HOST:PORT",
                        help="with --engine ray: the Ray cluster to join (its head's address, or 'auto' for the "
                             "cluster this machine joined with `ray start`; every node needs rewardswap installed, "
                             "the same version as here); without it a local cluster is started for this command")


def engine_problems(args: argparse.Namespace) -> list[str]:
    """Options that only make sense with ``--engine ray``, given without it."""
    if args.engine != "ray" and args.address is not None:
        return ["--address names a Ray cluster; it needs --engine ray"]
    return []


@contextlib.contextmanager
def shared_fs_marker(out_dir: str | os.PathLike[str]) -> Iterator[str]:
    """Write a marker with a fresh token into ``out_dir`` for :func:`sees_marker`; remove it on exit."""
    token = secrets.token_hex(8)
    path = write_atomic(pathlib.Path(out_dir) / f"{MARKER_PREFIX}{token}", token)
    try:
        yield token
    finally:
        path.unlink(missing_ok=True)


def sees_marker(out_dir: str | os.PathLike[str], token: str) -> bool:
    """True where ``out_dir`` is the driver's own directory (the token it wrote is there)."""
    try:
        return (pathlib.Path(out_dir) / f"{MARKER_PREFIX}{token}").read_text() == token
    except (OSError, ValueError):
        return False


__all__ = ["INSTALL_HINT", "RayUnavailableError", "add_engine_arguments", "engine_problems", "import_ray",
           "ray_session", "shared_fs_marker", "sees_marker"]
