"""``rewardswap embed`` throughput for a torchvision ResNet-18 (random weights from a file written
here) beside the project's classifier CNN, through the project's own code.

torchvision does not load beside this project's pinned CPU torch 2.13 (PyPI's wheel fails with
"operator torchvision::nms does not exist"), so this runs in a throwaway venv that has both:

    python3.11 -m venv /tmp/tvenv
    /tmp/tvenv/bin/pip install torch==2.14.1 torchvision==0.29.1 gymnasium stable-baselines3 scipy tqdm \
        tensorboard opencv-python-headless imageio matplotlib
    PYTHONPATH=. /tmp/tvenv/bin/python benchmarks/embed_throughput_torchvision.py WORK_DIR BUFFERS
    # BUFFERS: rgb buffers with a fitted classifier.pt beside them, e.g. benchmarks/embedding_rewards.py's --work

Writes ``WORK_DIR/throughput.json``.
"""
import json, pathlib, platform, sys
import torch, torchvision
torch.set_num_threads(2)
torch.manual_seed(0)
from reward_wrappers.models.backbones import load_backbone
from trainers.embed import embed_buffers
work = pathlib.Path(sys.argv[1]); data = pathlib.Path(sys.argv[2])
weights = work / "resnet18_random.pth"
torch.save(torchvision.models.resnet18(weights=None).state_dict(), weights)
out = {}
for name, source in (("torchvision_resnet18", f"torchvision:resnet18@{weights}"), ("classifier_cnn", f"rewardswap:{data.parent / 'classifier.pt'}")):
    backbone = load_backbone(source)
    stats = embed_buffers(data, backbone, out_key=f"rgb_{name}", progress=False)
    out[name] = {k: stats[k] for k in ("frames", "seconds", "frames_per_second", "identity", "dim")}
    print(name, f"{stats['frames_per_second']:.0f} frames/s", stats["dim"], flush=True)
out["versions"] = {"torch": torch.__version__, "torchvision": torchvision.__version__, "python": platform.python_version()}
out["torch_threads"] = torch.get_num_threads()
(work / "throughput.json").write_text(json.dumps(out, indent=2))
