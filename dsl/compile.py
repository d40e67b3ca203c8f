"""Compile a cell tree into a fast `torch.nn.Module`.

The compiler plans the computation the way fused RNN kernels do, then writes
the plan out as a small Python function (generated from the validated tree,
never from user text):

* Values that depend only on the inputs (``x``, ``x_prev``) are *static*: they
  are computed for the whole sequence before the time loop, with every ``MM``
  of one static argument in a single matrix product.
* Inside the loop, every ``MM`` of the same argument (``h``, ``c`` or an inner
  value) is one matrix product per step.
* Elementwise operators of the same kind whose arguments are consecutive
  slices of the same tensors run as one operation on the whole slice (so the
  four LSTM gate sums are one addition and its three sigmoids one sigmoid).
* Equal subexpressions without weights are computed once.

Every ``MM`` node still owns its weights (``mm.<k>`` in prefix order), so a
state_dict reads the same whatever the plan; the fused matrices are
concatenated once per forward call, not once per step.
"""

from __future__ import annotations

import itertools
import linecache
import re
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from cellzoo.dsl.kernels import FUNCTIONS, posenc
from cellzoo.dsl.ops import INPUT_SOURCES, OPS, STATE_SOURCES
from cellzoo.dsl.step import compiled_step, run_steps
from cellzoo.dsl.tree import Node, to_text
from cellzoo.dsl.validate import parse_cell

State = tuple[Tensor, Tensor, Tensor, Tensor]
MODES = ("eager", "script", "compile", "step")
_DYNAMIC_SOURCES = STATE_SOURCES
_UNFUSABLE = ("PosEnc", "LayerNorm")
_LOOP = "    for t in range(inputs.size(0)):"
_PLACEHOLDER = re.compile(r"\{\{(\w+):(\d+):(\d+)\}\}")


@dataclass
class _Value:
    """One distinct value of the cell (after merging equal weight-free subexpressions)."""

    op: str
    args: tuple[int, ...]
    static: bool
    index: int | None = None  # MM or LayerNorm number, in prefix order


@dataclass
class _Loc:
    """Where a value lives in generated code: chunk ``chunk`` of ``var`` split in ``n``."""

    var: str
    chunk: int = 0
    n: int = 1


@dataclass
class _Graph:
    values: list[_Value] = field(default_factory=list)
    keys: dict[tuple, int] = field(default_factory=dict)
    mm_inputs: list[str] = field(default_factory=list)  # "E" or "H" per MM node
    n_ln: int = 0
    # per MM value: (0 if every sibling is an MM else 1, parent's number in prefix order);
    # sorting a fused matrix's columns by it lines up the MMs of sums like Add(MM(x), MM(h))
    mm_order: dict[int, tuple[int, int]] = field(default_factory=dict)
    root: int = -1
    mem: int | None = None

    def add(self, key: tuple, op: str, args: tuple[int, ...], index: int | None = None) -> int:
        if key in self.keys:
            return self.keys[key]
        if op in OPS:
            static = op != "PosEnc" and all(self.values[a].static for a in args)
        else:
            static = op not in _DYNAMIC_SOURCES
        self.values.append(_Value(op, args, static, index))
        self.keys[key] = len(self.values) - 1
        return self.keys[key]


def _build_graph(tree: Node) -> _Graph:
    graph = _Graph()
    numbers = itertools.count()

    def visit(node: Node) -> int:
        number = next(numbers)
        if node.is_source:
            return graph.add(("src", node.op), node.op, ())
        if node.op == "MM":
            k = len(graph.mm_inputs)
            graph.mm_inputs.append(node.children[0].width)
            arg = visit(node.children[0])
            return graph.add(("MM", k), "MM", (arg,), k)
        if node.op == "LayerNorm":
            j = graph.n_ln
            graph.n_ln += 1
            arg = visit(node.children[0])
            return graph.add(("LN", j), "LayerNorm", (arg,), j)
        args = tuple(visit(c) for c in node.children)
        siblings_mm = all(graph.values[a].op == "MM" for a in args)
        for a in args:
            if graph.values[a].op == "MM":
                graph.mm_order.setdefault(a, (0 if siblings_mm else 1, number))
        if node.op == "Mem":
            graph.mem = args[0]
            return args[0]
        key_args = tuple(sorted(args)) if OPS[node.op].commutative else args
        return graph.add((node.op, *key_args), node.op, args)

    graph.root = visit(tree)
    return graph


class _CodeWriter:
    """Turns a `_Graph` into the source of ``cell_forward`` (see the module docstring)."""

    def __init__(self, graph: _Graph, hidden: int):
        self.g = graph
        self.H = hidden
        self.loc: dict[int, _Loc] = {}
        self.groups: list[list[int]] = []  # MM numbers per fused weight matrix
        self.lines: list[str] = []
        self.names = itertools.count()
        self.slices: dict[str, set[tuple[int, int]]] = {}  # var -> (start, length) in units
        self.width_of: dict[str, int] = {}  # var -> its width in chunks of H

    # -- expressions ------------------------------------------------------------
    def ref(self, vid: int) -> str:
        loc = self.loc[vid]
        return self._slice(loc.var, loc.chunk, 1, loc.n)

    def _slice(self, var: str, start: int, length: int, n: int) -> str:
        if start == 0 and length == n:
            return var
        self.slices.setdefault(var, set()).add((start * self.H, length * self.H))
        return f"{{{{{var}:{start * self.H}:{length * self.H}}}}}"

    def _resolve_slices(self) -> None:
        """Split each sliced tensor once where its slices do not overlap (one SplitBackward
        instead of a zero-filled gradient per narrow); otherwise fall back to narrow."""
        names: dict[tuple[str, int, int], str] = {}
        for var, parts in self.slices.items():
            parts = sorted(parts)
            if any(a + n > b for (a, n), (b, _) in zip(parts, parts[1:], strict=False)):
                continue
            sizes, pieces, at = [], [], 0
            for start, length in parts:
                if start > at:
                    sizes.append(start - at)
                pieces.append((start, length, len(sizes)))
                sizes.append(length)
                at = start + length
            width = self.width_of[var] * self.H
            if at < width:
                sizes.append(width - at)
            for start, length, i in pieces:
                names[(var, start, length)] = f"{var}_parts[{i}]"
            where = next(i for i, line in enumerate(self.lines)
                         if line.lstrip().startswith(f"{var} = "))
            indent = self.lines[where][: len(self.lines[where]) - len(self.lines[where].lstrip())]
            self.lines.insert(where + 1, f"{indent}{var}_parts = {var}.split({sizes}, -1)")

        def replace(m: re.Match) -> str:
            var, start, length = m.group(1), int(m.group(2)), int(m.group(3))
            return names.get((var, start, length), f"{var}.narrow(-1, {start}, {length})")

        self.lines = [_PLACEHOLDER.sub(replace, line) for line in self.lines]

    def _apply(self, v: _Value, args: list[str]) -> str:
        if v.op == "LayerNorm":
            return f"F.layer_norm({args[0]}, [{self.H}], lnw[{v.index}], lnb[{v.index}])"
        if v.op == "PosEnc":
            return f"posenc({args[0]}, pos_t)"
        return f"fn_{v.op}({', '.join(args)})"

    # -- the two phases ---------------------------------------------------------
    def _matmuls(self, vids: list[int], prefix: str, indent: str) -> None:
        """One fused matrix product per distinct MM argument."""
        by_arg: dict[int, list[int]] = {}
        for vid in vids:
            by_arg.setdefault(self.g.values[vid].args[0], []).append(vid)
        for arg, members in by_arg.items():
            members.sort(key=lambda m: self.g.mm_order.get(m, (1, -1)))
            var = f"{prefix}{next(self.names)}"
            w = len(self.groups)
            self.groups.append([self.g.values[m].index for m in members])
            self.lines.append(f"{indent}{var} = F.linear({self.ref(arg)}, ws[{w}], bs[{w}])")
            self.width_of[var] = len(members)
            for j, m in enumerate(members):
                self.loc[m] = _Loc(var, j, len(members))

    def static_phase(self) -> None:
        values = self.g.values
        for vid, v in enumerate(values):
            if not v.static:
                continue
            if v.op == "x":
                self.loc[vid] = _Loc("inputs")
            elif v.op == "x_prev":
                self.lines.append("    xprev_seq = torch.cat([xp.unsqueeze(0), inputs[:-1]], 0)")
                self.loc[vid] = _Loc("xprev_seq")
        static_mm = [i for i, v in enumerate(values) if v.static and v.op == "MM"]
        # MMs of a source first (fused), then everything else in dependency order
        self._matmuls([i for i in static_mm if values[values[i].args[0]].op in INPUT_SOURCES],
                      "S", "    ")
        for vid, v in enumerate(values):
            if not v.static or vid in self.loc:
                continue
            if v.op == "MM":
                self._matmuls([vid], "S", "    ")
                continue
            var = f"s{next(self.names)}"
            self.lines.append(f"    {var} = {self._apply(v, [self.ref(a) for a in v.args])}")
            self.loc[vid] = _Loc(var)

    def loop_phase(self) -> None:
        values = self.g.values
        dynamic = [i for i, v in enumerate(values) if not v.static]
        used_static = sorted({self.loc[a].var for i in dynamic for a in values[i].args
                              if values[a].static}
                             | {self.loc[r].var for r in (self.g.root, self.g.mem)
                                if r is not None and values[r].static})
        self.used_static = used_static
        for var in used_static:  # unbind once: indexing [t] would backpropagate T full zeros
            self.lines.append(f"    {var}_steps = {var}.unbind(0)")
        self.lines.append(_LOOP)
        if any(values[i].op == "PosEnc" for i in dynamic):
            self.lines.append("        pos_t = pos + t")
        for var in used_static:
            self.lines.append(f"        {var}_t = {var}_steps[t]")
        for vid, v in enumerate(values):
            if v.static and self.loc[vid].var in used_static:
                loc = self.loc[vid]
                self.loc[vid] = _Loc(loc.var + "_t", loc.chunk, loc.n)
                self.width_of[loc.var + "_t"] = loc.n
        for vid in dynamic:
            if values[vid].op in _DYNAMIC_SOURCES:
                self.loc[vid] = _Loc(values[vid].op)
        level: dict[int, int] = {}
        for vid in dynamic:
            v = values[vid]
            if v.op not in _DYNAMIC_SOURCES:
                level[vid] = 1 + max(level.get(a, 0) for a in v.args)
        for lv in sorted(set(level.values())):
            members = [vid for vid in level if level[vid] == lv]
            self._matmuls([m for m in members if values[m].op == "MM"], "D", "        ")
            self._fused_elementwise([m for m in members if values[m].op != "MM"])
        new_c = "c" if self.g.mem is None else self.ref(self.g.mem)
        self.lines.append(f"        h, c = {self.ref(self.g.root)}, {new_c}")
        self.lines.append("        outs.append(h)")

    def _fused_elementwise(self, vids: list[int]) -> None:
        groups: dict[tuple, list[int]] = {}
        for vid in vids:
            v = self.g.values[vid]
            bases = tuple((self.loc[a].var, self.loc[a].n) for a in v.args)
            key = (v.op, bases) if v.op not in _UNFUSABLE else (v.op, vid)
            groups.setdefault(key, []).append(vid)
        for members in groups.values():
            members.sort(key=lambda m: [self.loc[a].chunk for a in self.g.values[m].args])
            for run in self._runs(members):
                self._emit_run(run)

    def _runs(self, members: list[int]) -> list[list[int]]:
        """Split members into runs whose argument chunks all advance by one."""
        runs: list[list[int]] = []
        for m in members:
            chunks = [self.loc[a].chunk for a in self.g.values[m].args]
            if runs:
                prev = [self.loc[a].chunk for a in self.g.values[runs[-1][-1]].args]
                if all(c == p + 1 for c, p in zip(chunks, prev, strict=True)):
                    runs[-1].append(m)
                    continue
            runs.append([m])
        return runs

    def _emit_run(self, run: list[int]) -> None:
        first = self.g.values[run[0]]
        args = [self._slice(self.loc[a].var, self.loc[a].chunk, len(run), self.loc[a].n)
                for a in first.args]
        var = f"v{next(self.names)}"
        self.width_of[var] = len(run)
        self.lines.append(f"        {var} = {self._apply(first, args)}")
        for j, m in enumerate(run):
            self.loc[m] = _Loc(var, j, len(run))

    def source(self) -> str:
        head = [
            "def cell_forward(inputs: Tensor, h: Tensor, c: Tensor, xp: Tensor, pos: Tensor,",
            "                 ws: List[Tensor], bs: List[Tensor], lnw: List[Tensor],",
            "                 lnb: List[Tensor]) -> Tuple[Tensor, Tensor, Tensor, Tensor, Tensor]:",
            "    outs: List[Tensor] = []",
        ]
        self.static_phase()
        self.loop_phase()
        self._resolve_slices()
        tail = ["    return torch.stack(outs), h, c, inputs[-1], pos + inputs.size(0)"]
        return "\n".join(head + self.lines + tail) + "\n"

    def step_sources(self) -> tuple[str, str]:
        """The plan of `source` (call it first) as two functions for the compiled-step mode:
        ``cell_static`` returns the input-only values the loop reads, for the whole sequence;
        ``cell_step(<one step of each>, h, c, pos_t, ws, bs, lnw, lnb)`` is one time step."""
        loop = self.lines.index(_LOOP)
        static = [line for line in self.lines[:loop] if not line.endswith(".unbind(0)")]
        per_step = {f"        {var}_t = {var}_steps[t]" for var in self.used_static}
        per_step |= {"        pos_t = pos + t", "        outs.append(h)"}
        body = [line[4:] for line in self.lines[loop + 1:] if line not in per_step]
        static_head = ["def cell_static(inputs: Tensor, xp: Tensor, ws: List[Tensor], "
                       "bs: List[Tensor], lnw: List[Tensor], lnb: List[Tensor]) -> List[Tensor]:"]
        static_tail = [f"    return [{', '.join(self.used_static)}]"]
        step_args = "".join(f"{var}_t: Tensor, " for var in self.used_static)
        step_head = [f"def cell_step({step_args}h: Tensor, c: Tensor, pos_t: Tensor,",
                     "              ws: List[Tensor], bs: List[Tensor], lnw: List[Tensor],",
                     "              lnb: List[Tensor]) -> Tuple[Tensor, Tensor]:"]
        return ("\n".join(static_head + static + static_tail) + "\n",
                "\n".join(step_head + body + ["    return h, c"]) + "\n")


_NAMESPACE = {
    "torch": torch, "F": F, "Tensor": Tensor, "List": list, "Tuple": tuple,
    "posenc": posenc, **{f"fn_{name}": fn for name, fn in FUNCTIONS.items()},
}
_counter = itertools.count()


def _materialise(source: str, name: str = "cell_forward"):
    """Turn generated source into a function whose source `inspect` can find (for TorchScript)."""
    filename = f"<cellzoo-cell-{next(_counter)}>"
    linecache.cache[filename] = (len(source), None, source.splitlines(True), filename)
    namespace = dict(_NAMESPACE, __name__=f"cellzoo.dsl.generated_{filename[14:-1]}")
    exec(compile(source, filename, "exec"), namespace)  # noqa: S102 - generated from a validated tree
    return namespace[name]


class CompiledCell(nn.Module):
    """A DSL cell as a module: ``forward(inputs [T,B,E], state) -> (outputs [T,B,H], state)``.

    The state is ``(h [B,H], c [B,H], x_prev [B,E], pos [B,1])``: the last
    hidden state, the memory, the last input (for ``x_prev``) and the step
    count (for ``PosEnc``). ``mode`` picks how the generated function runs:
    ``eager`` (plain PyTorch), ``script`` (TorchScript), ``compile``
    (``torch.compile`` of the unrolled sequence; pays only for long runs) or
    ``step`` (one compiled time step per cell and width, shared by the process:
    see `cellzoo.dsl.step` and benchmarks/cell_speed.py).
    """

    def __init__(self, cell: Node | str, input_size: int, hidden_size: int, mode: str = "eager"):
        super().__init__()
        tree = parse_cell(cell) if isinstance(cell, str) else cell
        if mode not in MODES:
            raise ValueError(f"unknown compile mode {mode!r}: choose one of {', '.join(MODES)}")
        self.expr = to_text(tree)
        self.input_size, self.hidden_size = input_size, hidden_size
        graph = _build_graph(tree)
        widths = {"E": input_size, "H": hidden_size}
        self.mm = nn.ModuleList(nn.Linear(widths[w], hidden_size) for w in graph.mm_inputs)
        self.ln = nn.ModuleList(nn.LayerNorm(hidden_size) for _ in range(graph.n_ln))
        writer = _CodeWriter(graph, hidden_size)
        self.code = writer.source()
        self._groups = writer.groups
        fn = _materialise(self.code)
        self._step = None
        if mode == "step":
            static_source, step_source = writer.step_sources()
            self._static = _materialise(static_source, "cell_static")
            self._step = compiled_step(hidden_size, step_source,
                                       lambda src: _materialise(src, "cell_step"))
            self._uses_pos = "posenc(" in step_source
        elif mode == "script":
            fn = torch.jit.script(fn)
        elif mode == "compile":
            fn = torch.compile(fn, dynamic=False)
        self._fn = fn

    def init_state(self, batch: int, device=None, dtype=None) -> State:
        def zeros(width: int) -> Tensor:
            return torch.zeros(batch, width, device=device, dtype=dtype)

        return zeros(self.hidden_size), zeros(self.hidden_size), zeros(self.input_size), zeros(1)

    def _fused(self, attr: str) -> list[Tensor]:
        out = []
        for group in self._groups:
            parts = [getattr(self.mm[k], attr) for k in group]
            out.append(parts[0] if len(parts) == 1 else torch.cat(parts))
        return out

    def forward(self, inputs: Tensor, state: State | None = None) -> tuple[Tensor, State]:
        if state is None:
            state = self.init_state(inputs.size(1), inputs.device, inputs.dtype)
        if inputs.size(0) == 0:
            raise ValueError("CompiledCell needs a sequence of at least one step")
        lnw = [m.weight for m in self.ln]
        lnb = [m.bias for m in self.ln]
        weights = (self._fused("weight"), self._fused("bias"), lnw, lnb)
        if self._step is None or not torch.is_grad_enabled():  # evaluation: no step graph
            out, h, c, xp, pos = self._fn(inputs, *state, *weights)
            return out, (h, c, xp, pos)
        h, c, xp, pos = state
        statics = self._static(inputs, xp, *weights)
        out, h, c = run_steps(self._step, inputs.size(0), statics, h, c, pos, self._uses_pos,
                              weights)
        return out, (h, c, inputs[-1], pos + inputs.size(0))

    def extra_repr(self) -> str:
        return f"{self.expr}, input_size={self.input_size}, hidden_size={self.hidden_size}"

