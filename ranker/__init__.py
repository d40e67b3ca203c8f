"""cellzoo.ranker: the TreeRNN that predicts how well a cell will do, its training and judging.

The evolution's pre-filter seam uses `Ranker.fit(runs)` and `Ranker.score(cells)`.
"""

from cellzoo.ranker.fit import Ranker, RankerConfig

__all__ = ["Ranker", "RankerConfig"]
