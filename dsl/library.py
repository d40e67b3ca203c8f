"""Human-designed cells written in the DSL; every search is seeded with them.

Where a published cell shares one gate between two places, a tree repeats the
gate with its own weights (trees do not share nodes); the cell name says "-like"
only where that changes what the cell can compute.
"""

from __future__ import annotations

from dataclasses import dataclass

from cellzoo.dsl.parse import DSLError, shown
from cellzoo.dsl.tree import Node
from cellzoo.dsl.validate import DEFAULT_LIMITS, Limits, parse_cell


@dataclass(frozen=True)
class LibraryCell:
    name: str
    expr: str
    source: str


_GATE = "Add(MM(x), MM(h))"

LIBRARY: dict[str, LibraryCell] = {
    cell.name: cell
    for cell in (
        # Elman (1990): h = tanh(W x + U h + b)
        LibraryCell("tanh-RNN", f"Tanh({_GATE})", "Elman, Finding structure in time, 1990"),
        # Le, Jaitly & Hinton (2015): the ReLU RNN ("IRNN" with identity init)
        LibraryCell("ReLU-RNN", f"ReLU({_GATE})",
                    "Le et al., A simple way to initialize recurrent networks of ReLUs, 2015"),
        # Hochreiter & Schmidhuber (1997) with the forget gate of Gers et al. (2000):
        # h = o * tanh(c),  c = f * c + i * g   (o, f, i, g in that order of appearance)
        LibraryCell(
            "LSTM",
            f"Mult(Sigmoid({_GATE}), Tanh(Mem(Add(Mult(Sigmoid({_GATE}), c), "
            f"Mult(Sigmoid({_GATE}), Tanh({_GATE}))))))",
            "Hochreiter & Schmidhuber 1997; Gers, Schmidhuber & Cummins 2000",
        ),
        # Cho et al. (2014): the reset gate acts before the recurrent product, W (r * h)
        LibraryCell(
            "GRU",
            f"Gate3(h, Tanh(Add(MM(x), MM(Mult(Sigmoid({_GATE}), h)))), {_GATE})",
            "Cho et al., Learning phrase representations using RNN encoder-decoder, 2014",
        ),
        # The variant in cuDNN and torch.nn.GRU: the reset gate acts after it, r * (W h + b)
        LibraryCell(
            "GRU-torch",
            f"Gate3(h, Tanh(Add(MM(x), Mult(Sigmoid({_GATE}), MM(h)))), {_GATE})",
            "torch.nn.GRUCell / cuDNN GRU (reset after the recurrent product)",
        ),
        # Zhou et al. (2016): one forget gate f serves as reset and as update gate
        LibraryCell(
            "MGU-like",
            f"Gate3(Tanh(Add(MM(x), MM(Mult(Sigmoid({_GATE}), h)))), h, {_GATE})",
            "Zhou et al., Minimal gated unit for recurrent neural networks, 2016",
        ),
        # Chen (2017): z = tanh(W x), u = sigmoid(U h + V z), h = u * h + (1 - u) * z
        LibraryCell(
            "MinimalRNN",
            "Gate3(h, Tanh(MM(x)), Add(MM(h), MM(Tanh(MM(x)))))",
            "Chen, MinimalRNN: toward more interpretable and trainable RNNs, 2017",
        ),
        # Bradbury et al. (2017), window 2, fo-pooling: z, f, o from x_t and x_{t-1}
        LibraryCell(
            "QRNN",
            "Mult(Sigmoid(Add(MM(x), MM(x_prev))), "
            "Mem(Gate3(c, Tanh(Add(MM(x), MM(x_prev))), Add(MM(x), MM(x_prev)))))",
            "Bradbury et al., Quasi-recurrent neural networks, 2017",
        ),
        # Greff et al. (2017), CIFG: the input gate is coupled to the forget gate, i = 1 - f
        LibraryCell(
            "CIFG-LSTM",
            f"Mult(Sigmoid({_GATE}), Tanh(Mem(Gate3(c, Tanh({_GATE}), {_GATE}))))",
            "Greff et al., LSTM: a search space odyssey, 2017 (coupled input-forget gate)",
        ),
        # Gers & Schmidhuber (2000): gates also read the memory (full peephole matrices here)
        LibraryCell(
            "peephole-LSTM",
            "Mult(Sigmoid(Add(Add(MM(x), MM(h)), MM(c))), Tanh(Mem(Add("
            "Mult(Sigmoid(Add(Add(MM(x), MM(h)), MM(c))), c), "
            f"Mult(Sigmoid(Add(Add(MM(x), MM(h)), MM(c))), Tanh({_GATE}))))))",
            "Gers & Schmidhuber, Recurrent nets that time and count, 2000",
        ),
        # Lei et al. (2017): c = f * c + (1 - f) * W x; h = r * tanh(c) + (1 - r) * W' x
        LibraryCell(
            "SRU",
            "Gate3(Tanh(Mem(Gate3(c, MM(x), MM(x)))), MM(x), MM(x))",
            "Lei et al., Simple recurrent units for highly parallelizable recurrence, 2017",
        ),
    )
}


def resolve_cell(name_or_expr: str | Node, limits: Limits = DEFAULT_LIMITS) -> Node:
    """A library name (case-insensitive) or DSL text, parsed and validated."""
    if isinstance(name_or_expr, Node):
        return name_or_expr
    by_name = {name.lower(): cell for name, cell in LIBRARY.items()}
    cell = by_name.get(name_or_expr.strip().lower())
    if cell is not None:
        return parse_cell(cell.expr)
    try:
        return parse_cell(name_or_expr, limits)
    except DSLError as err:
        if "(" not in name_or_expr and err.column in (None, 1):
            names = ", ".join(LIBRARY)
            raise DSLError(f"{shown(name_or_expr)} is neither a library cell ({names}) "
                           f"nor a valid expression: {err.reason}", err.column) from None
        raise
