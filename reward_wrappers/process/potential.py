"""The process reward as a shaping potential: hops, three perspectives, fusion, gating, per episode.

:class:`ProcessPotential` turns a fitted ``process_net`` checkpoint (or, with ``model=None``, the
heuristic hop and fusion, which need no network) into a potential for any PBRS twin
(:class:`~reward_wrappers.pbrs.PBRS`, :class:`~reward_wrappers.sb3.VecPBRS`,
:class:`~reward_wrappers.vector.VectorPBRS`, :class:`~reward_wrappers.torch_batched.TorchPBRS`).
At each frame ``x_t`` of an episode that started at ``x_0``, with goal features ``g``:

* ``Phi_I = clip(sum_k hop(x_{k-1}, x_k), 0, 1)`` (incremental),
* ``Phi_F = clip(hop(x_0, x_t), 0, 1)`` (forward: progress made since the first frame),
* ``Phi_B = clip(1 - hop(x_t, g), 0, 1)`` (backward: one minus the progress still to make),

where ``hop`` is the fitted predictor, so "distance" is measured in task progress rather than
raw feature units. The fusion gives weights and a confidence (:func:`~reward_wrappers.process.fusion.fuse`
under a :class:`~reward_wrappers.process.fusion.FusionOverride`); the potential is the fused
``Phi*`` gated by the confidence (toward 0, or toward the episode's first value). The potential depends on the episode so far (its first frame, the sum of
hops, smoothed weights), so PBRS's policy invariance holds on the history-augmented state.

Online use needs a goal given explicitly (:class:`Goal`: fixed goal features, an observation or
``info`` key, or a function of the observation); :meth:`ProcessPotential.score_episode` scores a recorded
episode offline and may take its last frame as the goal (the result says so).

>>> import numpy as np
>>> potential = ProcessPotential(None, goal=Goal.frame(np.zeros(2)), inputs={"state": (2,)})
>>> out = potential.score_episode({"state": np.array([[4.0, 0.0], [2.0, 0.0], [0.0, 0.0]])}, gamma=1.0)
>>> out.perspectives[:, 1].round(2).tolist(), out.metadata["goal"]
([0.0, 0.5, 1.0], 'explicit')
"""

from __future__ import annotations

import os
import pathlib
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping, Optional, Union

import numpy as np
import torch

from reward_wrappers.models.base import InputSpec, ModelSpec, import_function
from reward_wrappers.cores.rewards import INFO_PREFIX, validate_gamma
from reward_wrappers.cores.ops import Array, Frames, Mask, NumpyOps, Ops
from reward_wrappers.process.fusion import PERSPECTIVES, FusionOverride, Fused, fuse, heuristic_fusion, heuristic_hop
from reward_wrappers.process.net import ProcessNet, fusion_inputs, raw_features

#: Info keys of the per-step diagnostics, beside PBRS's ``potential`` and ``shaping_reward``.
DIAGNOSTIC_KEYS = ("process_phi_star", "process_confidence", "process_gate", "process_entropy", "process_disagreement",
                   *(f"process_phi_{p}" for p in PERSPECTIVES), *(f"process_weight_{p}" for p in PERSPECTIVES))

GoalFn = Callable[[Frames], Any]


@dataclass(frozen=True)
class Goal:
    """Where an episode's goal features come from (the raw feature layout of the model's inputs).

    ``Goal.frame(values)``: fixed features (a 1-D vector, or one observation as ``{key: value}``);
    ``Goal.obs(key)``: an observation key holding the goal features; ``Goal.info(key)``: an ``info``
    key holding them (the env must report it in every info, reset and step, as the wrappers read
    a model's info keys at every frame); ``Goal.fn(f)``: ``f(frames)``
    returns ``(B, F)`` goal features from the batched observation as numpy arrays (e.g. a goal
    position in the state: ``envs.point_reach.goal_state``). The goal is taken at each episode's
    first frame and held for the episode.
    """

    kind: str
    value: Any

    @classmethod
    def frame(cls, values: Union[np.ndarray, Mapping[str, Any]]) -> "Goal":
        return cls("frame", values)

    @classmethod
    def obs(cls, key: str) -> "Goal":
        return cls("obs", key)

    @classmethod
    def info(cls, key: str) -> "Goal":
        return cls("info", key)

    @classmethod
    def fn(cls, function: GoalFn) -> "Goal":
        if not callable(function):
            raise TypeError(f"Goal.fn takes a callable frames -> (B, F) goal features, got {function!r}")
        return cls("fn", function)

    @classmethod
    def parse(cls, text: str) -> "Goal":
        """``frame:FILE.npy`` (1-D raw features), ``obs:KEY``, ``info:KEY`` or ``fn:MODULE:FUNCTION`` (a CLI option)."""
        kind, _, rest = text.partition(":")
        if kind == "frame" and rest:
            path = pathlib.Path(rest)
            if not path.is_file():
                raise FileNotFoundError(f"goal features file {path} does not exist")
            return cls.frame(np.load(path, allow_pickle=False))
        if kind == "obs" and rest:
            return cls.obs(rest)
        if kind == "info" and rest:
            return cls.info(rest)
        if kind == "fn" and rest.count(":") == 1:
            return cls.fn(import_function(rest, "goal function"))
        raise ValueError(f"a goal is frame:FILE.npy, obs:KEY, info:KEY or fn:MODULE:FUNCTION, got {text!r}")

    def keys(self) -> tuple[str, ...]:
        """Observation keys the goal reads beside the model's inputs."""
        return (self.value,) if self.kind == "obs" else ()

    def info_keys(self) -> tuple[str, ...]:
        """``info`` keys the goal reads (the wrappers put them in the frames, see ``core.INFO_PREFIX``)."""
        return (self.value,) if self.kind == "info" else ()

    def features(self, frames: Frames, spec: ModelSpec, n: int) -> np.ndarray:
        """``(n, F)`` raw goal features for a batch of ``n`` frames."""
        if self.kind == "frame":
            value = self.value
            goal = raw_features(spec, {k: np.asarray(value[k])[None] for k in spec.inputs}) if isinstance(value, Mapping) \
                else np.asarray(value, dtype=np.float64).reshape(1, -1)
            return np.repeat(goal, n, axis=0)
        if self.kind == "fn":
            value = self.value({k: _numpy(v) for k, v in frames.items()})
        else:
            value = frames[self.value if self.kind == "obs" else INFO_PREFIX + self.value]
        return np.asarray(_numpy(value), dtype=np.float64).reshape(n, -1)


def _numpy(value: Any) -> Any:
    return value.detach().cpu().numpy() if isinstance(value, torch.Tensor) else value


class _LearnedScorer:
    """numpy in, numpy out around a fitted :class:`~reward_wrappers.process.net.ProcessNet`."""

    def __init__(self, net: ProcessNet, spec: ModelSpec) -> None:
        self.net, self.spec = net.eval(), spec
        self.device = next(net.parameters()).device

    def _t(self, x: np.ndarray) -> torch.Tensor:
        return torch.as_tensor(x, dtype=torch.float32, device=self.device)

    @torch.no_grad()
    def normalise(self, raw: np.ndarray) -> np.ndarray:
        return self.net.normalise(self._t(raw)).double().cpu().numpy()

    @torch.no_grad()
    def hop(self, before: np.ndarray, after: np.ndarray, goal: np.ndarray, scale: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        mu, sigma = self.net.hop(self._t(before), self._t(after))
        return mu.double().cpu().numpy(), sigma.double().cpu().numpy()

    @torch.no_grad()
    def novelty(self, x: np.ndarray, change: np.ndarray) -> np.ndarray:
        return self.net.novelty(self._t(x), self._t(change)).double().cpu().numpy()

    @torch.no_grad()
    def fusion(self, phis: np.ndarray, sigmas: np.ndarray, novelty: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        out = self.net.fusion(self._t(fusion_inputs(phis, sigmas, novelty))).double().cpu().numpy()
        return out[:, :3], out[:, 3]


class _HeuristicScorer:
    """The no-network fallback: features as recorded, distance hops, agreement-weighted fusion."""

    def normalise(self, raw: np.ndarray) -> np.ndarray:
        return raw

    def hop(self, before: np.ndarray, after: np.ndarray, goal: np.ndarray, scale: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        return heuristic_hop(before, after, goal, scale)

    def novelty(self, x: np.ndarray, change: np.ndarray) -> np.ndarray:
        return np.zeros(len(x))

    def fusion(self, phis: np.ndarray, sigmas: np.ndarray, novelty: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        return heuristic_fusion(phis, sigmas)


@dataclass
class ProcessEpisode:
    """An episode scored offline: per frame ``phi_star``, ``confidence``, ``potential`` (gated),
    ``perspectives`` ``(T, 3)``, ``weights`` ``(T, 3)``, ``entropy``, ``disagreement``, ``gate``;
    ``r_shape`` ``(T-1,)`` = ``gamma * potential[t+1] - potential[t]`` (``potential`` of the last
    frame taken as 0 when ``terminated``)."""

    phi_star: np.ndarray
    confidence: np.ndarray
    potential: np.ndarray
    r_shape: np.ndarray
    perspectives: np.ndarray
    weights: np.ndarray
    entropy: np.ndarray
    disagreement: np.ndarray
    gate: np.ndarray
    metadata: dict[str, Any] = field(default_factory=dict)


class ProcessPotential:
    """A process reward used as a PBRS potential (see the module docstring).

    Args:
        model: a fitted ``process_net`` (a checkpoint path or a loaded model), or ``None`` for the
            heuristic hop and fusion (then ``inputs`` names the feature keys and shapes).
        goal: where each episode's goal features come from; required for online use.
        override: fusion controls (:class:`~reward_wrappers.process.fusion.FusionOverride`).
        inputs: ``{key: shape}`` of the features, heuristic mode only.
    """

    def __init__(self, model: Any, *, goal: Optional[Goal] = None, override: Optional[FusionOverride] = None,
                 inputs: Optional[Mapping[str, tuple[int, ...]]] = None) -> None:
        if isinstance(model, (str, os.PathLike)):
            from reward_wrappers.models.checkpoint import load_reward_model

            model = load_reward_model(model)
        if model is None:
            if not inputs:
                raise ValueError("the heuristic process potential (model=None) needs inputs={key: shape}")
            self.spec = ModelSpec({k: InputSpec(tuple(s), "float32") for k, s in inputs.items()}, output="progress")
            self.scorer: Any = _HeuristicScorer()
            self.metadata: dict[str, Any] = {}
        else:
            net = getattr(model, "net", None)
            if not isinstance(net, ProcessNet):
                raise ValueError(f"{model!r:.120} is not a process reward model (its network is "
                                 f"{type(net).__name__}); fit one with `rewardswap train-reward process`")
            self.spec, self.metadata = model.spec, dict(getattr(model, "metadata", {}))
            self.scorer = _LearnedScorer(net, model.spec)
        self.goal = goal
        self.override = override or FusionOverride()

    @property
    def extra_keys(self) -> tuple[str, ...]:
        """Observation keys read beside the features (the goal's)."""
        return self.goal.keys() if self.goal is not None else ()

    @property
    def info_keys(self) -> tuple[str, ...]:
        """``info`` keys read (the goal's)."""
        return self.goal.info_keys() if self.goal is not None else ()

    def predict(self, batch: Frames) -> np.ndarray:
        raise TypeError("a process potential keeps per-episode state: use it as a PBRS potential or call score_episode()")

    def episode_potential(self, num_envs: int, ops: Ops) -> "ProcessFeed":
        """Per-env episode state for a PBRS core over ``num_envs`` envs (needs a goal)."""
        if self.goal is None:
            raise ValueError(
                "a process potential used while training needs an explicit goal: ProcessPotential(model, "
                "goal=Goal.frame(features) | Goal.obs(KEY) | Goal.info(KEY) | Goal.fn(function)), or train-agent "
                "--process-goal frame:FILE.npy | obs:KEY | info:KEY | fn:MODULE:FUNCTION. Only offline scoring "
                "(score_episode) may use an episode's last frame as its goal")
        return ProcessFeed(self, num_envs, ops)

    def score_episode(self, frames: Mapping[str, Any], *, gamma: float, terminated: bool = False,
                      goal: Optional[Goal] = None) -> ProcessEpisode:
        """Score one recorded episode (``{key: (T, ...)}``) frame by frame, exactly as online.

        The goal is ``goal``, else the potential's own, else (offline only) the episode's last
        frame; ``metadata["goal"]`` says which.
        """
        n = len(next(iter(frames.values())))
        if n == 0:
            raise ValueError("score_episode needs at least one frame")
        gamma = validate_gamma(gamma)
        chosen, said = goal or self.goal, "explicit"
        if chosen is None:
            chosen, said = Goal.frame({k: np.asarray(frames[k])[-1] for k in self.spec.inputs}), "last frame (offline only)"
        feed = ProcessFeed(self, 1, NumpyOps(), goal=chosen)
        rows = []
        for t in range(n):
            frame = {k: np.asarray(v)[t : t + 1] for k, v in frames.items()}
            values = feed.begin(frame) if t == 0 else feed.evaluate(frame)[0]
            rows.append({**{k: v[0] for k, v in feed.diagnostics.items()}, "potential": float(values[0])})
        col = {k: np.array([r[k] for r in rows]) for k in rows[0]}
        potential = col["potential"]
        following = potential[1:].copy()
        if terminated and n > 1:
            following[-1] = 0.0
        return ProcessEpisode(
            phi_star=col["process_phi_star"], confidence=col["process_confidence"], potential=potential,
            r_shape=gamma * following - potential[:-1],
            perspectives=np.stack([col[f"process_phi_{p}"] for p in PERSPECTIVES], axis=1),
            weights=np.stack([col[f"process_weight_{p}"] for p in PERSPECTIVES], axis=1),
            entropy=col["process_entropy"], disagreement=col["process_disagreement"], gate=col["process_gate"],
            metadata={"goal": said, "override": self.override},
        )


class ProcessFeed:
    """Per-env episode state of a :class:`ProcessPotential`, with :class:`~reward_wrappers.cores.feed.ModelFeed`'s
    ``begin``/``evaluate`` interface, so :class:`~reward_wrappers.cores.rewards.PBRSCore` runs it in every twin.

    Arithmetic runs in float64 numpy (the hop and fusion networks are called once per step for all
    rows); values and diagnostics are returned in the core's array type (``ops``).
    """

    def __init__(self, potential: ProcessPotential, num_envs: int, ops: Ops, goal: Optional[Goal] = None) -> None:
        self.ops, self.num_envs = ops, int(num_envs)
        self.goal = goal or potential.goal
        self.spec, self.scorer, self.override = potential.spec, potential.scorer, potential.override
        dim = sum(int(np.prod(s.shape)) for s in self.spec.inputs.values())
        self.x0 = np.zeros((self.num_envs, dim))
        self.previous = np.zeros((self.num_envs, dim))
        self.goal_x = np.zeros((self.num_envs, dim))
        self.scale = np.ones(self.num_envs)
        self.hop_sum = np.zeros(self.num_envs)
        self.sigma_sum = np.zeros(self.num_envs)
        self.steps = np.zeros(self.num_envs, dtype=np.int64)
        self.weights = np.full((self.num_envs, 3), np.nan)
        self.start_phi = np.full(self.num_envs, np.nan)  # each episode's first Phi* (gate_toward="start")
        self.diagnostics: dict[str, Array] = {}

    def _read(self, frames: Frames) -> np.ndarray:
        return self.scorer.normalise(raw_features(self.spec, frames))

    def _goal(self, frames: Frames, like: np.ndarray) -> np.ndarray:
        goal = self.goal.features(frames, self.spec, len(like))  # type: ignore[union-attr]
        if goal.shape != like.shape:
            raise ValueError(f"goal features have shape {goal.shape[1:]}, the model's features {like.shape[1:]} "
                             f"(keys {sorted(self.spec.inputs)}, flattened in that order)")
        return self.scorer.normalise(goal)

    def _start(self, rows: np.ndarray, x: np.ndarray, goal: np.ndarray) -> None:
        self.x0[rows], self.previous[rows], self.goal_x[rows] = x, x, goal
        self.scale[rows] = np.maximum(np.linalg.norm(x - goal, axis=1), 1e-8)
        self.hop_sum[rows], self.sigma_sum[rows], self.steps[rows] = 0.0, 0.0, 0
        self.weights[rows] = np.nan
        self.start_phi[rows] = np.nan

    def _values(self, rows: np.ndarray, x: np.ndarray, stepped: np.ndarray) -> tuple[np.ndarray, Fused, np.ndarray]:
        """Advance ``rows`` (those ``stepped`` by one hop from their previous frame) to ``x``; fuse."""
        n, prev, x0, goal, scale = len(rows), self.previous[rows], self.x0[rows], self.goal_x[rows], self.scale[rows]
        mu, sigma = self.scorer.hop(np.concatenate([prev, x0, x]), np.concatenate([x, x, goal]),
                                    np.concatenate([goal, goal, goal]), np.concatenate([scale, scale, scale]))
        self.hop_sum[rows] += np.where(stepped, mu[:n], 0.0)
        self.sigma_sum[rows] += np.where(stepped, sigma[:n], 0.0)
        self.steps[rows] += stepped
        phis = np.clip(np.stack([self.hop_sum[rows], mu[n : 2 * n], 1.0 - mu[2 * n :]], axis=1), 0.0, 1.0)
        sigmas = np.stack([self.sigma_sum[rows] / np.maximum(self.steps[rows], 1), sigma[n : 2 * n], sigma[2 * n :]], axis=1)
        novelty = self.scorer.novelty(x, np.where(stepped[:, None], x - prev, 0.0))
        weight_logits, confidence_logit = self.scorer.fusion(phis, sigmas, novelty)
        fused = fuse(weight_logits, confidence_logit, phis, self.override, self.weights[rows], self.start_phi[rows])
        self.weights[rows], self.previous[rows] = fused.weights, x
        self.start_phi[rows] = np.where(np.isnan(self.start_phi[rows]), fused.phi_star, self.start_phi[rows])
        return fused.potential, fused, phis

    def _record(self, fused: Fused, phis: np.ndarray) -> None:
        columns = {"process_phi_star": fused.phi_star, "process_confidence": fused.confidence, "process_gate": fused.gate,
                   "process_entropy": fused.entropy, "process_disagreement": fused.disagreement,
                   **{f"process_phi_{p}": phis[:, i] for i, p in enumerate(PERSPECTIVES)},
                   **{f"process_weight_{p}": fused.weights[:, i] for i, p in enumerate(PERSPECTIVES)}}
        self.diagnostics = {k: self.ops.floats(v) for k, v in columns.items()}

    def _rows(self, mask: Optional[Mask]) -> np.ndarray:
        if mask is None:
            return np.arange(self.num_envs)
        if isinstance(mask, torch.Tensor):
            mask = mask.detach().cpu().numpy()
        return np.flatnonzero(np.asarray(mask, dtype=bool))

    @staticmethod
    def _take(frames: Frames, rows: np.ndarray) -> dict[str, Any]:
        def pick(v: Any) -> Any:
            return v[torch.as_tensor(rows, device=v.device)] if isinstance(v, torch.Tensor) else np.asarray(v)[rows]
        return {k: pick(v) for k, v in frames.items()}

    def begin(self, frames: Frames, mask: Optional[Mask] = None, *, want_values: bool = True) -> Optional[Array]:
        """Start episodes at ``frames`` for masked envs; their potential ``Phi(s_0)`` (0 elsewhere)."""
        rows = self._rows(mask)
        values = np.zeros(self.num_envs)
        if len(rows):
            taken = self._take(frames, rows)
            x = self._read(taken)
            self._start(rows, x, self._goal(taken, x))
            values[rows], fused, phis = self._values(rows, x, np.zeros(len(rows), dtype=bool))
            if mask is None:  # (a partial reset keeps the last step's diagnostics of the other envs)
                self._record(fused, phis)
        return self.ops.floats(values)

    def evaluate(self, frames: Frames, *, fresh: Optional[Mask] = None, ended: Optional[Mask] = None,
                 restart_frames: Optional[Frames] = None, want_restart_values: bool = True) -> tuple[Array, Optional[Array]]:
        """Potentials at ``frames`` ``(B,)`` (``fresh`` envs start there) and, for ``ended`` envs,
        at their ``restart_frames``, where their next episodes start."""
        rows = np.arange(self.num_envs)
        x = self._read(frames)
        starting = np.zeros(self.num_envs, dtype=bool) if fresh is None else np.asarray(self._as_numpy(fresh), dtype=bool)
        if starting.any():
            taken = self._take(frames, rows[starting])
            self._start(rows[starting], x[starting], self._goal(taken, x[starting]))
        values, fused, phis = self._values(rows, x, ~starting)
        self._record(fused, phis)
        restart_values = None
        if restart_frames is not None and ended is not None and (restart := self._rows(ended)).size:
            taken = self._take(restart_frames, restart)
            rx = self._read(taken)
            self._start(restart, rx, self._goal(taken, rx))
            restart_values = np.zeros(self.num_envs)
            restart_values[restart] = self._values(restart, rx, np.zeros(len(restart), dtype=bool))[0]
        return self.ops.floats(values), None if restart_values is None else self.ops.floats(restart_values)

    @staticmethod
    def _as_numpy(mask: Mask) -> np.ndarray:
        return mask.detach().cpu().numpy() if isinstance(mask, torch.Tensor) else np.asarray(mask)


def load_potential(path: str | os.PathLike, goal: Optional[str] = None, override: Optional[Mapping[str, Any]] = None) -> Any:
    """The checkpoint at ``path`` as a PBRS potential: a :class:`ProcessPotential` (goal parsed
    by :meth:`Goal.parse`, ``override`` the :class:`FusionOverride` fields) for a process model,
    else the model itself (which takes neither)."""
    from reward_wrappers.models.checkpoint import load_reward_model

    model = load_reward_model(path)
    if not isinstance(getattr(model, "net", None), ProcessNet):
        if goal is not None or override:
            raise ValueError(f"{path} is not a process-reward model: --process-goal and --process-override apply only to one")
        return model
    if goal is None:
        raise ValueError(f"{path} is a process-reward model: training on it needs its goal, --process-goal obs:KEY | "
                         "info:KEY | fn:MODULE:FUNCTION | frame:FILE.npy (for the built-in envs fn:envs.point_reach:goal_state, "
                         "fn:envs.point_key_door:goal_state)")
    try:
        fusion = FusionOverride(**dict(override or {}))
    except TypeError as exc:
        raise ValueError(f"--process-override: {exc}; fields: {list(FusionOverride.__dataclass_fields__)}") from None
    return ProcessPotential(model, goal=Goal.parse(goal), override=fusion)


__all__ = ["DIAGNOSTIC_KEYS", "Goal", "ProcessEpisode", "ProcessFeed", "ProcessPotential", "load_potential"]
