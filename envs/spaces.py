"""Observation-key conventions shared by every package.

Every observation a RewardSwap component reads is addressed by a *key*. Dict observations use
their own keys. A plain ``Box`` observation is given a key from its type: an ``uint8`` image of
shape ``(H, W, C)`` is ``"rgb"``, anything else is ``"state"``. The recorder stores fields under
these keys and reward models declare the keys they read, so data recorded in ``obs="rgb"`` mode
feeds a model with ``inputs=("rgb",)`` with no renaming.

>>> import numpy as np
>>> from gymnasium import spaces
>>> obs_keys(spaces.Box(0, 255, (64, 64, 3), np.uint8))
('rgb',)
>>> obs_to_dict(np.zeros(3, np.float32), spaces.Box(-1, 1, (3,), np.float32))["state"].shape
(3,)
"""

from __future__ import annotations

from typing import Any, Mapping

import numpy as np
from gymnasium import spaces

ObsDict = dict[str, np.ndarray]
RenderSize = int | tuple[int, int]
"""A camera image size: ``n`` for ``n x n``, or ``(height, width)``."""


def image_hw(render_size: Any) -> tuple[int, int]:
    """``(height, width)`` of a render size; raises ``ValueError`` below 8 pixels a side.

    >>> image_hw(64), image_hw((24, 40)), image_hw([24, 40])
    ((64, 64), (24, 40), (24, 40))
    """
    if isinstance(render_size, (int, np.integer)) and not isinstance(render_size, bool):
        hw = (int(render_size), int(render_size))
    elif isinstance(render_size, (tuple, list)) and len(render_size) == 2 and all(
            isinstance(v, (int, np.integer)) and not isinstance(v, bool) for v in render_size):
        hw = (int(render_size[0]), int(render_size[1]))
    else:
        raise ValueError(f"render_size must be an int or (height, width), got {render_size!r}")
    if min(hw) < 8:
        raise ValueError(f"render_size must be at least 8 pixels a side, got {render_size!r}")
    return hw


def render_size_value(render_size: Any) -> int | list[int]:
    """The JSON form recorded in env specs: an int for a square image, else ``[height, width]``."""
    h, w = image_hw(render_size)
    return h if h == w else [h, w]


def is_image_space(space: spaces.Space) -> bool:
    """True for a single-env ``uint8`` Box of shape ``(H, W, C)``."""
    return isinstance(space, spaces.Box) and space.dtype == np.uint8 and len(space.shape) == 3


def default_key(space: spaces.Space) -> str:
    """The key a non-dict observation space is stored under: ``"rgb"`` or ``"state"``."""
    return "rgb" if is_image_space(space) else "state"


def obs_keys(space: spaces.Space) -> tuple[str, ...]:
    """Keys of the observation dict that :func:`obs_to_dict` produces for ``space``."""
    if isinstance(space, spaces.Dict):
        return tuple(space.spaces.keys())
    return (default_key(space),)


def key_spaces(space: spaces.Space) -> dict[str, spaces.Space]:
    """Map each key of ``space`` (see :func:`obs_keys`) to its sub-space."""
    if isinstance(space, spaces.Dict):
        return dict(space.spaces)
    return {default_key(space): space}


def obs_to_dict(obs: Any, single_space: spaces.Space) -> ObsDict:
    """View an observation (single or batched) as a dict of arrays, keyed by convention.

    ``single_space`` is the *single-env* observation space; the key is decided from it, so the
    same call works for one observation and for a batch from a vector env. Arrays are not copied.
    """
    if isinstance(obs, Mapping):
        return {k: obs[k] for k in obs}
    return {default_key(single_space): obs}
