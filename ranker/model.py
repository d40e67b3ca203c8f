"""The TreeRNN: a network that mirrors a cell node for node, evaluated level by level.

Each source type has a learned vector; each operator type has its own small
network of its children's vectors (a gated update, so deep trees keep a path
from the leaves to the root). Commutative binary operators see ``[a + b, a * b]``
so that the order of their arguments cannot matter. The readout is the root's
vector beside the mean of all node vectors of the cell; two linear heads give
the standardised log perplexity and the divergence logit.

`TreeRNN.forward` evaluates a `Plan` (many cells, grouped by level and operator);
`TreeRNN.forward_reference` evaluates one graph node by node with the same
parameters: it is the correctness oracle of the batched path.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
from torch import nn

from cellzoo.ranker.graph import ARITY, COMMUTATIVE, VOCAB, CellGraph, Plan


@dataclass(frozen=True)
class ModelConfig:
    dim: int = 64
    vocab: tuple[str, ...] = VOCAB

    def to_dict(self) -> dict:
        return {**asdict(self), "vocab": list(self.vocab)}

    @classmethod
    def from_dict(cls, d: dict) -> ModelConfig:
        return cls(dim=int(d["dim"]), vocab=tuple(d["vocab"]))


class OpFunction(nn.Module):
    """One operator's function of its children: out = z * tanh(W x) + (1 - z) * mean(children)."""

    def __init__(self, arity: int, commutative: bool, dim: int):
        super().__init__()
        self.commutative = commutative and arity == 2
        width = 2 * dim if self.commutative else arity * dim
        self.dim = dim
        self.lin = nn.Linear(width, 2 * dim)  # candidate and gate in one product

    def forward(self, kids: torch.Tensor) -> torch.Tensor:
        """kids: [n, arity, dim] -> [n, dim]."""
        if self.commutative:
            x = torch.cat([kids[:, 0] + kids[:, 1], kids[:, 0] * kids[:, 1]], dim=1)
        else:
            x = kids.flatten(1)
        cand, gate = self.lin(x).split(self.dim, dim=1)
        mean = kids.mean(dim=1)
        return mean + torch.sigmoid(gate) * (torch.tanh(cand) - mean)


class TreeRNN(nn.Module):
    def __init__(self, config: ModelConfig = ModelConfig()):
        super().__init__()
        if config.vocab != VOCAB[: len(config.vocab)]:
            raise ValueError("this ranker's node vocabulary does not match the installed cellzoo")
        self.config = config
        d = config.dim
        self.source = nn.Embedding(len(VOCAB), d)
        self.fns = nn.ModuleDict({
            name: OpFunction(ARITY[i], COMMUTATIVE[i], d)
            for i, name in enumerate(VOCAB) if ARITY[i] > 0
        })
        self.reg_head = nn.Linear(2 * d, 1)
        self.div_head = nn.Linear(2 * d, 1)

    def forward(self, plan: Plan) -> tuple[torch.Tensor, torch.Tensor]:
        """Predicted standardised log ppl and divergence logit, one each per cell."""
        d = self.config.dim
        states = torch.zeros(plan.num_nodes, d)
        states.index_copy_(0, plan.source_nodes, self.source(plan.source_ops))
        for group in plan.groups:
            out = self.fns[VOCAB[group.op]](states[group.kids])
            states.index_copy_(0, group.nodes, out)
        pooled = torch.zeros(len(plan.roots), d).index_add(0, plan.cell_of_node, states)
        pooled = pooled / plan.sizes.unsqueeze(1).to(states.dtype)
        return self._heads(torch.cat([states[plan.roots], pooled], dim=1))

    def forward_reference(self, graph: CellGraph) -> tuple[torch.Tensor, torch.Tensor]:
        """The same function for one cell, one node at a time (slow; for tests)."""
        vecs: list[torch.Tensor] = []
        for op, kids in zip(graph.ops, graph.kids, strict=True):
            if not kids:
                vecs.append(self.source.weight[VOCAB.index(op)])
            else:
                stacked = torch.stack([vecs[k] for k in kids]).unsqueeze(0)
                vecs.append(self.fns[op](stacked)[0])
        pooled = torch.stack(vecs).mean(dim=0)
        reg, div = self._heads(torch.cat([vecs[-1], pooled]).unsqueeze(0))
        return reg[0], div[0]

    def _heads(self, read: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.reg_head(read).squeeze(1), self.div_head(read).squeeze(1)
