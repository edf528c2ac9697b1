"""Run a policy through a :class:`~collectors.recorder.TrajectoryRecorder`, episode by episode.

One loop serves the ``collect`` command, the demo and the benchmarks: episode ``e`` is reset with
seed ``seed + e`` (so ``meta.json`` names a reproducible seed) and acted in by ``policy_for(e)``.

>>> import tempfile, envs
>>> from collectors import TrajectoryRecorder
>>> recorder = TrajectoryRecorder(envs.make("PointReach-v0"), tempfile.mkdtemp())
>>> steps = record_episodes(recorder, lambda e: envs.expert_policy(recorder, seed=e), range(3), seed=0)
>>> recorder.close(); recorder.stats.written["positive"]
3

Several workers (``collect --n-envs`` processes, ``--engine ray`` actors) share the episodes as
:func:`split_episodes` deals them:

>>> split_episodes(5, 2)
[[0, 2, 4], [1, 3]]
"""

from __future__ import annotations

from typing import Any, Callable, Iterable

Policy = Callable[[Any], Any]


def split_episodes(episodes: int, workers: int) -> list[list[int]]:
    """Episodes ``0..episodes-1`` dealt round-robin to ``min(workers, episodes)`` workers: each
    episode exactly once, the shares differing by at most one episode."""
    n = max(1, min(workers, episodes))
    return [list(range(i, episodes, n)) for i in range(n)]


def record_episodes(
    recorder: Any,
    policy_for: Callable[[int], Policy],
    episodes: Iterable[int],
    *,
    seed: int,
    success_key: str = "success",
    on_episode: Callable[[int, int, bool], None] | None = None,
) -> int:
    """Run every episode in ``episodes`` to its end; return the number of env steps taken.

    Stops early once the recorder's caps are all reached (``recorder.full``). ``on_episode(e,
    steps, success)`` is called after each episode (for progress bars).
    """
    total = 0
    for e in episodes:
        if recorder.full:
            break
        policy = policy_for(e)
        obs, info = recorder.reset(seed=seed + e)
        steps, success, done = 0, bool(info.get(success_key, False)), False
        while not done:
            obs, _reward, terminated, truncated, info = recorder.step(policy(obs))
            steps += 1
            success = success or bool(info.get(success_key, False))
            done = terminated or truncated
        total += steps
        if on_episode is not None:
            on_episode(e, steps, success)
    return total
