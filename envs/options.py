"""The env options every command that makes an env takes, and the env spec runs record.

``--env`` (an id or gymnasium's ``module:Env-id``), ``--env-kwargs JSON`` (constructor
arguments, e.g. a task name), ``--max-episode-steps`` and ``--render-size`` mean the same in
``collect``, ``train-agent``, ``bench`` and ``demo``. :func:`env_spec` is what ``meta.json``,
checkpoints and ``run_config.json`` record, so a run can be rebuilt (and a mismatch found) from
any of them.

>>> import argparse
>>> parser = argparse.ArgumentParser()
>>> add_env_arguments(parser, default_env="PointReach-v0")
>>> args = parser.parse_args(["--env-kwargs", '{"goal_radius": 0.1}'])
>>> env_spec(args.env, parse_env_kwargs(args.env_kwargs), args.max_episode_steps, args.render_size)
{'id': 'PointReach-v0', 'kwargs': {'goal_radius': 0.1}, 'max_episode_steps': None, 'render_size': 64}
"""

from __future__ import annotations

import argparse
import json
from typing import Any

from envs.spaces import RenderSize, image_hw, render_size_value

#: What a recorded env spec holds (see :func:`env_spec`).
EnvSpecDict = dict[str, Any]


def parse_json_object(text: str, option: str, example: str = '{"key": 1}') -> dict[str, Any]:
    """A JSON object given on the command line, or a ``ValueError`` naming ``option``.

    >>> parse_json_object('{"task": "lift"}', "--env-kwargs")
    {'task': 'lift'}
    """
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ValueError(f"{option} must be a JSON object such as '{example}': {exc} in {text!r}") from None
    if not isinstance(value, dict):
        raise ValueError(f"{option} must be a JSON object such as '{example}', got {text!r}")
    return value


def parse_env_kwargs(text: str | None) -> dict[str, Any]:
    """``--env-kwargs`` -> constructor arguments (``{}`` when not given)."""
    return {} if text is None else parse_json_object(text, "--env-kwargs", example='{"task_name": "lift"}')


def add_env_arguments(parser: argparse.ArgumentParser, *, default_env: str | None, default_text: str | None = None) -> None:
    """``--env``, ``--env-kwargs``, ``--max-episode-steps`` and ``--render-size``; ``default_text``
    says what an absent ``--env`` means when that is not simply ``default_env``."""
    default_text = default_text or default_env
    parser.add_argument("--env", default=default_env,
                        help="env id for envs.make: built-in (PointReach-v0, PointKeyDoor-v0), ManiSkill "
                             "(PushCube-v1...), any registered gymnasium id, or module:Env-id to import the "
                             "module that registers it" + (f" (default: {default_text})" if default_text else ""))
    parser.add_argument("--env-kwargs", default=None, metavar="JSON",
                        help="constructor arguments as a JSON object, e.g. '{\"task_name\": \"lift\"}' "
                             "(ManiSkill: also camera_view, control_mode...)")
    parser.add_argument("--max-episode-steps", type=int, default=None, metavar="N",
                        help="override the env's time limit")
    parser.add_argument("--render-size", type=parse_render_size, default=64, metavar="PX|HxW",
                        help="rgb image size: a side (64) or height x width (24x40) (default: 64)")


def gym_make(env_id: str, user_kwargs: dict[str, Any], **make_kwargs: Any) -> Any:
    """``gym.make(env_id, **make_kwargs)``; a constructor that rejects an argument (or misses a
    required one) becomes a ``ValueError`` naming the env and the user's ``--env-kwargs``."""
    import gymnasium as gym

    try:
        return gym.make(env_id, **make_kwargs)
    except TypeError as exc:  # an unknown or missing constructor argument
        raise ValueError(f"{env_id!r} cannot be made with kwargs {user_kwargs}: {exc}") from None


def parse_render_size(text: str) -> RenderSize:
    """argparse type for ``--render-size``: ``"64"`` -> 64, ``"24x40"`` -> (24, 40) (height x width).

    >>> parse_render_size("64"), parse_render_size("24x40")
    (64, (24, 40))
    """
    try:
        parts = [int(p) for p in text.lower().split("x")]
        size: RenderSize = parts[0] if len(parts) == 1 else (parts[0], parts[1]) if len(parts) == 2 else ()  # type: ignore[assignment]
        image_hw(size)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a side (64) or HEIGHTxWIDTH (24x40), each >= 8; got {text!r}") from None
    return size


def env_spec(env_id: str, kwargs: dict[str, Any] | None = None, max_episode_steps: int | None = None,
             render_size: RenderSize = 64) -> EnvSpecDict:
    """What rebuilds the env: the id as given, constructor arguments, time limit, image size
    (an int for a square image, else ``[height, width]``)."""
    return {"id": env_id, "kwargs": dict(kwargs or {}), "max_episode_steps": max_episode_steps,
            "render_size": render_size_value(render_size)}


def spec_differences(recorded: EnvSpecDict, wanted: EnvSpecDict,
                     keys: tuple[str, ...] = ("id", "kwargs", "max_episode_steps", "render_size")) -> list[str]:
    """The ``keys`` in which two env specs differ, as ``"key: recorded -> wanted"`` lines.

    >>> spec_differences(env_spec("A-v0", {"task": 1}), env_spec("A-v0", {"task": 2}))
    ["kwargs: {'task': 1} -> {'task': 2}"]
    """
    return [f"{key}: {recorded.get(key)!r} -> {wanted.get(key)!r}"
            for key in keys if key in recorded and recorded.get(key) != wanted.get(key)]


__all__ = ["EnvSpecDict", "add_env_arguments", "env_spec", "parse_env_kwargs", "parse_json_object", "spec_differences"]
