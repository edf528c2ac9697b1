"""A person (or a function, or the env's flag standing in for one) answers the reward's questions.

* :mod:`~agents.labelling.sources`: ``--labeller env | web | module:callable``, parsed in one place;
* :mod:`~agents.labelling.queue`: a run's queries, answers and label budget, persisted as they happen;
* :mod:`~agents.labelling.server` + ``page.html``: the local labelling page (Flask, 127.0.0.1);
* :mod:`~agents.labelling.command`: ``rewardswap label``, marking recorded trajectories.

**What a label is**: one decision by the labeller. An answered query on a frame is one label; a
trajectory's success mark (its first success frame, or "never") is one label, however many frames
follow from it and however many places read it. Skips cost nothing.
"""

from agents.labelling.queue import LabelQueue, Query
from agents.labelling.sources import LabelSource, parse_labeller

__all__ = ["LabelQueue", "Query", "LabelSource", "parse_labeller"]
