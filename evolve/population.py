"""Population members and the selection strategies that keep them.

`AgingEvolution` (Real et al. 2019, "regularized evolution"): every result joins
the population and the oldest member dies once there are more than P; parents
come from a tournament among S members sampled at random. `MuPlusLambda`: each
generation's offspring join the population and only the best ``mu`` survive.
`RandomSearch` keeps everyone and never selects a parent (its candidates are
random cells). All hold plain data, so they go into a JSON checkpoint.

Members are ordered by `Member.rank`: on a fidelity ladder a cell's result is the one
at the highest rung it reached, and a higher rung ranks above a lower one (perplexities
are compared within a rung only); a proxy search has one rung, so this is its fitness.
"""

from __future__ import annotations

import math
import random
from dataclasses import asdict, dataclass, fields, replace
from typing import Any


@dataclass
class Member:
    """A trained (or reused) cell in the population. ``born``: its evaluation number;
    ``rung``: the highest ladder rung it reached (0 in a proxy search)."""

    hash: str
    expr: str
    status: str
    val_ppl: float
    born: int
    origin: str
    generation: int
    reused: bool = False
    rung: int = 0

    @property
    def rank(self) -> tuple[int, float]:
        """(rung reached, fitness): diverged and failed cells rank below every rung."""
        fitness = self.fitness
        return (self.rung, fitness) if fitness > -math.inf else (-1, fitness)

    @property
    def fitness(self) -> float:
        """-log(validation perplexity); diverged and failed cells are the worst (-inf)."""
        if self.status != "ok" or not math.isfinite(self.val_ppl) or self.val_ppl <= 0:
            return -math.inf
        return -math.log(self.val_ppl)

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["val_ppl"] = self.val_ppl if math.isfinite(self.val_ppl) else None
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Member:
        data = dict(data)
        data["val_ppl"] = math.nan if data["val_ppl"] is None else float(data["val_ppl"])
        return cls(**data)

    @classmethod
    def from_log(cls, row: dict[str, Any]) -> Member:
        """The member an evaluations-log row records (the row's other columns left out)."""
        return cls.from_dict({f.name: row[f.name] for f in fields(cls)})


def tournament(members: list[Member], sample: int, rng: random.Random) -> Member:
    """The best-ranked of ``sample`` members drawn without replacement (first drawn wins
    ties)."""
    drawn = rng.sample(members, min(sample, len(members)))
    return max(drawn, key=lambda m: m.rank)


class Strategy:
    """Holds the members; subclasses decide who enters, who dies and who breeds."""

    name = ""
    #: whether a new round waits for the previous one to finish (a generation barrier)
    generational = False
    breeds = True

    def __init__(self, size: int, sample: int):
        self.size, self.sample = size, sample
        self.members: list[Member] = []

    def add(self, member: Member) -> None:
        raise NotImplementedError

    def promote(self, result: Member) -> None:
        """A member's result at a higher rung replaces its result (it keeps its place and
        age); a member that has left the population stays out."""
        self.members = [self._promoted(m, result) for m in self.members]

    @staticmethod
    def _promoted(member: Member, result: Member) -> Member:
        if member.hash != result.hash:
            return member
        return replace(member, status=result.status, val_ppl=result.val_ppl, rung=result.rung)

    def end_generation(self) -> None:
        """Called when a round has completed (only matters for generational strategies)."""

    def parent(self, rng: random.Random) -> Member:
        return tournament(self.members, self.sample, rng)

    def best(self) -> Member | None:
        return max(self.members, key=lambda m: m.rank, default=None)

    def state_dict(self) -> dict[str, Any]:
        return {"members": [m.to_dict() for m in self.members]}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.members = [Member.from_dict(m) for m in state["members"]]


class AgingEvolution(Strategy):
    name = "aging"

    def add(self, member: Member) -> None:
        self.members.append(member)
        while len(self.members) > self.size:
            self.members.pop(0)  # the oldest dies, however fit it is


class MuPlusLambda(Strategy):
    name = "mu+lambda"
    generational = True

    def __init__(self, size: int, sample: int):
        super().__init__(size, sample)
        self.offspring: list[Member] = []

    def add(self, member: Member) -> None:
        self.offspring.append(member)

    def promote(self, result: Member) -> None:
        super().promote(result)
        self.offspring = [self._promoted(m, result) for m in self.offspring]

    def end_generation(self) -> None:
        pool = self.members + self.offspring
        ranked = sorted(range(len(pool)), key=lambda i: (-pool[i].rank[0], -pool[i].rank[1], i))
        self.members = [pool[i] for i in sorted(ranked[: self.size])]
        self.offspring = []

    def state_dict(self) -> dict[str, Any]:
        return {**super().state_dict(), "offspring": [m.to_dict() for m in self.offspring]}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        super().load_state_dict(state)
        self.offspring = [Member.from_dict(m) for m in state.get("offspring", [])]


class RandomSearch(Strategy):
    name = "random"
    breeds = False

    def add(self, member: Member) -> None:
        self.members.append(member)


STRATEGY_CLASSES = {cls.name: cls for cls in (AgingEvolution, MuPlusLambda, RandomSearch)}


def make_strategy(name: str, size: int, sample: int) -> Strategy:
    return STRATEGY_CLASSES[name](size, sample)
