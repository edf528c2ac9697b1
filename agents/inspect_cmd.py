"""Write a self-contained HTML page to review a reward model on recorded trajectories.

The page shows the model's metrics, then the trajectories it scores highest and lowest, each as
a strip of frames and a per-frame curve of the model's output (probability, progress or reward)
drawn over the env's own success labels. Images are embedded, so the file can be mailed.
"""

from __future__ import annotations

import argparse
import base64
import html
import io
import os
import pathlib
import sys
from typing import Any, Sequence

import numpy as np

from collectors.atomic import write_atomic
from reward_wrappers import load_reward_model
from reward_wrappers.models.base import sigmoid


def per_frame_scores(model: Any, trajectories: Sequence[Any], batch_size: int = 256) -> list[np.ndarray]:
    """The model's output for every frame of every trajectory (probabilities for classifiers)."""
    from trainers.classifier import predict_frames
    from trainers.data import FrameTable

    keys = tuple(model.spec.inputs)
    out = []
    for traj in trajectories:
        raw = predict_frames(model, [traj], FrameTable.from_trajectories([traj]), keys, batch_size)
        out.append(sigmoid(raw) if model.spec.output == "logit" else raw)
    return out


def _png(fig_or_image: Any) -> str:
    buf = io.BytesIO()
    if isinstance(fig_or_image, np.ndarray):
        import imageio.v2 as imageio

        imageio.imwrite(buf, fig_or_image, format="png")
    else:
        fig_or_image.savefig(buf, format="png", dpi=90)
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode()


def _frame_strip(traj: Any, n: int = 10) -> np.ndarray | None:
    key = next((k for k, v in traj.obs.items() if v.ndim == 4 and v.dtype == np.uint8), None)
    if key is None:
        return None
    frames = traj.obs[key]
    picks = np.unique(np.linspace(0, len(frames) - 1, n).round().astype(int))
    return np.concatenate([np.asarray(frames[i])[..., :3] for i in picks], axis=1)


def _curve(scores: np.ndarray, labels: np.ndarray, ylabel: str) -> str:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5, 1.8))
    ax.plot(scores, label=ylabel)
    ax.fill_between(np.arange(len(labels)), 0, np.asarray(labels, dtype=float), step="mid", alpha=0.2, color="green", label="true success")
    ax.set_xlabel("frame")
    ax.legend(fontsize=7, loc="upper left")
    fig.tight_layout()
    uri = _png(fig)
    plt.close(fig)
    return uri


def write_review(checkpoint: str | os.PathLike, data: str | os.PathLike, out: str | os.PathLike, top: int = 5) -> pathlib.Path:
    from collectors import load_trajectories

    model = load_reward_model(checkpoint)
    trajectories = load_trajectories(data)
    if not trajectories:
        raise ValueError(f"no trajectories in {data}")
    scores = per_frame_scores(model, trajectories)
    ylabel = {"logit": "p(success)", "progress": "progress", "reward": "reward"}[model.spec.output]
    # Rank by the mean output over the episode: what an agent paid by this model would collect.
    order = np.argsort([-float(s.mean()) for s in scores])
    roles = trajectory_roles(model.metadata, trajectories, data)
    sections = []
    for title, picks in (("Highest scored", order[:top]), ("Lowest scored", order[::-1][:top])):
        items = []
        for i in picks:
            traj, s = trajectories[int(i)], scores[int(i)]
            strip = _frame_strip(traj)
            items.append(
                f"<div class='traj'><b>{html.escape(str(getattr(traj, 'id', traj.path)))}</b> ({roles[int(i)]}) "
                f"true success: {bool(traj.success)} &middot; mean {ylabel} {s.mean():.3f} &middot; last {s[-1]:.3f}<br>"
                + (f"<img src='{_png(strip)}'><br>" if strip is not None else "")
                + f"<img src='{_curve(s, traj.labels, ylabel)}'></div>"
            )
        sections.append(f"<h2>{title}</h2>" + "".join(items))
    success = np.array([bool(t.success) for t in trajectories])
    means = np.array([float(s.mean()) for s in scores])
    from trainers.metrics import roc_auc

    held = np.array([r == HELD_OUT for r in roles])
    metrics = {
        "trajectories": f"{len(trajectories)} ({int(held.sum())} held out from the model's training, "
                        f"{sum(r == TRAIN for r in roles)} in its training split)",
        "successful": int(success.sum()),
        "AUC of mean output, successful vs failed episodes, all (training data included)": roc_auc(means, success),
        "AUC of mean output, successful vs failed episodes, held out only": (
            roc_auc(means[held], success[held]) if len(set(success[held])) == 2 else "n/a (needs both kinds held out)"),
        **model.metadata.get("report", {}),
    }
    rows = "".join(f"<tr><td>{html.escape(str(k).replace('_', ' '))}</td><td>{format_value(v)}</td></tr>"
                   for k, v in metrics.items())
    page = f"""<!doctype html><html><head><meta charset="utf-8"><title>Reward model review</title>
<style>body{{font-family:sans-serif;margin:2em}} .traj{{margin:1em 0;padding:.5em;border:1px solid #ddd}}
img{{image-rendering:pixelated;max-width:100%}} td,th{{padding:2px 8px;border-bottom:1px solid #eee;font-size:90%;
text-align:left;vertical-align:top}} table.confusion{{margin-top:.4em;border:1px solid #ccc}}
table.confusion td{{text-align:right;font-variant-numeric:tabular-nums}}</style></head>
<body><h1>Reward model review</h1><p>checkpoint <code>{html.escape(str(checkpoint))}</code> &middot; data <code>{html.escape(str(data))}</code>
&middot; {html.escape(repr(model))}</p><table id='metrics'>{rows}</table>{''.join(sections)}</body></html>"""
    return write_atomic(out, page)


HELD_OUT, TRAIN, UNSEEN = "held out", "train", "not in its data"
#: The four counts of a confusion matrix, as ``trainers.metrics.binary_metrics`` names them.
CONFUSION = ("true_positives", "false_positives", "false_negatives", "true_negatives")


def format_value(value: Any) -> str:
    """A metric as a person reads it (HTML): numbers rounded, a dict of metrics as a small table,
    its confusion counts as a 2x2 matrix, lists joined, text without JSON quotes.

    >>> format_value(0.9995238095238095), format_value("a"), format_value([1, 2.5])
    ('0.9995', 'a', '1, 2.5')
    >>> "<th>called success</th>" in format_value(dict(zip(CONFUSION, (3, 1, 2, 9))))
    True
    """
    if isinstance(value, bool) or value is None:
        return "–" if value is None else ("yes" if value else "no")
    if isinstance(value, (int, np.integer)):
        return f"{int(value):,}"
    if isinstance(value, (float, np.floating)):
        return "–" if not np.isfinite(value) else f"{float(value):.4g}"
    if isinstance(value, dict):
        cells = {k: v for k, v in value.items() if k not in CONFUSION}
        out = "<table class='inner'>" + "".join(
            f"<tr><td>{html.escape(str(k).replace('_', ' '))}</td><td>{format_value(v)}</td></tr>" for k, v in cells.items())
        out += "</table>"
        if all(k in value for k in CONFUSION):
            tp, fp, fn, tn = (format_value(value[k]) for k in CONFUSION)
            out += ("<table class='confusion'><tr><th></th><th>truly a success</th><th>truly a failure</th></tr>"
                    f"<tr><th>called success</th><td>{tp}</td><td>{fp}</td></tr>"
                    f"<tr><th>called failure</th><td>{fn}</td><td>{tn}</td></tr></table>")
        return out
    if isinstance(value, (list, tuple)):
        shown = ", ".join(format_value(v) for v in value[:20])
        return shown + (f", … ({len(value)} in all)" if len(value) > 20 else "")
    return html.escape(str(value))


def trajectory_roles(metadata: dict[str, Any], trajectories: Sequence[Any], data: str | os.PathLike) -> list[str]:
    """Each trajectory's part in the model's fitting, from the split its checkpoint records:
    held out, train (same buffer, not held out), or not in its data (another buffer)."""
    held = set(metadata.get("val_trajectory_ids") or metadata.get("report", {}).get("val_trajectory_ids") or ())
    fitted_on = metadata.get("data")
    same_buffer = fitted_on is not None and pathlib.Path(fitted_on).resolve() == pathlib.Path(data).resolve()
    return [HELD_OUT if str(getattr(t, "id", t.path)) in held else TRAIN if same_buffer else UNSEEN for t in trajectories]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("checkpoint", help="reward model checkpoint (.pt) from `rewardswap train-reward`")
    parser.add_argument("--data", required=True, help="trajectory buffer directory to review the model on")
    parser.add_argument("--out", default=None, help="HTML file to write (default: <checkpoint>.review.html)")
    parser.add_argument("--top", type=int, default=5, help="trajectories shown at each end of the ranking")


def run(args: argparse.Namespace) -> int:
    out = args.out or str(pathlib.Path(args.checkpoint).with_suffix(".review.html"))
    try:
        path = write_review(args.checkpoint, args.data, out, top=args.top)
    except (FileNotFoundError, KeyError, ValueError) as exc:
        print(f"rewardswap inspect: error: {exc}", file=sys.stderr)
        return 2
    print(f"wrote {path}")
    return 0
