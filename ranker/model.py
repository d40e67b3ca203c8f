"""The TreeRNN: a network that mirrors a cell node for node, evaluated level by level.

Each source type has a learned vector; each operator type has its own small
network of its children's vectors (a gated update, so deep trees keep a path
from the leaves to the root). Commutative binary operators see ``[a + b, a * b]``
so that the order of their arguments cannot matter. The readout is the root's
vector beside the mean of all node vectors of the cell; each *target* (a task,
or a task at one rung of the fidelity ladder) has its own linear head giving the
standardised log perplexity and the divergence logit, so results of different
fidelity are never one target.

The ranker is a small deep ensemble: ``members`` such networks, each initialised from its
own seeds and trained on its own loss; the ranker averages their predictions. On
NAS-Bench-NLP (1,000 training cells) three members rank held-out cells better than one
(docs/ranker.md, "Measured").

Parameters are keyed by node-type *name* (``nets.0.source.x``, ``nets.0.fns.Tanh.lin.weight``)
and each node type's initial weights depend only on the seed and its name, never
on its place in the operator table: adding an operator changes nothing a saved
ranker knows (`TreeRNN.load_by_name`).

`TreeRNN.forward` evaluates a `Plan` (many cells, grouped by level and operator);
`TreeRNN.forward_reference` evaluates one graph node by node with the same
parameters: it is the correctness oracle of the batched path.
"""

from __future__ import annotations

import math
import zlib
from dataclasses import dataclass

import torch
from torch import nn

from cellzoo.ranker.graph import ARITY, COMMUTATIVE, OP_ID, VOCAB, CellGraph, Plan

SOURCE_NAMES = tuple(n for n, a in zip(VOCAB, ARITY, strict=True) if a == 0)


@dataclass(frozen=True)
class ModelConfig:
    dim: int = 64
    seed: int = 0
    targets: tuple[str, ...] = ()  # head names, in head order
    members: int = 1  # independently initialised networks whose predictions are averaged

    def to_dict(self) -> dict:
        return {"dim": self.dim, "seed": self.seed, "targets": list(self.targets),
                "members": self.members, "vocab": list(VOCAB)}

    @classmethod
    def from_dict(cls, d: dict) -> ModelConfig:
        return cls(dim=int(d["dim"]), seed=int(d.get("seed", 0)),
                   targets=tuple(d.get("targets", ())), members=int(d.get("members", 1)))


def _generator(seed: int, name: str) -> torch.Generator:
    """A generator that depends on the seed and a name only (not on table order)."""
    return torch.Generator().manual_seed(seed * 1_000_003 + zlib.crc32(name.encode()))


def _linear(fan_in: int, fan_out: int, g: torch.Generator) -> nn.Linear:
    """nn.Linear with torch's default uniform(+-1/sqrt(fan_in)) init, drawn from ``g``."""
    lin = nn.Linear(fan_in, fan_out)
    bound = 1 / math.sqrt(fan_in)
    with torch.no_grad():
        lin.weight.uniform_(-bound, bound, generator=g)
        lin.bias.uniform_(-bound, bound, generator=g)
    return lin


class OpFunction(nn.Module):
    """One operator's function of its children: out = z * tanh(W x) + (1 - z) * mean(children)."""

    def __init__(self, arity: int, commutative: bool, dim: int, g: torch.Generator):
        super().__init__()
        self.commutative = commutative and arity == 2
        width = 2 * dim if self.commutative else arity * dim
        self.dim = dim
        self.lin = _linear(width, 2 * dim, g)  # candidate and gate in one product

    def forward(self, kids: torch.Tensor) -> torch.Tensor:
        """kids: [n, arity, dim] -> [n, dim]."""
        if self.commutative:
            x = torch.cat([kids[:, 0] + kids[:, 1], kids[:, 0] * kids[:, 1]], dim=1)
        else:
            x = kids.flatten(1)
        cand, gate = self.lin(x).split(self.dim, dim=1)
        mean = kids.mean(dim=1)
        return mean + torch.sigmoid(gate) * (torch.tanh(cand) - mean)


class Member(nn.Module):
    """One network of the ensemble: source vectors, operator functions, and a head per
    target. ``salt`` prefixes every name its initial weights are drawn by (member 0 has
    none), so members differ while each stays independent of the operator table's order."""

    def __init__(self, dim: int, seed: int, salt: str = ""):
        super().__init__()
        self.dim, self.seed, self.salt = dim, seed, salt
        self.source = nn.ParameterDict({
            n: nn.Parameter(torch.randn(dim, generator=_generator(seed, salt + n)))
            for n in SOURCE_NAMES})
        self.fns = nn.ModuleDict({
            name: OpFunction(ARITY[i], COMMUTATIVE[i], dim, _generator(seed, salt + name))
            for i, name in enumerate(VOCAB) if ARITY[i] > 0
        })
        self.heads = nn.ModuleList()

    def add_head(self, name: str, like: int | None) -> None:
        head = _linear(2 * self.dim, 2, _generator(self.seed, self.salt + "head:" + name))
        if like is not None:
            head.load_state_dict(self.heads[like].state_dict())
        self.heads.append(head)

    def forward(self, plan: Plan, source_row: torch.Tensor,
                target: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        table = torch.stack([self.source[n] for n in SOURCE_NAMES])
        states = torch.zeros(plan.num_nodes, self.dim)
        states.index_copy_(0, plan.source_nodes, table[source_row[plan.source_ops]])
        for group in plan.groups:
            out = self.fns[VOCAB[group.op]](states[group.kids])
            states.index_copy_(0, group.nodes, out)
        pooled = torch.zeros(len(plan.roots), self.dim).index_add(0, plan.cell_of_node, states)
        pooled = pooled / plan.sizes.unsqueeze(1).to(states.dtype)
        return self.read(torch.cat([states[plan.roots], pooled], dim=1), target)

    def forward_reference(self, graph: CellGraph,
                          target: int) -> tuple[torch.Tensor, torch.Tensor]:
        vecs: list[torch.Tensor] = []
        for op, kids in zip(graph.ops, graph.kids, strict=True):
            if not kids:
                vecs.append(self.source[op])
            else:
                stacked = torch.stack([vecs[k] for k in kids]).unsqueeze(0)
                vecs.append(self.fns[op](stacked)[0])
        pooled = torch.stack(vecs).mean(dim=0)
        reg, div = self.read(torch.cat([vecs[-1], pooled]).unsqueeze(0), torch.tensor([target]))
        return reg[0], div[0]

    def read(self, read: torch.Tensor, target: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        weight = torch.stack([h.weight for h in self.heads])  # [T, 2, 2d]
        bias = torch.stack([h.bias for h in self.heads])  # [T, 2]
        out = torch.einsum("bd,bkd->bk", read, weight[target]) + bias[target]
        return out[:, 0], out[:, 1]


class TreeRNN(nn.Module):
    """``members`` networks (`Member`) side by side; each predicts every cell, the ranker
    trains each on its own loss and averages their predictions (a deep ensemble)."""

    def __init__(self, config: ModelConfig = ModelConfig()):
        super().__init__()
        self.dim, self.seed = config.dim, config.seed
        self.nets = nn.ModuleList(Member(config.dim, config.seed, f"member{k}:" if k else "")
                                  for k in range(config.members))
        self.targets: list[str] = []
        for target in config.targets:
            self.add_target(target)
        row = torch.full((len(VOCAB),), -1, dtype=torch.long)
        row[[OP_ID[n] for n in SOURCE_NAMES]] = torch.arange(len(SOURCE_NAMES))
        self.register_buffer("source_row", row, persistent=False)

    @property
    def config(self) -> ModelConfig:
        return ModelConfig(self.dim, self.seed, tuple(self.targets), len(self.nets))

    def add_target(self, name: str, like: str | None = None) -> int:
        """A new head (regression and divergence outputs) for target ``name`` in every member:
        a copy of target ``like``'s head, or freshly initialised. Returns its index."""
        if name in self.targets:
            raise ValueError(f"target {name!r} already has a head")
        index = None if like is None else self.targets.index(like)
        for net in self.nets:
            net.add_head(name, index)
        self.targets.append(name)
        return len(self.targets) - 1

    def forward(self, plan: Plan, target: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Predicted standardised log ppl and divergence logit, [members, cells] each;
        ``target`` [B] is each cell's head index."""
        outs = [net(plan, self.source_row, target) for net in self.nets]
        return torch.stack([o[0] for o in outs]), torch.stack([o[1] for o in outs])

    def forward_reference(self, graph: CellGraph,
                          target: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
        """The same function for one cell, one node at a time (slow; for tests): [members]."""
        outs = [net.forward_reference(graph, target) for net in self.nets]
        return torch.stack([o[0] for o in outs]), torch.stack([o[1] for o in outs])

    def load_by_name(self, state: dict[str, torch.Tensor]) -> list[str]:
        """Load a state dict keyed by node-type name. Node types this cellzoo has but the
        state lacks (added after it was saved) keep their seeded initial weights; their
        names are returned. Node types the state has but this cellzoo lacks are an error."""
        mine = self.state_dict()
        unknown = sorted({_node_type(k) for k in state if k not in mine})
        if unknown:
            raise ValueError(f"the saved ranker knows node types this cellzoo lacks: "
                             f"{', '.join(unknown)}")
        missing = [k for k in mine if k not in state]
        if any(_part(k) not in ("source", "fns") for k in missing):
            raise ValueError("the saved ranker lacks its heads")
        self.load_state_dict(state, strict=False)
        return sorted({_node_type(k) for k in missing})


def _part(key: str) -> str:
    """``nets.0.fns.Tanh.lin.weight`` -> ``fns``; ``nets.0.heads.1.bias`` -> ``heads``."""
    parts = key.split(".")
    return parts[2] if parts[0] == "nets" and len(parts) > 2 else key


def _node_type(key: str) -> str:
    """``nets.0.fns.Tanh.lin.weight`` -> ``Tanh``; ``nets.0.source.x`` -> ``x``; other keys
    unchanged."""
    parts = key.split(".")
    return parts[3] if _part(key) in ("source", "fns") and len(parts) > 3 else key
