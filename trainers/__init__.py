"""Offline fitting of reward models from trajectory buffers (the models live in reward_wrappers).

Each kind registers itself (:mod:`trainers.kinds`) when its module is imported, here.
"""

from trainers.classifier import fit_classifier
from trainers.kinds import RewardKind, register_reward_kind, reward_kind, reward_kinds
from trainers.preference import fit_preference
from trainers.progress import fit_progress
from trainers.process import fit_process

__all__ = ["RewardKind", "fit_classifier", "fit_preference", "fit_process", "fit_progress", "register_reward_kind", "reward_kind",
           "reward_kinds"]
