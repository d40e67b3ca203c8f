"""The cell grammar as a state machine over prefix-order tokens, for masked generation.

A tree in prefix order (the order of a DEAP ``PrimitiveTree``, `cellzoo.dsl.to_prefix`)
is written one token at a time into the deepest open *slot*. `Grammar.mask` says which
tokens may go into the current slot such that the tree can still be completed into a
valid cell (`cellzoo.dsl.is_valid`) within the depth and node limits. Every tree that
follows the masks is therefore valid by construction, and every valid cell within the
limits can be written (the completion cost below is exact, not a bound).

Lookahead. What a finished cell still needs is at most two things: an input (``x`` or
``x_prev``, if none was written yet) and one of

- ``S``: a state source (nothing of ``h``, ``c``, ``Mem`` written yet): ``h`` does it,
- ``M``: a ``Mem`` (``c`` was written, ``Mem`` not): ``Mem(h)`` does it,
- ``C``: a ``c`` (``Mem`` was written, ``c`` not): ``c`` does it.

Every open slot can be closed with ``h`` (one node), so the cheapest completion costs
one node per open slot plus the extra nodes of placing the needs: an input costs
nothing in an ``MM`` argument slot (``x``) and one node elsewhere (``MM(x)``, depth 2);
``M`` costs one (``Mem(h)``, depth 2); both needs in one slot cost ``Add(MM(x), h)``
or ``Mem(MM(x))`` (depth 3). Only depth budgets 1, 2 and 3+ matter, which keeps the
memo tables small.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import lru_cache
from typing import NamedTuple

import torch

from cellzoo.dsl import EXTENDED_OPS, OPS, SOURCES, Limits, Node, from_prefix, ops_for, to_prefix

#: the token vocabulary: sources, then every operator (fixed, so unlocking the extended
#: operators later does not change the policy's shape)
VOCAB: tuple[str, ...] = tuple(SOURCES) + tuple(EXTENDED_OPS)
TOKEN_ID: dict[str, int] = {name: i for i, name in enumerate(VOCAB)}
#: feature id of "no previous token" and of "the root has no parent"
START = len(VOCAB)
#: argument-position feature of the root slot (operators have at most 3 arguments)
ROOT_ARG = max(spec.arity for spec in OPS.values())

_INF = 1 << 30
_MAX_MASKS = 500_000  # memo entries kept before the table is cleared
_INPUTS = frozenset(TOKEN_ID[name] for name in ("x", "x_prev"))
_H, _C, _MEM = TOKEN_ID["h"], TOKEN_ID["c"], TOKEN_ID["Mem"]


class Slot(NamedTuple):
    """An open argument position: what it accepts, how deep it sits, whose argument it is."""

    accepts_input: bool  # an MM argument: width E or H (every slot accepts width H)
    depth: int  # depth of the node that will fill it (the root has depth 1)
    parent: int  # token id of the operator it belongs to, START for the root
    arg: int  # argument index, ROOT_ARG for the root


@dataclass
class Partial:
    """One tree being written: open slots (top = next), tokens so far, what it has read."""

    stack: list[Slot]
    tokens: list[int] = field(default_factory=list)
    has_input: bool = False
    has_h: bool = False
    has_c: bool = False
    has_mem: bool = False

    @property
    def done(self) -> bool:
        return not self.stack

    def features(self) -> tuple[int, int, int]:
        """(previous token, parent operator, argument index) of the next step."""
        slot = self.stack[-1]
        return (self.tokens[-1] if self.tokens else START), slot.parent, slot.arg

    def tree(self) -> Node:
        return from_prefix([VOCAB[t] for t in self.tokens])


def _needs(has_input: bool, has_h: bool, has_c: bool, has_mem: bool) -> tuple[bool, str | None]:
    """What a finished cell still lacks: (needs an input, one of None/'S'/'M'/'C')."""
    if has_c and not has_mem:
        need = "M"
    elif has_mem and not has_c:
        need = "C"
    elif not (has_h or has_c):
        need = "S"
    else:
        need = None
    return not has_input, need


@lru_cache(maxsize=200_000)
def _completion(slots: tuple[tuple[bool, int], ...], need_input: bool, need: str | None) -> int:
    """Fewest nodes that close ``slots`` ((accepts input, depth budget clamped to 3)) and
    meet the needs; ``_INF`` when impossible."""
    if not slots:
        return 0 if not need_input and need is None else _INF
    cost_in = [0 if acc else (1 if b >= 2 else _INF) for acc, b in slots]
    cost_need = [(1 if b >= 2 else _INF) if need == "M" else 0 for _, b in slots]
    if not need_input:
        extra = 0 if need is None else min(cost_need)
    elif need is None:
        extra = min(cost_in)
    else:
        both = 2 if need == "M" else 3  # Mem(MM(x)) / Add(MM(x), h)
        extra = min(both if b >= 3 else _INF for _, b in slots)
        for j, cj in enumerate(cost_in):
            for k, ck in enumerate(cost_need):
                if j != k:
                    extra = min(extra, cj + ck)
    return min(len(slots) + extra, _INF)


class Grammar:
    """Masks for writing valid cells with the operators of ``level`` within ``limits``."""

    def __init__(self, level: str = "core", limits: Limits | None = None):
        self.level = level
        self.limits = limits if limits is not None else Limits()
        ops = ops_for(level)
        self.allowed = tuple(TOKEN_ID[name] for name in VOCAB if name in SOURCES or name in ops)
        self._masks: dict[tuple, torch.Tensor] = {}
        if not self.mask(self.start()).any():
            raise ValueError(f"no valid cell fits within max_depth={self.limits.max_depth}, "
                             f"max_nodes={self.limits.max_nodes}")

    def start(self) -> Partial:
        return Partial(stack=[Slot(False, 1, START, ROOT_ARG)])

    def _budget(self, slot: Slot) -> int:
        return self.limits.max_depth - slot.depth + 1

    def mask(self, p: Partial) -> torch.Tensor:
        """Bool [len(VOCAB)]: the tokens that may fill the current slot of ``p``."""
        slot = p.stack[-1]
        rest = tuple(sorted((s.accepts_input, min(self._budget(s), 3)) for s in p.stack[:-1]))
        key = (slot.accepts_input, min(self._budget(slot), 4), rest, len(p.tokens),
               p.has_input, p.has_h, p.has_c, p.has_mem)
        found = self._masks.get(key)
        if found is None:
            if len(self._masks) >= _MAX_MASKS:
                self._masks.clear()
            found = self._masks[key] = self._compute_mask(key)
        return found

    def _compute_mask(self, key: tuple) -> torch.Tensor:
        accepts_input, budget, rest, written, has_input, has_h, has_c, has_mem = key
        mask = [False] * len(VOCAB)
        for t in self.allowed:
            name = VOCAB[t]
            if name in SOURCES:
                if SOURCES[name] == "E" and not accepts_input:
                    continue
                kids: tuple[tuple[bool, int], ...] = ()
            else:
                if budget < 2 or (t == _MEM and has_mem):
                    continue
                spec = OPS[name]
                kids = tuple(("E" in spec.accepts(i), min(budget - 1, 3))
                             for i in range(spec.arity))
            needs = _needs(has_input or t in _INPUTS, has_h or t == _H, has_c or t == _C,
                           has_mem or t == _MEM)
            cost = _completion(tuple(sorted(rest + kids)), *needs)
            mask[t] = written + 1 + cost <= self.limits.max_nodes
        return torch.tensor(mask)

    def push(self, p: Partial, token: int) -> None:
        """Write ``token`` into the current slot (the caller keeps to the mask)."""
        slot = p.stack.pop()
        p.tokens.append(token)
        p.has_input |= token in _INPUTS
        p.has_h |= token == _H
        p.has_c |= token == _C
        p.has_mem |= token == _MEM
        name = VOCAB[token]
        if name in OPS:
            spec = OPS[name]
            for i in reversed(range(spec.arity)):
                p.stack.append(Slot("E" in spec.accepts(i), slot.depth + 1, token, i))

    def trace(self, tree: Node) -> tuple[list[tuple[int, int, int]], list[torch.Tensor],
                                         list[int]] | None:
        """Teacher forcing: (features, masks, tokens) of every step that writes ``tree``,
        or None when the tree lies outside this grammar (an operator above the level,
        over the limits, or invalid)."""
        p = self.start()
        features, masks = [], []
        names = to_prefix(tree)
        for name in names:
            token = TOKEN_ID.get(name)
            if p.done or token is None:
                return None
            mask = self.mask(p)
            if not mask[token]:
                return None
            features.append(p.features())
            masks.append(mask)
            self.push(p, token)
        return (features, masks, p.tokens) if p.done else None
