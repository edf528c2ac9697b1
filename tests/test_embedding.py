"""Rewards on frozen embeddings: backbones and their identity, the online embedding wrappers, and
the transformer progress model with and without a task-text token."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from stable_baselines3.common.vec_env import DummyVecEnv

import envs
from reward_wrappers.models.backbones import Backbone, load_backbone, to_stored
from reward_wrappers.embedding import EmbedObservation, VecEmbedObservation, check_backbone


def tiny_net(seed: int = 0) -> torch.nn.Module:
    """16x16 images -> 6 features."""
    torch.manual_seed(seed)
    return torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3, stride=2), torch.nn.ReLU(), torch.nn.Flatten(), torch.nn.Linear(196, 6))


def test_identity_follows_the_weights_and_sources_load_without_pickles(tmp_path) -> None:
    a, b = Backbone(tiny_net(0), name="tiny"), Backbone(tiny_net(1), name="tiny")
    assert a.identity != b.identity and a.identity == Backbone(tiny_net(0), name="tiny").identity
    frames = np.random.default_rng(0).integers(0, 256, (5, 16, 16, 3), dtype=np.uint8)
    path = tmp_path / "tiny.ts"
    torch.jit.save(torch.jit.trace(a.module, torch.zeros(1, 3, 16, 16)), str(path))
    scripted = load_backbone(f"torchscript:{path}")
    assert np.allclose(scripted(frames), a(frames), atol=1e-6)
    for source, missing in ((f"torchscript:{tmp_path / 'nope.ts'}", "nope.ts"), ("torchvision:resnet18@/no/such.pth", "such.pth"),
                            (f"rewardswap:{tmp_path / 'none.pt'}", "none.pt")):
        with pytest.raises(FileNotFoundError, match=missing):
            load_backbone(source)
    with pytest.raises(ValueError, match="unknown source"):
        load_backbone("hub:dinov2")


def test_online_wrappers_embed_every_observation_once_per_step() -> None:
    backbone = Backbone(tiny_net(), name="tiny")
    make = lambda: envs.make("PointReach-v0", obs="state+rgb", render_size=16, max_episode_steps=6)  # noqa: E731
    single = EmbedObservation(make(), backbone)
    obs, _ = single.reset(seed=3)
    assert obs["rgb_emb"].dtype == np.float16 and np.array_equal(obs["rgb_emb"], to_stored(backbone(obs["rgb"][None]))[0])
    assert single.observation_space["rgb_emb"].shape == (6,)

    reference = Backbone(tiny_net(), name="tiny")  # same weights, calls not counted
    venv = VecEmbedObservation(DummyVecEnv([make, make]), backbone)
    calls = []
    original = backbone.embed_tensor
    backbone.embed_tensor = lambda images: (calls.append(len(images)), original(images))[1]  # count the batched calls
    venv.seed(0)
    obs = venv.reset()
    ended = 0
    for step in range(8):
        obs, _, dones, infos = venv.step(np.zeros((2, 2), np.float32))  # standing still: no success, time limit at 6
        assert np.array_equal(obs["rgb_emb"], to_stored(reference(obs["rgb"])))
        for i in np.flatnonzero(dones):  # the real last frame of a done env is embedded too
            terminal = infos[i]["terminal_observation"]
            assert np.array_equal(terminal["rgb_emb"], to_stored(reference(terminal["rgb"][None]))[0])
            ended += 1
    assert ended == 2
    assert calls == [2, 2, 2, 2, 2, 2, 4, 2, 2]  # reset, then one call per step; step 6 adds both terminal frames


def test_a_model_refuses_another_backbone() -> None:
    backbone = Backbone(tiny_net(), name="tiny")

    class Fitted:
        metadata = {"embeddings": {"rgb_emb": {"identity": backbone.identity}}}

    check_backbone(Fitted(), backbone, "rgb_emb")
    with pytest.raises(ValueError, match="backbone mismatch.*same backbone"):
        EmbedObservation(envs.make("PointReach-v0", obs="state+rgb", render_size=16), Backbone(tiny_net(1), name="tiny"),
                         model=Fitted())
    with pytest.raises(ValueError, match="records no backbone"):
        check_backbone(type("Bare", (), {"metadata": {}})(), backbone, "rgb_emb")


def test_transformer_progress_fits_with_and_without_text(tmp_path) -> None:
    from reward_wrappers import load_reward_model
    from tests.test_progress import reach_trajectories
    from trainers import fit_progress
    from trainers.evaluate import predict_trajectory

    data = reach_trajectories(16)
    common = dict(inputs=("state",), window=4, trunk="transformer", transformer={"d_model": 16, "layers": 1, "heads": 2},
                  epochs=1, steps_per_epoch=3, batch_size=16, hidden=16, device="cpu", progress=False)
    plain = load_reward_model(fit_progress(data, tmp_path / "plain.pt", **common))
    text = tmp_path / "task.npy"
    np.save(text, np.linspace(-1, 1, 12))
    texted = load_reward_model(fit_progress(data, tmp_path / "text.pt", text=text, **common))
    assert type(plain.net.trunk).__name__ == "RewardTransformer" and not plain.net.trunk.has_text
    assert texted.net.trunk.has_text and torch.allclose(texted.net.trunk.text, torch.linspace(-1, 1, 12))
    values = predict_trajectory(texted, data[0])
    assert values.shape == (len(data[0].labels),) and np.isfinite(values).all()
    with torch.no_grad():  # the text token reaches the output
        texted.net.trunk.text.mul_(-1)
    assert not np.allclose(predict_trajectory(texted, data[0]), values)
    with pytest.raises(ValueError, match="trunk='transformer'"):
        fit_progress(data, tmp_path / "bad.pt", text=text, **{**common, "trunk": "mlp"})
    with pytest.raises(ValueError, match="1-D vector"):
        fit_progress(data, tmp_path / "bad.pt", text=np.zeros((2, 3)), **common)


def test_embeddings_do_not_depend_on_how_many_frames_share_a_call() -> None:
    # Unchunked, this CNN at batch 40 and at batch 1 gave a different float16 value for 1 of these
    # 2,560 entries (measured; 0.7-0.9 % for ResNet-10): stored and online embeddings would disagree.
    from reward_wrappers.models.encoders import SmallCNN

    torch.manual_seed(0)
    backbone = Backbone(SmallCNN(3, 16, 64), name="cnn", batch_rows=8)
    frames = np.random.default_rng(1).integers(0, 256, (40, 64, 64, 3), dtype=np.uint8)
    together = to_stored(backbone(frames))
    assert np.array_equal(together, np.concatenate([to_stored(backbone(frames[i : i + 1])) for i in range(40)]))
    assert np.array_equal(together[:24], to_stored(backbone(frames[:24])))


def test_train_agent_computes_the_embeddings_online(tmp_path) -> None:
    # End to end from the command line: collect, embed, fit a transformer progress model on the
    # embeddings, then PBRS on it while an agent trains; rgb_emb is computed online by the backbone
    # the checkpoint records, and another backbone is refused before training.
    from agents.cli import main

    data, ts = tmp_path / "data", tmp_path / "tiny.ts"
    torch.jit.save(torch.jit.trace(tiny_net(), torch.zeros(1, 3, 16, 16)), str(ts))
    assert main(["collect", "--env", "PointReach-v0", "--obs", "state+rgb", "--render-size", "16", "--episodes", "10",
                 "--noise", "0.3", "--out", str(data), "--seed", "0", "--no-progress"]) == 0
    assert main(["embed", "--data", str(data), "--backbone", f"torchscript:{ts}", "--no-progress"]) == 0
    progress = tmp_path / "progress.pt"
    assert main(["train-reward", "progress", "--data", str(data), "--inputs", "rgb_emb", "--trunk", "transformer",
                 "--window", "3", "--frame-sampling", "uniform", "--d-model", "16", "--heads", "2", "--layers", "1",
                 "--hidden", "16", "--epochs", "1", "--out", str(progress), "--device", "cpu", "--no-progress"]) == 0
    run = tmp_path / "run"
    assert main(["train-agent", "--env", "PointReach-v0", "--render-size", "16", "--pbrs", str(progress), "--algo", "ppo",
                 "--steps", "256", "--n-envs", "2", "--eval-freq", "256", "--eval-episodes", "1", "--logdir", str(run),
                 "--algo-kwargs", '{"n_steps": 64, "batch_size": 64}']) == 0
    assert (run / "eval.json").is_file()
    other = tmp_path / "other.ts"
    torch.jit.save(torch.jit.trace(tiny_net(1), torch.zeros(1, 3, 16, 16)), str(other))
    with pytest.raises(ValueError, match="backbone mismatch"):
        main(["train-agent", "--env", "PointReach-v0", "--render-size", "16", "--pbrs", str(progress), "--steps", "64",
              "--backbone", f"torchscript:{other}", "--logdir", str(tmp_path / "run2")])


def test_gymnasium_vector_twin_embeds_like_the_single_wrapper() -> None:
    import gymnasium as gym

    from reward_wrappers.embedding import VectorEmbedObservation

    backbone = Backbone(tiny_net(), name="tiny")
    make = lambda: envs.make("PointReach-v0", obs="state+rgb", render_size=16, max_episode_steps=5)  # noqa: E731
    vector = VectorEmbedObservation(gym.vector.SyncVectorEnv([make, make]), backbone)
    assert vector.single_observation_space["rgb_emb"].shape == (6,) and vector.observation_space["rgb_emb"].shape == (2, 6)
    obs, _ = vector.reset(seed=[4, 5])
    singles = [EmbedObservation(make(), backbone) for _ in range(2)]
    expected = [env.reset(seed=s)[0] for env, s in zip(singles, (4, 5))]
    for step in range(7):  # through an autoreset
        for i in range(2):
            assert np.array_equal(obs["rgb_emb"][i], expected[i]["rgb_emb"])
        action = np.full((2, 2), 0.5, np.float32)
        obs, *_ = vector.step(action)
        # next-step autoreset: step 5 truncates, the call after it resets (its action ignored)
        expected = [env.step(action[i])[0] if step != 5 else env.reset()[0] for i, env in enumerate(singles)]


def test_torch_batched_twin_embeds_final_observations_in_the_same_call() -> None:
    from reward_wrappers.embedding import TorchEmbedObservation
    from tests.reward_helpers import TorchBatchedCounting

    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(4 * 4 * 3, 5))
    backbone, reference = Backbone(net, name="flat"), Backbone(net, name="flat")
    env = TorchEmbedObservation(TorchBatchedCounting(3, image=True, max_len=4, max_steps=6), backbone)
    calls = []
    original = backbone.embed_tensor
    backbone.embed_tensor = lambda images: (calls.append(len(images)), original(images))[1]
    obs, _ = env.reset(seed=0)
    finals = 0
    for _ in range(10):
        assert obs["rgb_emb"].dtype == torch.float16
        assert np.array_equal(obs["rgb_emb"].numpy(), to_stored(reference(obs["rgb"].numpy())))
        obs, _, terminated, truncated, info = env.step(torch.zeros(3, 1))
        if "final_observation" in info:
            mask = info["_final_observation"]
            final = info["final_observation"]
            assert np.array_equal(final["rgb_emb"][mask].numpy(), to_stored(reference(final["rgb"][mask].numpy())))
            finals += int(mask.sum())
            assert calls[-1] == 3 + int(mask.sum())  # next frames and the done envs' last frames, one call
    assert finals > 0 and len(calls) == 11


def test_a_state_and_image_policy_does_not_see_the_embeddings(tmp_path) -> None:
    # The reward side adds rgb_emb; the policy (and its evaluation env, which has no embeddings)
    # must see only state and rgb. Before: KeyError 'rgb_emb' at the first evaluation.
    from agents.cli import main

    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3, stride=2), torch.nn.ReLU(), torch.nn.Flatten(), torch.nn.Linear(1444, 6))
    data, ts = tmp_path / "data", tmp_path / "tower.ts"
    torch.jit.save(torch.jit.trace(net, torch.zeros(1, 3, 40, 40)), str(ts))
    assert main(["collect", "--env", "PointReach-v0", "--obs", "state+rgb", "--render-size", "40", "--episodes", "6",
                 "--noise", "0.3", "--out", str(data), "--seed", "0", "--no-progress"]) == 0
    assert main(["embed", "--data", str(data), "--backbone", f"torchscript:{ts}", "--no-progress"]) == 0
    progress = tmp_path / "progress.pt"
    assert main(["train-reward", "progress", "--data", str(data), "--inputs", "rgb_emb", "--hidden", "16", "--epochs", "1",
                 "--out", str(progress), "--device", "cpu", "--no-progress"]) == 0
    assert main(["train-agent", "--env", "PointReach-v0", "--render-size", "40", "--policy-obs", "state+rgb",
                 "--pbrs", str(progress), "--algo", "ppo", "--steps", "128", "--n-envs", "2", "--eval-freq", "128",
                 "--eval-episodes", "1", "--logdir", str(tmp_path / "run"),
                 "--algo-kwargs", '{"n_steps": 64, "batch_size": 64}']) == 0


def test_any_image_key_shape_and_state_dtype(tmp_path) -> None:
    # A foreign env: a non-square camera under another key, a float64 state under another key, and
    # success under its own info key. Stored (rewardswap embed) and online embeddings agree.
    import gymnasium as gym
    from gymnasium import spaces

    from collectors import TrajectoryRecorder, load_trajectories
    from collectors.rollout import record_episodes
    from trainers.embed import embed_buffers

    class Foreign(gym.Env):
        observation_space = spaces.Dict(cam=spaces.Box(0, 255, (24, 40, 3), np.uint8),
                                        joints=spaces.Box(-1, 1, (3,), np.float64))
        action_space = spaces.Box(-1, 1, (1,), np.float32)

        def _obs(self):
            cam = np.full((24, 40, 3), 10, np.uint8)
            cam[self.t % 24, (3 * self.t) % 40] = 250  # one moving pixel
            return {"cam": cam, "joints": np.full(3, self.t / 10.0)}

        def reset(self, *, seed=None, options=None):
            super().reset(seed=seed)
            self.t = 0
            return self._obs(), {"done_ok": False}

        def step(self, action):
            self.t += 1
            return self._obs(), 0.0, self.t >= 6, False, {"done_ok": self.t >= 6}

    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(24 * 40 * 3, 5))
    backbone = Backbone(net, name="flat")
    recorder = TrajectoryRecorder(Foreign(), tmp_path / "data", success_key="done_ok")
    record_episodes(recorder, lambda episode: (lambda obs: np.zeros(1, np.float32)), range(2), seed=0)
    recorder.close()
    embed_buffers(tmp_path / "data", backbone, key="cam", progress=False)
    stored = load_trajectories(tmp_path / "data")[0].obs["cam_emb"]
    env = EmbedObservation(Foreign(), backbone, key="cam")
    obs, _ = env.reset(seed=0)
    online = [obs["cam_emb"]] + [env.step(np.zeros(1, np.float32))[0]["cam_emb"] for _ in range(6)]
    assert stored.dtype == np.float16 and np.array_equal(stored, np.stack(online))
    assert env.observation_space["cam_emb"].shape == (5,) and "joints" in env.observation_space.spaces
