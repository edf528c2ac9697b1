"""The process reward (seed 004) as a potential: telescoping and per-episode state in every PBRS
twin and autoreset mode, fusion overrides by hand, the offline episode API, goals, refusals."""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np
import pytest
import torch

from reward_wrappers import PBRS, FusionOverride, Goal, InputSpec, ModelSpec, ProcessPotential, TorchRewardModel
from reward_wrappers.process.fusion import fuse, heuristic_hop
from reward_wrappers.process.net import ProcessNet
from tests.reward_helpers import GAMMA, check_telescoping, counting_env, rollout, actions_for
from tests.test_reward_wrappers_vector import FORMS, NUM_ENVS, SEED, make_form, run_vector, vector_actions, wrapper_family

SPEC = ModelSpec({"state": InputSpec((3,), "float32")}, output="progress", has_confidence=True)


def counting_goal(frames: dict[str, np.ndarray]) -> np.ndarray:
    """Goal features of the counting env: step 6 at x = 0 (a function of the state, as online)."""
    goal = np.array(frames["state"], dtype=np.float64)
    goal[:, 0], goal[:, 1] = 6.0, 0.0
    return goal


def random_process_model(seed: int = 0) -> TorchRewardModel:
    """An unfitted process_net (random weights): enough for arithmetic that holds for any weights."""
    torch.manual_seed(seed)
    net = ProcessNet(SPEC, hidden=16, fusion_hidden=8, reference_rows=5)
    net.reference.normal_()
    return TorchRewardModel(net.eval(), SPEC, {"name": "process_net", "kwargs": {"hidden": 16, "fusion_hidden": 8, "reference_rows": 5}})


def potentials() -> dict[str, Any]:
    override = FusionOverride(weight_smoothing=0.5, risk_tolerance=0.2)
    toward_start = FusionOverride(weight_smoothing=0.5, risk_tolerance=0.2, gate_toward="start")
    return {"heuristic": lambda: ProcessPotential(None, goal=Goal.fn(counting_goal), inputs={"state": (3,)}, override=override),
            "learned": lambda: ProcessPotential(random_process_model(), goal=Goal.fn(counting_goal), override=override),
            "learned_toward_start": lambda: ProcessPotential(random_process_model(), goal=Goal.fn(counting_goal),
                                                             override=toward_start)}


def episode_potentials(make: Any, frames: list[np.ndarray]) -> np.ndarray:
    """The potentials of one episode scored alone (a fresh state): what a twin must reproduce."""
    return make().score_episode({"state": np.stack(frames).astype(np.float32)}, gamma=GAMMA).potential


@pytest.mark.parametrize("form", list(FORMS))
@pytest.mark.parametrize("name", list(potentials()))
def test_process_pbrs_telescopes_in_every_twin(form: str, name: str) -> None:
    make = potentials()[name]
    cls = wrapper_family("pbrs")[FORMS[form]]
    venv = make_form(form, FORMS[form], "pbrs", make(), {"gamma": GAMMA}, max_len=7, max_steps=5)
    assert isinstance(venv, cls)
    records, first = run_vector(form, venv, vector_actions(seed=2))
    ended = set()
    for i in range(NUM_ENVS):
        frames, shaping = [first[i]], []
        for rec in records[i]:
            if not rec["real"]:  # NEXT_STEP reset step: the episode starts here
                frames, shaping = [rec["s_new"]], []
                continue
            shaping.append(rec["F"])
            frames.append(rec["s_next"])
            if rec["done"]:
                ended.add(rec["terminated"])
                # Phi from the episode alone: a state leaking from the env's previous episode fails here.
                phi = episode_potentials(make, frames)
                check_telescoping(shaping, phi[0], phi[-1], rec["terminated"], GAMMA, tol=1e-6)
                if rec["s_new"] is not None:
                    frames, shaping = [rec["s_new"]], []
    assert ended == {True, False}  # both ends of an episode were checked


def test_per_env_wrapper_matches_the_offline_episode_and_reports_diagnostics() -> None:
    make = potentials()["learned"]
    env = PBRS(counting_env(max_len=7, max_steps=5), make(), gamma=GAMMA)
    records = rollout(env, actions_for(12, seed=3), seed=5)
    frames, shaping, infos = [records[0]["obs"]], [], []
    for rec in records[1:]:
        if rec["reset"]:
            break
        frames.append(rec["obs"]), shaping.append(rec["info"]["shaping_reward"]), infos.append(rec["info"])
    offline = make().score_episode({"state": np.stack(frames)}, gamma=GAMMA, terminated=records[len(frames) - 1]["terminated"])
    np.testing.assert_allclose(shaping, offline.r_shape, atol=1e-9)
    np.testing.assert_allclose([i["process_confidence"] for i in infos], offline.confidence[1:], atol=1e-9)
    for info in infos:
        weights = [info[f"process_weight_{p}"] for p in "IFB"]
        assert sum(weights) == pytest.approx(1.0) and min(weights) >= 0.01 - 1e-12
        phis = [info[f"process_phi_{p}"] for p in "IFB"]
        assert info["process_disagreement"] == pytest.approx(max(phis) - min(phis))
        assert info["potential"] == pytest.approx(info["process_gate"] * info["process_phi_star"])


def test_episode_state_restarts_each_episode() -> None:
    """Phi_I starts at 0 and the smoothed weights restart: the first frame of an episode scores as
    the first frame of a fresh potential, whatever the previous episode did."""
    make = potentials()["learned"]
    env = PBRS(counting_env(max_len=30, max_steps=4), make(), gamma=GAMMA)
    _, info = env.reset(seed=1)
    fresh_start = info["potential"]
    for _ in range(4):
        env.step(np.ones(1, np.float32))
    obs, info = env.reset(seed=1)
    assert info["potential"] == pytest.approx(fresh_start, abs=1e-12)
    _, _, _, _, info = env.step(np.ones(1, np.float32))
    fresh = PBRS(counting_env(max_len=30, max_steps=4), make(), gamma=GAMMA)
    fresh.reset(seed=1)
    _, _, _, _, first = fresh.step(np.ones(1, np.float32))
    for key in ("process_phi_I", "process_phi_F", "process_weight_I", "process_confidence", "potential"):
        assert info[key] == pytest.approx(first[key], abs=1e-12), key  # hop sum and smoothed weights restarted


def test_fusion_overrides_by_hand() -> None:
    phis = np.array([[0.2, 0.4, 0.8]])
    logits = np.log(np.array([[1.0, 2.0, 1.0]]))  # softmax: 0.25, 0.5, 0.25
    plain = fuse(logits, np.array([0.0]), phis, FusionOverride(min_weight_floor=0.0, entropy_penalty=0.0, gating="none"))
    np.testing.assert_allclose(plain.weights, [[0.25, 0.5, 0.25]])
    assert plain.phi_star[0] == pytest.approx(0.25 * 0.2 + 0.5 * 0.4 + 0.25 * 0.8)
    assert plain.confidence[0] == pytest.approx(0.5) and plain.disagreement[0] == pytest.approx(0.6)
    sharp = fuse(logits, np.array([0.0]), phis, FusionOverride(temperature=0.5, min_weight_floor=0.0))
    np.testing.assert_allclose(sharp.weights, [[1 / 6, 4 / 6, 1 / 6]])  # (1, 4, 1) / 6
    floored = fuse(np.array([[0.0, 50.0, 0.0]]), np.array([0.0]), phis, FusionOverride(min_weight_floor=0.1))
    np.testing.assert_allclose(floored.weights, [[0.1, 0.8, 0.1]], atol=1e-12)
    masked = fuse(logits, np.array([0.0]), phis, FusionOverride(candidate_mask=(True, False, True), min_weight_floor=0.0))
    np.testing.assert_allclose(masked.weights, [[0.5, 0.0, 0.5]])
    assert masked.disagreement[0] == pytest.approx(0.6)  # I vs B; F is not a candidate
    smoothed = fuse(logits, np.array([0.0]), phis, FusionOverride(weight_smoothing=0.75, min_weight_floor=0.0),
                    previous_weights=np.array([[1.0, 0.0, 0.0]]))
    np.testing.assert_allclose(smoothed.weights, [[0.75 + 0.25 * 0.25, 0.25 * 0.5, 0.25 * 0.25]])
    # entropy penalty: uniform weights over 3 have entropy log 3, so confidence * (1 - 0.5)
    uniform = fuse(np.zeros((1, 3)), np.array([0.0]), phis, FusionOverride(entropy_penalty=0.5, min_weight_floor=0.0))
    assert uniform.entropy[0] == pytest.approx(np.log(3)) and uniform.confidence[0] == pytest.approx(0.25)
    # gating: scale by the confidence, or only zero below the risk tolerance
    scaled = fuse(logits, np.array([np.log(3.0)]), phis, FusionOverride(entropy_penalty=0.0, risk_tolerance=0.5))
    assert scaled.confidence[0] == pytest.approx(0.75) and scaled.potential[0] == pytest.approx(0.75 * scaled.phi_star[0])
    threshold = fuse(logits, np.array([np.log(3.0)]), phis, FusionOverride(entropy_penalty=0.0, risk_tolerance=0.8, gating="threshold"))
    assert threshold.gate[0] == 0.0 and threshold.potential[0] == 0.0
    kept = fuse(logits, np.array([np.log(3.0)]), phis, FusionOverride(entropy_penalty=0.0, risk_tolerance=0.7, gating="threshold"))
    assert kept.potential[0] == pytest.approx(kept.phi_star[0])


@pytest.mark.parametrize("bad", [dict(temperature=0), dict(candidate_mask=(False, False, False)), dict(risk_tolerance=1.5),
                                 dict(gating="soft"), dict(min_weight_floor=0.4)])
def test_fusion_override_refuses_bad_values(bad: dict) -> None:
    with pytest.raises(ValueError):
        FusionOverride(**bad)


def test_heuristic_perspectives_on_a_straight_line() -> None:
    """Distances by hand: start 4 from the goal, then 2, then 0 (the heuristic needs no network)."""
    potential = ProcessPotential(None, goal=Goal.frame(np.zeros(2)), inputs={"state": (2,)},
                                 override=FusionOverride(gating="none"))
    out = potential.score_episode({"state": np.array([[4.0, 0.0], [2.0, 0.0], [0.0, 0.0]])}, gamma=0.5, terminated=True)
    np.testing.assert_allclose(out.perspectives, [[0, 0, 0], [0.5, 0.5, 0.5], [1, 1, 1]], atol=1e-12)
    np.testing.assert_allclose(out.phi_star, [0, 0.5, 1], atol=1e-12)
    np.testing.assert_allclose(out.r_shape, [0.5 * 0.5 - 0.0, 0.5 * 0.0 - 0.5], atol=1e-12)  # terminated: Phi(s_T) = 0
    assert out.metadata["goal"] == "explicit"
    hop, sigma = heuristic_hop(np.array([[0.0, 0.0]]), np.array([[3.0, 0.0]]), np.array([[2.0, 0.0]]), np.array([2.0]))
    assert hop[0] == pytest.approx(0.5) and sigma[0] == 0.0  # from 2 to 1 away from the goal, in units of 2


def test_offline_scoring_may_use_the_last_frame_and_says_so() -> None:
    potential = ProcessPotential(None, inputs={"state": (2,)})
    out = potential.score_episode({"state": np.array([[4.0, 0.0], [1.0, 0.0]])}, gamma=1.0)
    assert out.metadata["goal"] == "last frame (offline only)"
    assert out.perspectives[-1].tolist() == [1.0, 1.0, 1.0]


def test_online_use_without_a_goal_is_refused() -> None:
    with pytest.raises(ValueError, match="needs an explicit goal"):
        PBRS(counting_env(), ProcessPotential(random_process_model()), gamma=GAMMA)


def test_goal_from_an_observation_key_and_a_wrong_shape() -> None:
    from gymnasium.vector import SyncVectorEnv

    from reward_wrappers import VectorPBRS

    def env() -> Any:
        return counting_env(max_len=4, max_steps=6, image=True)

    potential = ProcessPotential(None, goal=Goal.obs("missing"), inputs={"state": (3,)})
    with pytest.raises(ValueError, match="missing"):
        VectorPBRS(SyncVectorEnv([env]), potential, gamma=GAMMA)
    wrong = ProcessPotential(None, goal=Goal.fn(lambda f: np.zeros((len(f["state"]), 2))), inputs={"state": (3,)})
    venv = VectorPBRS(SyncVectorEnv([env]), wrong, gamma=GAMMA)
    with pytest.raises(ValueError, match=r"goal features have shape \(2,\)"):
        venv.reset(seed=0)


def test_gate_toward_the_start_leaves_unfamiliar_states_at_the_first_value() -> None:
    phis = np.array([[0.2, 0.4, 0.8]])
    logits = np.log(np.array([[1.0, 2.0, 1.0]]))
    override = FusionOverride(entropy_penalty=0.0, min_weight_floor=0.0, risk_tolerance=0.0, gate_toward="start")
    unsure = fuse(logits, np.array([np.log(1 / 3)]), phis, override, start=np.array([0.1]))  # confidence 0.25
    assert unsure.potential[0] == pytest.approx(0.1 + 0.25 * (unsure.phi_star[0] - 0.1))
    first = fuse(logits, np.array([np.log(1 / 3)]), phis, override, start=np.array([np.nan]))
    assert first.potential[0] == pytest.approx(first.phi_star[0])  # an episode's first frame: its own value
    with pytest.raises(ValueError, match="gate_toward"):
        FusionOverride(gate_toward="middle")


class TargetInInfo(gym.Wrapper):
    """The counting env reporting its goal features in ``info["target"]``, as an env that knows its goal."""

    def reset(self, **kwargs: Any) -> tuple[Any, dict]:
        obs, info = self.env.reset(**kwargs)
        return obs, {**info, "target": counting_goal({"state": obs[None]})[0]}

    def step(self, action: Any) -> tuple:
        obs, reward, terminated, truncated, info = self.env.step(action)
        return obs, reward, terminated, truncated, {**info, "target": counting_goal({"state": obs[None]})[0]}


def info_target_env(**kwargs: Any) -> gym.Env:
    return TargetInInfo(counting_env(**kwargs))


def info_target_venv(form: str) -> Any:
    """``NUM_ENVS`` info-target counting envs in the vector ``form`` (as ``make_form`` builds them)."""
    from gymnasium.vector import AutoresetMode, SyncVectorEnv
    from stable_baselines3.common.vec_env import DummyVecEnv

    from tests.reward_helpers import TorchBatchedCounting

    env_kwargs = dict(max_len=7, max_steps=5)
    if form == "sb3":
        return DummyVecEnv([lambda: info_target_env(**env_kwargs) for _ in range(NUM_ENVS)])
    if form == "torch":
        return TorchBatchedCounting(NUM_ENVS, make=info_target_env, **env_kwargs)
    mode = {"next_step": AutoresetMode.NEXT_STEP, "same_step": AutoresetMode.SAME_STEP}[form]
    return SyncVectorEnv([lambda: info_target_env(**env_kwargs) for _ in range(NUM_ENVS)], autoreset_mode=mode)


@pytest.mark.parametrize("form", list(FORMS))
def test_a_goal_from_info_pays_what_the_same_goal_from_the_observation_pays(form: str) -> None:
    """Goal.info reads the info of each episode's first step in every twin (reset infos under SB3,
    the reset step under NEXT_STEP, the restart's info under SAME_STEP and the torch conventions)."""
    def venv(goal: Goal) -> Any:
        base = info_target_venv(form)
        potential = ProcessPotential(random_process_model(), goal=goal, override=FusionOverride(weight_smoothing=0.5))
        return wrapper_family("pbrs")[FORMS[form]](base, potential, gamma=GAMMA)

    from_info, _ = run_vector(form, venv(Goal.info("target")), vector_actions(seed=4))
    from_obs, _ = run_vector(form, venv(Goal.fn(counting_goal)), vector_actions(seed=4))
    assert any(r["done"] for r in from_info[0])
    for i in range(NUM_ENVS):
        np.testing.assert_allclose([r["reward"] for r in from_info[i]], [r["reward"] for r in from_obs[i]], atol=1e-6)


def test_a_missing_info_key_is_named() -> None:
    env = PBRS(counting_env(), ProcessPotential(random_process_model(), goal=Goal.info("target")), gamma=GAMMA)
    with pytest.raises(KeyError, match=r"info\['target'\].*it has \['success'\]"):
        env.reset(seed=0)


class InfoPotential:
    """A stateless potential reading ``info["target"]`` at every frame (the terminal one included)."""

    spec = SPEC
    info_keys = ("target",)

    def predict(self, batch: dict[str, Any]) -> np.ndarray:
        target = np.asarray(batch["info:target"].cpu() if isinstance(batch["info:target"], torch.Tensor) else batch["info:target"])
        return 0.1 * target[:, 2].astype(np.float64) + 0.01 * np.asarray(batch["state"])[:, 0]


@pytest.mark.parametrize("form", list(FORMS))
def test_info_inputs_of_terminal_frames_come_from_the_final_step(form: str) -> None:
    """s' of an ended episode reads the final step's info, the restart its reset info: every twin
    pays what the per-env wrapper pays (the episode length in the target changes at each restart)."""
    venv = wrapper_family("pbrs")[FORMS[form]](info_target_venv(form), InfoPotential(), gamma=GAMMA)
    records, _ = run_vector(form, venv, vector_actions(seed=5))
    env_kwargs = dict(max_len=7, max_steps=5)

    for i in range(NUM_ENVS):
        real = [r for r in records[i] if r["real"]]
        env = PBRS(info_target_env(**env_kwargs), InfoPotential(), gamma=GAMMA)
        env.reset(seed=SEED + i)
        expected = []
        for r in real:
            _, reward, terminated, truncated, _ = env.step(r["action"])
            expected.append(reward)
            if terminated or truncated:
                env.reset()
        np.testing.assert_allclose([r["reward"] for r in real], expected, atol=1e-5 if form == "torch" else 1e-9)


def test_a_partial_reset_restarts_only_the_masked_envs() -> None:
    """AutoresetMode.DISABLED with reset_mask: an env still mid-episode keeps its history (gymnasium
    pops the mask out of the options it is given; the wrapper must read it first)."""
    from gymnasium.vector import AutoresetMode, SyncVectorEnv

    from reward_wrappers import VectorPBRS

    make = potentials()["learned"]
    base = SyncVectorEnv([lambda: counting_env(max_len=30, max_steps=30) for _ in range(2)], autoreset_mode=AutoresetMode.DISABLED)
    venv = VectorPBRS(base, make(), gamma=GAMMA)
    obs, _ = venv.reset(seed=0)
    frames, shaping = [obs[0]], []
    for t in range(6):
        obs, _, _, _, info = venv.step(np.full((2, 1), 0.3, np.float32))
        frames.append(obs[0]), shaping.append(info["shaping_reward"][0])
        if t == 2:  # env 1 restarts; env 0 goes on
            obs, _ = venv.reset(options={"reset_mask": np.array([False, True])})
    alone = make().score_episode({"state": np.stack(frames)}, gamma=GAMMA)
    np.testing.assert_allclose(shaping, alone.r_shape, atol=1e-6)  # float32 networks, batch of 2 vs 1


def test_a_goal_from_info_under_sb3_wrappers_reads_the_base_envs_reset_infos() -> None:
    """SB3's own VecEnvWrappers keep empty reset_infos; the goal comes from the base VecEnv's."""
    from stable_baselines3.common.vec_env import VecMonitor

    def venv(goal: Goal) -> Any:
        potential = ProcessPotential(random_process_model(), goal=goal)
        return wrapper_family("pbrs")[FORMS["sb3"]](VecMonitor(info_target_venv("sb3")), potential, gamma=GAMMA)

    from_info, _ = run_vector("sb3", venv(Goal.info("target")), vector_actions(seed=6))
    from_obs, _ = run_vector("sb3", venv(Goal.fn(counting_goal)), vector_actions(seed=6))
    for i in range(NUM_ENVS):
        np.testing.assert_allclose([r["reward"] for r in from_info[i]], [r["reward"] for r in from_obs[i]], atol=1e-9)
