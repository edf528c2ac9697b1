"""Image and video reward-network base classes: a user's subclass fits the checkpoint format, the
registry and every wrapper, with its frame sampling applied online as in training."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from envs.dummy import CountingEnv
from reward_wrappers import LearnedReward, load_reward_model, register_architecture, save_reward_model
from reward_wrappers.models.base import InputSpec, ModelSpec
from reward_wrappers.models.frame_nets import ImageRewardNet, VideoRewardNet
from reward_wrappers.models.networks import RewardNet, TorchRewardModel
from trainers.evaluate import predict_trajectory
from tests.episodes import rollout


class TimeWeighted(VideoRewardNet):
    """A video model: a learned weight per frame position over the per-frame features."""

    def __init__(self, spec: ModelSpec, **kwargs) -> None:
        super().__init__(spec, **kwargs)
        self.time = torch.nn.Parameter(torch.linspace(-1.0, 1.0, self.window))
        self.out = torch.nn.Linear(self.feature_dim, 1)

    def score(self, features: torch.Tensor) -> torch.Tensor:
        return self.out((features * self.time[None, :, None]).sum(dim=1))


class FrameLinear(ImageRewardNet):
    def __init__(self, spec: ModelSpec, **kwargs) -> None:
        super().__init__(spec, **kwargs)
        self.out = torch.nn.Linear(self.feature_dim, 1)

    def score_frame(self, features: torch.Tensor) -> torch.Tensor:
        return self.out(features)


class _Trajectory:
    def __init__(self, obs: dict[str, np.ndarray]) -> None:
        self.obs, self.labels = obs, np.zeros(len(next(iter(obs.values()))))


def test_a_user_video_net_runs_online_as_offline(tmp_path) -> None:
    register_architecture("test_time_weighted", TimeWeighted)
    env = CountingEnv(max_len=30, max_steps=25, terminate=False, image=True)  # 25 steps every episode
    spec = ModelSpec.from_space(env.observation_space, ("rgb", "state"), window=3, sampling="strided", stride=4)
    torch.manual_seed(0)
    model = TorchRewardModel.build(spec, "test_time_weighted", hidden=16, feature_dim=8, cnn_width=4)
    path = save_reward_model(model, tmp_path / "video.pt")
    loaded = load_reward_model(path)
    assert type(loaded.net) is TimeWeighted and loaded.spec.frame_sampling == spec.frame_sampling

    wrapped = LearnedReward(env, loaded, output="logit")
    wrapped.reset(seed=0)
    steps = rollout(wrapped, lambda obs: np.zeros(1, np.float32))
    online = np.array([s[4]["learned_reward"] for s in steps[1:]])
    obs = {k: np.stack([s[0][k] for s in steps]) for k in ("rgb", "state")}
    offline = predict_trajectory(loaded, _Trajectory(obs))[1:]  # every frame's strided window, from the recording
    assert len(online) >= 10 and np.allclose(online, offline, atol=1e-5)
    assert np.ptp(offline) > 0  # the frames differ, so a wrong window would show


def test_image_net_reads_one_frame() -> None:
    spec = ModelSpec({"rgb": InputSpec((24, 40, 3), "uint8")})
    net = FrameLinear(spec, feature_dim=8, cnn_width=4)
    assert net({"rgb": torch.zeros(5, 24, 40, 3, dtype=torch.uint8)}).shape == (5, 1)
    with pytest.raises(ValueError, match="reads one frame.*VideoRewardNet"):
        FrameLinear(ModelSpec({"rgb": InputSpec((24, 40, 3), "uint8")}, window=2))
    with pytest.raises(NotImplementedError, match="score"):
        VideoRewardNet(spec, feature_dim=8)({"rgb": torch.zeros(1, 24, 40, 3, dtype=torch.uint8)})


def test_reward_net_keeps_its_key_by_key_layout() -> None:
    # The head of checkpoints written before the base classes reads [key 1 frames..., key 2
    # frames...]: computed by hand here from the encoders, it must match the network's output.
    spec = ModelSpec({"a": InputSpec((3,), "float32"), "b": InputSpec((2,), "float32")}, window=2)
    torch.manual_seed(0)
    net = RewardNet(spec, hidden=8, feature_dim=4)
    batch = {"a": torch.randn(5, 2, 3), "b": torch.randn(5, 2, 2)}
    by_hand = torch.cat([net.encoders[k](batch[k].reshape(10, -1)).reshape(5, -1) for k in ("a", "b")], dim=1)
    assert torch.allclose(net(batch), net.head(by_hand))
    assert net.numpy_forward() is not None
    assert np.allclose(net.numpy_forward()({k: v.numpy() for k, v in batch.items()}), net(batch).detach().numpy(), atol=1e-5)
