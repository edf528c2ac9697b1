"""The numeric cores behind the wrappers: one core per wrapper holds its state and arithmetic
for B envs (``rewards``: learned reward, PBRS, progress), fed frame windows by ``feed`` and
computing with numpy or torch through ``ops``. Every twin of a wrapper drives the same core.
"""
