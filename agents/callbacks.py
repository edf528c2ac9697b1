"""SB3 callbacks that log what the agent is *really* achieving next to what it is paid.

``RewardLogger`` logs, per finished training episode, the true success (from the env's own
``info["success"]``), the env's own return (``info["env_reward"]`` when a reward wrapper moved it
there, else the reward) and the return the agent was trained on. ``TrueSuccessEval`` runs
deterministic evaluation episodes on a separate env and logs the true success rate.
``TimedModel`` adds up the seconds a reward model (or a stateful potential's feed) takes, for the
run's reward-inference share.
"""

from __future__ import annotations

import copy
import signal
import sys
import threading
import time
from collections import deque
from typing import Any

from reward_wrappers.models.base import RewardModel

import numpy as np
from stable_baselines3.common.callbacks import BaseCallback
from stable_baselines3.common.vec_env import VecEnvWrapper, VecNormalize
from stable_baselines3.common.vec_env import VecEnv


class TimedModel:
    """Forwards to a reward model and adds up the seconds spent in ``predict``."""

    def __init__(self, model: RewardModel) -> None:
        self.model = model
        self.seconds = 0.0

    @property
    def spec(self):  # noqa: ANN201 - the wrapped model's, which a refit may swap
        return self.model.spec

    def predict(self, batch):  # noqa: ANN001 - same signature as the wrapped model
        start = time.perf_counter()
        try:
            return self.model.predict(batch)
        finally:
            self.seconds += time.perf_counter() - start

    def __getattr__(self, name: str) -> Any:
        value = getattr(self.model, name)
        if name == "episode_potential":  # a stateful potential computes in its feed: time that instead
            return lambda *args, **kwargs: _TimedFeed(value(*args, **kwargs), self)
        return value


class _TimedFeed:
    """A stateful potential's per-env feed whose ``begin``/``evaluate`` seconds add to a :class:`TimedModel`."""

    def __init__(self, feed: Any, owner: TimedModel) -> None:
        self.feed, self.owner = feed, owner

    def _timed(self, method: Any, *args: Any, **kwargs: Any) -> Any:
        start = time.perf_counter()
        try:
            return method(*args, **kwargs)
        finally:
            self.owner.seconds += time.perf_counter() - start

    def begin(self, *args: Any, **kwargs: Any) -> Any:
        return self._timed(self.feed.begin, *args, **kwargs)

    def evaluate(self, *args: Any, **kwargs: Any) -> Any:
        return self._timed(self.feed.evaluate, *args, **kwargs)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.feed, name)


class RewardLogger(BaseCallback):
    """Log ``rollout/true_success_rate``, ``rollout/env_return`` and ``rollout/learned_return``."""

    def __init__(self, window: int = 100) -> None:
        super().__init__()
        self.success: deque[float] = deque(maxlen=window)
        self.env_returns: deque[float] = deque(maxlen=window)
        self.agent_returns: deque[float] = deque(maxlen=window)

    def _on_training_start(self) -> None:
        n = self.training_env.num_envs
        self._env_ret = np.zeros(n)
        self._agent_ret = np.zeros(n)
        self._succeeded = np.zeros(n, dtype=bool)

    def _on_step(self) -> bool:
        rewards = np.asarray(self.locals["rewards"], dtype=np.float64)
        dones = np.asarray(self.locals["dones"], dtype=bool)
        for i, info in enumerate(self.locals["infos"]):
            self._agent_ret[i] += rewards[i]
            self._env_ret[i] += float(info.get("env_reward", rewards[i]))
            self._succeeded[i] |= bool(info.get("success", info.get("is_success", False)))
            if dones[i]:
                self.success.append(float(self._succeeded[i]))
                self.env_returns.append(self._env_ret[i])
                self.agent_returns.append(self._agent_ret[i])
                self._env_ret[i] = self._agent_ret[i] = 0.0
                self._succeeded[i] = False
        return True

    def _on_rollout_end(self) -> None:
        if self.success:
            self.logger.record("rollout/true_success_rate", float(np.mean(self.success)))
            self.logger.record("rollout/env_return", float(np.mean(self.env_returns)))
            self.logger.record("rollout/learned_return", float(np.mean(self.agent_returns)))


def evaluate_true_success(model: Any, env: VecEnv, episodes: int, seed: int | None = None) -> dict[str, float]:
    """Deterministic episodes on ``env``: fraction that reached true success, and at the end.

    Each env contributes a fixed share of the episodes (as in SB3's ``evaluate_policy``), so
    short episodes (an env that ends on success) cannot crowd out long failures. With ``seed``
    the initial states repeat between evaluations of one run.
    """
    n = env.num_envs
    targets = np.array([(episodes + i) // n for i in range(n)])
    counts = np.zeros(n, dtype=int)
    if seed is not None:
        env.seed(seed)
    once = np.zeros(n, dtype=bool)
    ret = np.zeros(n)
    obs = env.reset()
    results_once: list[float] = []
    results_end: list[float] = []
    returns: list[float] = []
    reported = False
    while (counts < targets).any():
        actions, _ = model.predict(obs, deterministic=True)
        obs, rewards, dones, infos = env.step(actions)
        ret += rewards
        for i, info in enumerate(infos):
            reported |= "success" in info
            once[i] |= bool(info.get("success", False))
            if dones[i]:
                if counts[i] < targets[i]:
                    results_once.append(float(once[i]))
                    results_end.append(float(bool(info.get("success", False))))
                    returns.append(float(ret[i]))
                    counts[i] += 1
                once[i] = False
                ret[i] = 0.0
    return {
        "success_rate": float(np.mean(results_once)),
        "success_at_end": float(np.mean(results_end)),
        "env_return": float(np.mean(returns)),
        "reports_success": reported,  # False: the env has no success flag; the rates above mean nothing
    }


def find_vec_normalize(env: VecEnv) -> VecNormalize | None:
    """The outermost VecNormalize in a wrapper stack, if any."""
    while isinstance(env, VecEnvWrapper):
        if isinstance(env, VecNormalize):
            return env
        env = env.venv
    return None


def copy_obs_normalization(source: VecEnv, target: VecEnv) -> None:
    """Give ``target`` the observation statistics of ``source``.

    Unlike SB3's ``sync_envs_normalization`` this does not require identical stacks: the
    evaluation env has no reward wrappers, the training env may have several.
    """
    src, dst = find_vec_normalize(source), find_vec_normalize(target)
    if (src is None) != (dst is None):
        raise ValueError("observation normalisation must wrap both the training and the evaluation env, or neither")
    if src is not None:
        dst.obs_rms = copy.deepcopy(src.obs_rms)


class TrueSuccessEval(BaseCallback):
    """Every ``eval_freq`` env steps, evaluate deterministically on true success and log it."""

    def __init__(self, eval_env: VecEnv, eval_freq: int, episodes: int, seed: int | None = None, report: bool = False) -> None:
        super().__init__()
        self.seed = seed
        self.report = report
        self.eval_env = eval_env
        self.eval_freq = eval_freq
        self.episodes = episodes
        self.curve: list[dict[str, float]] = []
        self.eval_seconds = 0.0
        self._next = 0

    def _evaluate(self) -> None:
        start = time.perf_counter()
        # Evaluate with the training env's current observation statistics (VecNormalize).
        copy_obs_normalization(self.training_env, self.eval_env)
        result = evaluate_true_success(self.model, self.eval_env, self.episodes, self.seed)
        self.eval_seconds += time.perf_counter() - start
        result["steps"] = int(self.num_timesteps)
        self.curve.append(result)
        self.logger.record("eval/true_success_rate", result["success_rate"])
        self.logger.record("eval/true_success_at_end", result["success_at_end"])
        self.logger.record("eval/env_return", result["env_return"])
        self.logger.dump(self.num_timesteps)
        if self.report:
            success = (f"true success {result['success_rate']:.2f}" if result["reports_success"]
                       else "true success: none reported by the env")
            print(f"  steps {self.num_timesteps:>8d}  {success}  env return {result['env_return']:.2f}", flush=True)

    def _on_training_start(self) -> None:
        if not self.curve:  # a resumed run has its curve already (``load_state``)
            self._evaluate()
        self._next = (self.model.num_timesteps // self.eval_freq + 1) * self.eval_freq

    def state(self) -> dict[str, Any]:
        """What a checkpoint keeps (``agents.checkpoint``)."""
        return {"curve": self.curve, "eval_seconds": self.eval_seconds}

    def load_state(self, state: dict[str, Any]) -> None:
        self.curve, self.eval_seconds = list(state["curve"]), float(state["eval_seconds"])

    def _on_step(self) -> bool:
        if self.num_timesteps >= self._next:
            self._next += self.eval_freq
            self._evaluate()
        return True

    def _on_training_end(self) -> None:
        if not self.curve or self.curve[-1]["steps"] != self.num_timesteps:
            self._evaluate()


class StopOnSignal(BaseCallback):
    """Ends training cleanly at the next step after SIGTERM or SIGINT (Ctrl-C): the run still saves
    its model, ``eval.json`` and reports, and says it was stopped (``received``). A second signal
    is handled as Python would without this callback. Only in the main thread (where signals go)."""

    SIGNALS = (signal.SIGTERM, signal.SIGINT)

    def __init__(self) -> None:
        super().__init__(0)
        self.received: str | None = None
        self._previous: dict[int, Any] = {}
        if threading.current_thread() is threading.main_thread():
            for sig in self.SIGNALS:
                self._previous[sig] = signal.signal(sig, self._handle)

    def _handle(self, signum: int, frame: Any) -> None:
        if self.received is not None:  # a second signal: no more patience
            self.restore()
            signal.raise_signal(signum)
            return
        self.received = signal.Signals(signum).name
        print(f"{self.received}: stopping after this step; saving the run", file=sys.stderr, flush=True)

    def _on_step(self) -> bool:
        return self.received is None

    def restore(self) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
        self._previous = {}
