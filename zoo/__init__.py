"""The zoo: every trained cell in one crash-safe HDF5 file (see docs/zoo-format.md)."""

from cellzoo.zoo.records import ORIGINS, Cell, Run, ZooError
from cellzoo.zoo.store import Zoo

__all__ = ["ORIGINS", "Cell", "Run", "Zoo", "ZooError"]
