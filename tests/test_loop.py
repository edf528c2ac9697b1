"""trainers.loop.fit_loop: early stopping keeps the best epoch's weights; TensorBoard survives errors."""

from __future__ import annotations

import threading

import pytest
import torch

from trainers.loop import fit_loop


def _net_and_batch():
    torch.manual_seed(0)
    net = torch.nn.Linear(2, 1)
    x = torch.randn(16, 2)

    def train_batch():
        return net(x).pow(2).mean(), len(x)

    return net, train_batch


def test_early_stopping_restores_the_best_epochs_weights():
    net, train_batch = _net_and_batch()
    losses = iter([3.0, 1.0, 2.0, 2.5, 0.5])  # best at epoch 1; patience 2 stops after epoch 3
    snapshots = []

    def validate():
        snapshots.append({k: v.clone() for k, v in net.state_dict().items()})
        return {"val_loss": next(losses)}

    result = fit_loop(net, train_batch, validate, epochs=5, steps=3, lr=0.1, patience=2, progress=False)
    assert result.epochs_run == 4 and result.best_epoch == 1
    assert [h["val_loss"] for h in result.history] == [3.0, 1.0, 2.0, 2.5]
    for key, value in net.state_dict().items():
        assert torch.equal(value, snapshots[1][key])
        assert not torch.equal(value, snapshots[3][key])  # training moved on after the best epoch
    assert not net.training


def test_tensorboard_writer_is_closed_when_training_raises(tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    net, train_batch = _net_and_batch()
    epochs_seen = []

    def validate():
        epochs_seen.append(len(epochs_seen))
        if len(epochs_seen) == 3:
            raise RuntimeError("held-out data went missing")
        return {"val_loss": 1.0 / len(epochs_seen), "val_auc": 0.5, "val_note": float("nan")}

    threads_before = set(threading.enumerate())
    with pytest.raises(RuntimeError, match="went missing"):
        fit_loop(net, train_batch, validate, epochs=5, steps=2, logdir=tmp_path, progress=False)
    # An unclosed SummaryWriter leaves its flushing thread running (and its last events unwritten).
    left = [t.name for t in set(threading.enumerate()) - threads_before if t.name != "tqdm_monitor"]
    assert not left, f"threads left running after the error: {left}"
    events = EventAccumulator(str(tmp_path))
    events.Reload()
    assert [e.step for e in events.Scalars("val/loss")] == [2, 4]  # both finished epochs reached the file
    assert [e.value for e in events.Scalars("val/loss")] == pytest.approx([1.0, 0.5])
    assert "val/note" not in events.Tags()["scalars"]  # NaN figures are not logged
    assert "train/frames_per_second" in events.Tags()["scalars"]


def test_validate_must_report_val_loss():
    net, train_batch = _net_and_batch()
    with pytest.raises(KeyError, match="val_loss"):
        fit_loop(net, train_batch, lambda: {"val_auc": 1.0}, epochs=1, steps=1, progress=False)
