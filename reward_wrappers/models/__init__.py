"""Reward models: the interface every wrapper calls (``base``), the frames a model reads
(``frames``), the networks (``networks``, ``frame_nets``, ``progress_networks``,
``transformer_net``, ``encoders``, frozen ``backbones``), architectures by name (``registry``)
and checkpoints (``checkpoint``). The trainers build and save these; the wrappers load and call them.
"""
