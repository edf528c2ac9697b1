"""Offline fitting of reward models from trajectory buffers (the models live in reward_wrappers)."""

from trainers.classifier import fit_classifier
from trainers.progress import fit_progress
from trainers.preference import fit_preference
