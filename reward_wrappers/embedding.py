"""Add a frozen backbone's embedding of an image key to the observation, online.

A reward model fitted on embeddings that ``rewardswap embed`` stored (``rgb_emb`` from ``rgb``)
reads the same key online: :class:`EmbedObservation` (per env), :class:`VecEmbedObservation`
(SB3 VecEnv; one batched backbone call per vector step, terminal observations of done envs
included), :class:`VectorEmbedObservation` (gymnasium vector env with next-step autoreset, one
call per step) and :class:`TorchEmbedObservation` (batched torch simulators with ManiSkill's
conventions: tensors stay on the device, the pre-reset batch in ``info["final_observation"]``
embedded in the same call) compute it with the same :class:`~reward_wrappers.models.backbones.Backbone`
and round it to the stored dtype, so online and offline rewards agree. Given the reward model, each refuses a
backbone whose identity differs from the one the model's training embeddings came from. Stack
them under the reward wrappers.

>>> import envs
>>> import torch
>>> net = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(16 * 16 * 3, 8))
>>> env = EmbedObservation(envs.make("PointReach-v0", obs="state+rgb", render_size=16), Backbone(net, name="tiny"))
>>> obs, _ = env.reset(seed=0)
>>> obs["rgb_emb"].shape, obs["rgb_emb"].dtype
((8,), dtype('float16'))
"""

from __future__ import annotations

import warnings
from typing import Any, Optional, Sequence

import gymnasium as gym
import numpy as np
import torch
from gymnasium import spaces
from stable_baselines3.common.vec_env import VecEnv, VecEnvWrapper
from stable_baselines3.common.vec_env.base_vec_env import VecEnvObs, VecEnvStepReturn

from reward_wrappers.models.backbones import EMBEDDING_DTYPE, Backbone, load_backbone, to_stored
from reward_wrappers.torch_batched import FINAL_OBS_KEYS

__all__ = ["EmbedObservation", "TorchEmbedObservation", "VecEmbedObservation", "VectorEmbedObservation",
           "check_backbone", "embedding_inputs", "vec_embed_for"]


def check_backbone(model: Any, backbone: Backbone, out_key: str) -> None:
    """Raise ``ValueError`` unless ``model`` was fitted on ``out_key`` embeddings from ``backbone``."""
    recorded = ((getattr(model, "metadata", None) or {}).get("embeddings") or {}).get(out_key)
    if recorded is None:
        raise ValueError(f"the reward model records no backbone for {out_key!r} (its metadata 'embeddings' lacks it): "
                         "fit it on buffers embedded with `rewardswap embed`")
    identity = recorded["identity"]
    if identity != backbone.identity:
        raise ValueError(f"backbone mismatch for {out_key!r}: the reward model was fitted on embeddings from {identity}, "
                         f"this backbone is {backbone.identity}; use the same backbone (same weights)")


def embedding_inputs(models: Sequence[Any]) -> dict[str, dict[str, Any]]:
    """``{embedding key: record}`` over the models' inputs that are stored embeddings (their
    checkpoints' metadata ``"embeddings"``: identity, source, and the image key ``from``)."""
    found: dict[str, dict[str, Any]] = {}
    for model in models:
        records = (getattr(model, "metadata", None) or {}).get("embeddings") or {}
        for key in (model.spec.inputs if getattr(model, "spec", None) is not None else ()):
            if key in records:
                found[key] = dict(records[key])
    return found


def vec_embed_for(venv: VecEnv, models: Sequence[Any], backbone: Backbone | str | None = None) -> VecEnv:
    """``venv`` with a :class:`VecEmbedObservation` for every embedding key the models read.

    ``backbone`` (default: the source each model's checkpoint recorded) is checked against every
    model that reads the key.
    """
    for key, record in embedding_inputs(models).items():
        source = backbone if backbone is not None else record.get("source")
        if source is None:
            raise ValueError(f"the reward model reads the embedding {key!r} but records no backbone source: pass --backbone")
        try:
            # The recorded chunk size: the same numerics as the stored embeddings (backbones.py).
            loaded = load_backbone(source, batch_rows=int(record.get("batch_rows", 8)))
        except ValueError as exc:
            if backbone is not None:
                raise
            raise ValueError(f"the checkpoint records backbone source {source!r} for {key!r}, which cannot be rebuilt here "
                             f"({exc}); pass --backbone SOURCE with the same weights") from None
        if record.get("device", "cpu") != "cpu":
            warnings.warn(f"{key!r} was embedded on {record['device']}; computed here on the CPU its float16 values can "
                          "differ from the stored ones (GPU convolutions round differently)", RuntimeWarning, stacklevel=2)
        for model in models:
            if key in ((getattr(model, "metadata", None) or {}).get("embeddings") or {}):
                check_backbone(model, loaded, key)
        venv = VecEmbedObservation(venv, loaded, key=record.get("from", "rgb"), out_key=key)
    return venv


def _embedding_space(backbone: Backbone, image_space: spaces.Space) -> spaces.Box:
    probe = backbone(np.zeros((1, *image_space.shape), np.uint8))
    return spaces.Box(-np.inf, np.inf, (probe.shape[1],), EMBEDDING_DTYPE)


def _dict_space(space: spaces.Space, key: str, what: str) -> spaces.Dict:
    if not isinstance(space, spaces.Dict) or key not in space.spaces:
        keys = list(space.spaces) if isinstance(space, spaces.Dict) else [type(space).__name__]
        raise ValueError(f"{what} needs a Dict observation with the image key {key!r}; it has {keys} "
                         "(make the env with obs='state+rgb' or obs='rgb' in a Dict)")
    return space


def _prepare(wrapper: Any, space: spaces.Space, backbone: Backbone | str, key: str, out_key: Optional[str],
             model: Any) -> spaces.Dict:
    """Set ``wrapper.backbone``, ``.key``, ``.out_key`` (checked against ``model``); return the
    single-env observation space with the embedding key added."""
    wrapper.backbone = load_backbone(backbone)
    wrapper.key, wrapper.out_key = key, out_key or f"{key}_emb"
    if model is not None:
        check_backbone(model, wrapper.backbone, wrapper.out_key)
    single = _dict_space(space, key, type(wrapper).__name__)
    return spaces.Dict({**single.spaces, wrapper.out_key: _embedding_space(wrapper.backbone, single[key])})


class EmbedObservation(gym.ObservationWrapper):
    """Per-env: ``obs[out_key] = backbone(obs[key])`` as float16. Twin: :class:`VecEmbedObservation`."""

    def __init__(self, env: gym.Env, backbone: Backbone | str, *, key: str = "rgb", out_key: Optional[str] = None,
                 model: Any = None) -> None:
        super().__init__(env)
        self.observation_space = _prepare(self, env.observation_space, backbone, key, out_key, model)

    def observation(self, observation: dict[str, Any]) -> dict[str, Any]:
        embedding = to_stored(self.backbone(np.asarray(observation[self.key])[None]))[0]
        return {**observation, self.out_key: embedding}


class VecEmbedObservation(VecEnvWrapper):
    """SB3 VecEnv twin of :class:`EmbedObservation`: one backbone call per vector step."""

    def __init__(self, venv: VecEnv, backbone: Backbone | str, *, key: str = "rgb", out_key: Optional[str] = None,
                 model: Any = None) -> None:
        super().__init__(venv, observation_space=_prepare(self, venv.observation_space, backbone, key, out_key, model))

    def reset(self) -> VecEnvObs:
        obs = self.venv.reset()
        obs[self.out_key] = to_stored(self.backbone(obs[self.key]))  # type: ignore[index, call-overload]
        return obs

    def step_wait(self) -> VecEnvStepReturn:
        obs, rewards, dones, infos = self.venv.step_wait()
        done = [i for i, info in enumerate(infos) if "terminal_observation" in info]
        # The next observations and the done envs' terminal ones, in one call.
        images = np.concatenate([obs[self.key], *[infos[i]["terminal_observation"][self.key][None] for i in done]])  # type: ignore[index, call-overload]
        embedded = to_stored(self.backbone(images))
        obs[self.out_key] = embedded[: self.num_envs]  # type: ignore[index, call-overload]
        for row, i in enumerate(done):
            infos[i]["terminal_observation"] = {**infos[i]["terminal_observation"], self.out_key: embedded[self.num_envs + row]}
        return obs, rewards, dones, infos


class VectorEmbedObservation(gym.vector.VectorObservationWrapper):
    """gymnasium vector twin of :class:`EmbedObservation`: one backbone call per step. Next-step (or
    disabled) autoreset only, as gymnasium's ``VectorObservationWrapper``: there an episode's last
    frame is an ordinary observation; with same-step autoreset use :class:`TorchEmbedObservation`'s
    conventions."""

    def __init__(self, env: gym.vector.VectorEnv, backbone: Backbone | str, *, key: str = "rgb",
                 out_key: Optional[str] = None, model: Any = None) -> None:
        super().__init__(env)
        self.single_observation_space = _prepare(self, env.single_observation_space, backbone, key, out_key, model)
        self.observation_space = gym.vector.utils.batch_space(self.single_observation_space, self.num_envs)

    def observations(self, observations: dict[str, Any]) -> dict[str, Any]:
        return {**observations, self.out_key: to_stored(self.backbone(np.asarray(observations[self.key])))}


class TorchEmbedObservation(gym.vector.VectorWrapper):
    """Torch-batched twin of :class:`EmbedObservation` (conventions of
    :mod:`reward_wrappers.torch_batched`): one backbone call per step on the env's tensors, the
    done envs' pre-reset frames (``info["final_observation"]``, mask ``"_final_observation"``)
    included; embeddings are float16 tensors on the env's device."""

    def __init__(self, env: gym.vector.VectorEnv, backbone: Backbone | str, *, key: str = "rgb",
                 out_key: Optional[str] = None, model: Any = None) -> None:
        super().__init__(env)
        self.single_observation_space = _prepare(self, env.single_observation_space, backbone, key, out_key, model)
        self.observation_space = gym.vector.utils.batch_space(self.single_observation_space, self.num_envs)

    def _embed(self, images: torch.Tensor) -> torch.Tensor:
        # torch's float16 cast rounds like numpy's (to nearest even): the same values as stored ones.
        return self.backbone.embed_tensor(images).to(torch.float16).to(images.device)

    def reset(self, **kwargs: Any) -> tuple[Any, dict[str, Any]]:
        obs, info = self.env.reset(**kwargs)
        return {**obs, self.out_key: self._embed(obs[self.key])}, info

    def step(self, actions: Any) -> tuple[Any, Any, Any, Any, dict[str, Any]]:
        obs, rewards, terminations, truncations, info = self.env.step(actions)
        final_key = next((k for k in FINAL_OBS_KEYS if k in info), None)
        if final_key is None:
            return {**obs, self.out_key: self._embed(obs[self.key])}, rewards, terminations, truncations, info
        final, mask = info[final_key], torch.as_tensor(info[f"_{final_key}"], device=obs[self.key].device)
        embedded = self._embed(torch.cat([obs[self.key], final[self.key][mask]]))
        final_embedded = embedded.new_zeros((self.num_envs, embedded.shape[1]))
        final_embedded[mask] = embedded[self.num_envs :]
        info = {**info, final_key: {**final, self.out_key: final_embedded}}
        return {**obs, self.out_key: embedded[: self.num_envs]}, rewards, terminations, truncations, info
