"""Shared pytest configuration.

ManiSkill tests are marked ``maniskill``. They skip (with the reason) when ManiSkill or a Vulkan
device is unavailable, except under ``CI=true``, where they run and fail.
"""

from __future__ import annotations

import functools
import os

import pytest
import torch

# Software rendering and torch intra-op threads fight for the two cores (see platform notes).
torch.set_num_threads(1)

IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")


@pytest.fixture(autouse=True, scope="session")
def _sb3_logs_in_pytest_tmp(tmp_path_factory: pytest.TempPathFactory):
    """Agents the tests build without a log folder write SB3's default logs under pytest's tmp,
    not as one /tmp/SB3-<date> directory per agent left behind after the suite."""
    previous = os.environ.get("SB3_LOGDIR")
    os.environ["SB3_LOGDIR"] = str(tmp_path_factory.mktemp("sb3_logs"))
    yield
    if previous is None:
        os.environ.pop("SB3_LOGDIR", None)
    else:
        os.environ["SB3_LOGDIR"] = previous


@functools.lru_cache(maxsize=1)
def maniskill_unavailable_reason() -> str | None:
    """None when a ManiSkill CPU env can be built here, else why not."""
    try:
        import mani_skill.envs  # noqa: F401
        import sapien
    except Exception as exc:  # pragma: no cover - depends on the machine
        return f"mani_skill not importable ({exc}); install with `pip install -e .[maniskill]`"
    try:
        summary = sapien.render.get_device_summary()
    except Exception as exc:  # pragma: no cover
        return f"no Vulkan device for SAPIEN ({exc}); run scripts/install_vulkan.sh as root"
    if "Supported: 1" not in summary:
        return f"no Vulkan device for SAPIEN (device summary: {summary!r}); run scripts/install_vulkan.sh as root"
    return None


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if IN_CI:
        return  # in CI a missing ManiSkill must fail the ManiSkill tests, not skip them
    reason = maniskill_unavailable_reason() if any("maniskill" in i.keywords for i in items) else None
    if reason is None:
        return
    for item in items:
        if "maniskill" in item.keywords:
            item.add_marker(pytest.mark.skip(reason=reason))
