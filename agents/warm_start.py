"""Warm start: a run's agent begins from a previous run's weights (``train-agent --init-from``).

The seed's pipeline pre-trains a policy on the dense reward, then continues it on the learned one.
Here the source is a run directory (``model.zip`` and, where the family normalises observations,
``obs_normalization.npz``) or a ``model.zip`` alone. Nothing is unpickled:

* the weights, optimiser states and SAC's entropy coefficient are read with
  ``torch.load(weights_only=True)`` (SB3's ``load_from_zip_file(load_data=False)``) into a model
  this run built itself;
* what the source was (algorithm, observation and action spaces) is read from the plain-JSON
  fields of ``model.zip``'s ``data``, never from its serialised (cloudpickled) entries, and
  compared with this run's so that a mismatch is named, not a shape error deep in torch;
* the observation statistics come from ``obs_normalization.npz`` (plain arrays, written beside
  every run's ``vecnormalize.pkl``), loaded with ``allow_pickle=False``.

The replay buffer is not carried over: a warm-started SAC refills its own.
"""

from __future__ import annotations

import hashlib
import json
import os
import pathlib
import zipfile
from dataclasses import dataclass
from typing import Any, Optional

import numpy as np
from stable_baselines3.common.base_class import BaseAlgorithm
from stable_baselines3.common.save_util import data_to_json, load_from_zip_file
from stable_baselines3.common.vec_env import VecNormalize

#: the observation statistics of a normalising run, as plain arrays (``KEY.mean``, ``KEY.var``, ``KEY.count``)
NORMALIZATION_FILE = "obs_normalization.npz"
_BOX_KEY = "obs"  # the key of a Box observation's statistics in NORMALIZATION_FILE


def save_normalization(venv: VecNormalize, path: str | os.PathLike[str]) -> None:
    """Write ``venv``'s observation statistics to ``path`` (atomic: a temporary file, then a rename)."""
    stats = venv.obs_rms if isinstance(venv.obs_rms, dict) else {_BOX_KEY: venv.obs_rms}
    arrays = {}
    for key, rms in stats.items():
        arrays.update({f"{key}.mean": rms.mean, f"{key}.var": rms.var, f"{key}.count": np.asarray(rms.count)})
    path = pathlib.Path(path)
    tmp = path.with_name(path.name + ".tmp.npz")
    np.savez(tmp, **arrays)
    os.replace(tmp, path)


def load_normalization(path: str | os.PathLike[str], venv: VecNormalize) -> None:
    """Set ``venv``'s observation statistics from ``path``; ``ValueError`` names a missing key or a
    shape that does not fit this run's observations."""
    stats = venv.obs_rms if isinstance(venv.obs_rms, dict) else {_BOX_KEY: venv.obs_rms}
    with np.load(path, allow_pickle=False) as saved:
        for key, rms in stats.items():
            for part in ("mean", "var", "count"):
                name = f"{key}.{part}"
                if name not in saved:
                    raise ValueError(f"--init-from: {path} has no {name!r} (it has {sorted(saved.files)}); this run "
                                     f"normalises observation key {key!r}")
            if saved[f"{key}.mean"].shape != rms.mean.shape:
                raise ValueError(f"--init-from: {path} {key}.mean has shape {saved[f'{key}.mean'].shape}, this run's "
                                 f"observations have shape {rms.mean.shape}")
            rms.mean = saved[f"{key}.mean"].astype(np.float64)
            rms.var = saved[f"{key}.var"].astype(np.float64)
            rms.count = float(saved[f"{key}.count"])


@dataclass(frozen=True)
class WarmStartSource:
    """A resolved ``--init-from``: the model, its statistics (if any) and the model's SHA-256."""

    model: pathlib.Path
    normalization: Optional[pathlib.Path]
    sha256: str

    def record(self) -> dict[str, Any]:
        """What ``run_config.json`` keeps of the source."""
        return {"model": str(self.model), "sha256": self.sha256,
                "normalization": None if self.normalization is None else str(self.normalization)}


def resolve_source(source: str | os.PathLike[str]) -> WarmStartSource:
    """``RUN_DIR`` or ``MODEL.zip`` -> its model, statistics and hash; ``FileNotFoundError`` says what is missing."""
    path = pathlib.Path(source)
    model = path / "model.zip" if path.is_dir() else path
    if not model.is_file():
        raise FileNotFoundError(f"--init-from {source}: no {model} (give a finished run's directory or its model.zip)")
    if not zipfile.is_zipfile(model):
        raise ValueError(f"--init-from {source}: {model} is not an SB3 model.zip")
    stats = model.parent / NORMALIZATION_FILE
    digest = hashlib.sha256(model.read_bytes()).hexdigest()
    return WarmStartSource(model, stats if stats.is_file() else None, digest)


#: the optimiser state each algorithm's model.zip holds (SB3's ``_get_torch_save_params``)
_OPTIMIZERS = {"sac": "actor.optimizer.pth", "ppo": "policy.optimizer.pth"}


def _readable(entry: Any) -> Any:
    """The plain fields SB3 writes beside a serialised object (its type and attributes as text)."""
    if isinstance(entry, dict):
        return {k: v for k, v in entry.items() if k not in (":serialized:", "_np_random")}
    return entry


def describe_model(model_zip: pathlib.Path) -> dict[str, Any]:
    """Algorithm and spaces of a saved SB3 model, from the plain JSON of its ``data`` member."""
    with zipfile.ZipFile(model_zip) as archive:
        members = set(archive.namelist())
        if "data" not in members:
            raise ValueError(f"--init-from: {model_zip} has no 'data' member (not an SB3 model.zip)")
        data = json.loads(archive.read("data"))
    # The optimisers saved name the algorithm (PPO's policy class lives in SB3's common module).
    algo = next((name for name, member in _OPTIMIZERS.items() if member in members), f"unknown ({sorted(members)})")
    return {"algorithm": algo, "observation space": _readable(data.get("observation_space")),
            "action space": _readable(data.get("action_space"))}


def check_compatible(source: WarmStartSource, agent: BaseAlgorithm, algo: str) -> None:
    """``ValueError`` naming what differs (algorithm, observation space, action space) between the
    source and this run's freshly built ``agent``."""
    found = describe_model(source.model)
    here = json.loads(data_to_json({"observation_space": agent.observation_space, "action_space": agent.action_space}))
    wanted = {"algorithm": algo, "observation space": _readable(here["observation_space"]),
              "action space": _readable(here["action_space"])}
    for what, value in wanted.items():
        if found[what] != value:
            show = lambda v: {k: v[k] for k in (":type:", "_shape", "dtype", "spaces") if k in v} if isinstance(v, dict) else v  # noqa: E731
            raise ValueError(f"--init-from {source.model}: its {what} is {show(found[what])}, this run's is {show(value)}")


def warm_start(agent: BaseAlgorithm, source: WarmStartSource, algo: str, normalize: Optional[VecNormalize]) -> None:
    """Load ``source`` into ``agent`` (weights, optimisers, entropy coefficient) and, when this run
    normalises observations, ``normalize``'s statistics (refused if the source has none)."""
    check_compatible(source, agent, algo)
    if normalize is not None:
        if source.normalization is None:
            raise FileNotFoundError(f"--init-from {source.model}: this run normalises observations and the source has "
                                    f"no {NORMALIZATION_FILE} beside it (a run from before it was written: train the "
                                    "source again, or give --normalize-obs no to both)")
        load_normalization(source.normalization, normalize)
    _, params, variables = load_from_zip_file(source.model, device=agent.device, load_data=False)
    agent.set_parameters(params, exact_match=True, device=agent.device)
    for name, value in (variables or {}).items():  # SAC's log_ent_coef: learned, part of the agent
        target = agent
        for part in name.split("."):
            target = getattr(target, part)
        target.data.copy_(value.data)


__all__ = ["NORMALIZATION_FILE", "WarmStartSource", "check_compatible", "describe_model", "load_normalization",
           "resolve_source", "save_normalization", "warm_start"]
