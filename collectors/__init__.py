"""Record trajectories from any Gymnasium env into positive/negative ``.npy`` buffers.

The first stage of every learned-reward workflow: wrap an env in :class:`TrajectoryRecorder`,
run any policy (or any training loop), and each finished episode lands under
``out_dir/positive/`` or ``out_dir/negative/`` in a pickle-free, memory-mappable format
(:mod:`collectors.format`). :func:`load_trajectories` reads it back; :func:`import_rlinf`
converts RLinf's pickled buffers.

>>> import tempfile, gymnasium as gym
>>> from collectors import TrajectoryRecorder, load_trajectories
>>> out = tempfile.mkdtemp()
>>> env = TrajectoryRecorder(gym.make("CartPole-v1", max_episode_steps=3), out, require_success_key=False)
>>> _ = env.reset(seed=1); _ = [env.step(1) for _ in range(3)]; env.close()
>>> trajs = load_trajectories(out, split="negative")  # CartPole reports no success: unlabelled
>>> len(trajs), trajs[0].labelled, trajs[0].labels.tolist()
(1, False, [nan, nan, nan, nan])
"""

from collectors.format import FORMAT_VERSION, TrajectoryFormatError
from collectors.reader import Trajectory, load_trajectories
from collectors.recorder import TrajectoryRecorder
from collectors.rlinf import PickleRefusedError, import_rlinf
from collectors.rollout import record_episodes
from collectors.writer import TrajectoryWriteError, count_trajectories

__all__ = [
    "FORMAT_VERSION",
    "PickleRefusedError",
    "Trajectory",
    "TrajectoryFormatError",
    "TrajectoryRecorder",
    "TrajectoryWriteError",
    "count_trajectories",
    "import_rlinf",
    "load_trajectories",
    "record_episodes",
]
