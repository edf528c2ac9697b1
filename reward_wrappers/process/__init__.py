"""The process reward (seed 004), a stateful PBRS potential: its network (``net``), the fusion of
its heads into one potential (``fusion``) and the potential that follows an episode (``potential``).
"""
