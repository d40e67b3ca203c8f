"""Training speed of DSL cells (eager and compiled modes) against torch.nn.LSTM, side by side.

Every arm trains the same language model (embedding -> 2-layer recurrent stack ->
decoder) on the same batches; only the recurrent layers differ. Token ids are
drawn uniformly from the vocabulary: throughput does not depend on their values.

    python benchmarks/cell_speed.py                   # both configurations, LSTM/GRU/searched
    python benchmarks/cell_speed.py --modes eager,script --cells LSTM --config char
    python benchmarks/cell_speed.py --device cuda     # on a GPU machine (cuDNN reference)

Prints, per configuration, cell and mode, tokens per second, the ratio to
torch.nn.LSTM and the first step's cost (compilation, in the compiled modes) in
wall and CPU seconds; the CPU seconds include the compiler's child processes.
Inductor's on-disk cache is pointed at a fresh folder unless --warm-cache, so
the compile times are those of a first run.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time

import torch
from torch import nn

from cellzoo.dsl.compile import MODES, CompiledCell
from cellzoo.dsl.library import LIBRARY

#: the cells measured: two library cells, the best cell of the 20k-token proxy search and the
#: ladder search's best so far (`9d53a0b9`, docs/results.md), a tree three times the LSTM's
CELLS = {
    "LSTM": LIBRARY["LSTM"].expr,
    "GRU": LIBRARY["GRU"].expr,
    "searched": "Gate3(MM(MM(Gate3(SeLU(Sub(h, MM(x))), Max(MM(x), h), MM(x)))), "
                "LayerNorm(MM(x)), MM(x))",
    "ladder-best": (
        "Mult(Sigmoid(Add(MM(x), Max(Sigmoid(Add(MM(x), MM(x))), Tanh(Mem(Gate3(c, "
        "Tanh(Add(MM(x), Mult(Sigmoid(Add(MM(x), Mult(c, h))), Tanh(Add(MM(x), Mult(c, "
        "c)))))), Add(MM(x), Mult(Sigmoid(Add(MM(h), MM(x))), Tanh(Mult(Sigmoid(Add(c, h)), "
        "Tanh(Add(c, c)))))))))))), Tanh(Add(MM(x), Mult(Sigmoid(Add(Add(MM(x), "
        "Mult(Sigmoid(Add(Add(MM(h), MM(x)), MM(h))), Tanh(MM(x)))), c)), c))))"),
}

CONFIGS = {
    # Zaremba et al. (2014) small model: vocabulary 10k, 2 layers of 200, 20 steps, batch 20
    "word": dict(vocab=10_000, hidden=200, layers=2, bptt=20, batch=20),
    # a character-level model where the cell dominates the cost
    "char": dict(vocab=50, hidden=256, layers=2, bptt=70, batch=32),
}


class StackLM(nn.Module):
    """Embedding -> recurrent layers -> decoder; ``layers`` are DSL cells (``expr`` given)
    or one nn.LSTM."""

    def __init__(self, vocab: int, hidden: int, layers: int, expr: str | None, mode: str):
        super().__init__()
        self.embed = nn.Embedding(vocab, hidden)
        self.dsl = expr is not None
        if self.dsl:
            self.rnn = nn.ModuleList(
                CompiledCell(expr, hidden, hidden, mode) for _ in range(layers)
            )
        else:
            self.rnn = nn.LSTM(hidden, hidden, layers)
        self.decoder = nn.Linear(hidden, vocab)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        out = self.embed(tokens)
        if self.dsl:
            for cell in self.rnn:
                out, _ = cell(out)
        else:
            out, _ = self.rnn(out)
        return self.decoder(out)


def make_step(model: nn.Module, cfg: dict, device: str):
    """One SGD training step on a fresh random batch, as a closure."""
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    loss_fn = nn.CrossEntropyLoss()
    gen = torch.Generator().manual_seed(0)

    def step() -> None:
        data = torch.randint(cfg["vocab"], (cfg["bptt"] + 1, cfg["batch"]), generator=gen)
        data = data.to(device)
        logits = model(data[:-1])
        loss = loss_fn(logits.reshape(-1, cfg["vocab"]), data[1:].reshape(-1))
        opt.zero_grad()
        loss.backward()
        nn.utils.clip_grad_norm_(model.parameters(), 5.0)
        opt.step()
        _sync(device)

    return step


def tokens_per_second(step, cfg: dict, seconds: float, clock) -> float:
    start, steps = clock(), 0
    while clock() - start < seconds:
        step()
        steps += 1
    return steps * cfg["bptt"] * cfg["batch"] / (clock() - start)


def _sync(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()


def cpu_with_children() -> float:
    """CPU seconds of this process and its finished children (inductor runs the C++ compiler)."""
    t = os.times()
    return t.user + t.system + t.children_user + t.children_system


def measure(name: str, cells: list[str], modes: list[str], device: str, seconds: float,
            rounds: int, clock) -> list[dict]:
    """One row per arm: torch.nn.LSTM, then every cell in every mode."""
    cfg = CONFIGS[name]
    arms = {("torch.nn.LSTM", "cudnn" if device == "cuda" else "native"): None}
    arms.update({(cell, mode): CELLS[cell] for cell in cells for mode in modes})
    steps, first = {}, {}
    for arm, expr in arms.items():
        torch.manual_seed(0)
        model = StackLM(cfg["vocab"], cfg["hidden"], cfg["layers"], expr, arm[1]).to(device)
        steps[arm] = make_step(model, cfg, device)
        wall, cpu = time.perf_counter(), cpu_with_children()
        steps[arm]()  # the first step pays for compilation in the compiled modes
        first[arm] = (time.perf_counter() - wall, cpu_with_children() - cpu)
        for _ in range(2):
            steps[arm]()
    tps = {arm: [] for arm in steps}
    for _ in range(rounds):  # interleave the arms so all see the same machine load
        for arm, step in steps.items():
            tps[arm].append(tokens_per_second(step, cfg, seconds, clock))
    reference = max(next(iter(tps.values())))
    return [{"config": name, "cell": arm[0], "mode": arm[1], "device": device,
             "threads": torch.get_num_threads(), **cfg, "tokens_per_s": round(max(tps[arm])),
             "ratio_to_nn_lstm": round(max(tps[arm]) / reference, 3),
             "first_step_s": round(first[arm][0], 2), "first_step_cpu_s": round(first[arm][1], 2)}
            for arm in steps]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", choices=[*CONFIGS, "all"], default="all")
    parser.add_argument("--cells", default=",".join(CELLS), help=f"from {', '.join(CELLS)}")
    parser.add_argument("--modes", default="eager,step", help=f"from {', '.join(MODES)}")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--seconds", type=float, default=5.0, help="per arm and round")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    parser.add_argument("--clock", choices=["wall", "cpu"], default="wall",
                        help="cpu: count this process's CPU time, steadier on a busy machine")
    parser.add_argument("--warm-cache", action="store_true",
                        help="keep torch's on-disk inductor cache (default: a fresh one)")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    cells, modes = args.cells.split(","), args.modes.split(",")
    for value, known in ((cells, CELLS), (modes, MODES)):
        if not set(value) <= set(known):
            unknown = ", ".join(sorted(set(value) - set(known)))
            parser.error(f"unknown {unknown}: choose from {', '.join(known)}")
    if not args.warm_cache:
        os.environ["TORCHINDUCTOR_CACHE_DIR"] = tempfile.mkdtemp(prefix="cell-speed-inductor-")
    if args.threads:
        torch.set_num_threads(args.threads)
    clock = time.perf_counter if args.clock == "wall" else time.process_time
    names = list(CONFIGS) if args.config == "all" else [args.config]
    for name in names:
        for row in measure(name, cells, modes, args.device, args.seconds, args.rounds, clock):
            if args.json:
                print(json.dumps(row), flush=True)
            else:
                print(f"{name:5s} {row['cell']:14s} {row['mode']:7s} "
                      f"{row['tokens_per_s']:>8,} tok/s"
                      f"  ratio {row['ratio_to_nn_lstm']:.3f}  first step {row['first_step_s']} s"
                      f" wall, {row['first_step_cpu_s']} s CPU", flush=True)

if __name__ == "__main__":
    main()
