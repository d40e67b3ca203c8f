"""Training speed of the DSL-compiled LSTM against torch.nn.LSTM, measured side by side.

Both arms train the same language model (embedding -> 2-layer recurrent stack ->
decoder) on the same batches; only the recurrent layers differ. Token ids are
drawn uniformly from the vocabulary: throughput does not depend on their values.

    python benchmarks/cell_speed.py                   # both configurations, eager mode
    python benchmarks/cell_speed.py --mode script --config char
    python benchmarks/cell_speed.py --device cuda     # on a GPU machine (cuDNN reference)

Prints tokens per second for each arm and the ratio DSL / torch (>= 0.9 is the CPU target).
"""

from __future__ import annotations

import argparse
import json
import time

import torch
from torch import nn

from cellzoo.dsl.compile import MODES, CompiledCell
from cellzoo.dsl.library import LIBRARY

CONFIGS = {
    # Zaremba et al. (2014) small model: vocabulary 10k, 2 layers of 200, 20 steps, batch 20
    "word": dict(vocab=10_000, hidden=200, layers=2, bptt=20, batch=20),
    # a character-level model where the cell dominates the cost
    "char": dict(vocab=50, hidden=256, layers=2, bptt=70, batch=32),
}


class StackLM(nn.Module):
    """Embedding -> recurrent layers -> decoder; ``layers`` are DSL cells or one nn.LSTM."""

    def __init__(self, vocab: int, hidden: int, layers: int, dsl: bool, mode: str):
        super().__init__()
        self.embed = nn.Embedding(vocab, hidden)
        self.dsl = dsl
        if dsl:
            self.rnn = nn.ModuleList(
                CompiledCell(LIBRARY["LSTM"].expr, hidden, hidden, mode) for _ in range(layers)
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


def measure(name: str, mode: str, device: str, seconds: float, rounds: int, clock) -> dict:
    cfg = CONFIGS[name]
    torch.manual_seed(0)
    steps = {}
    first_step = {}
    for arm, dsl in (("dsl", True), ("torch", False)):
        model = StackLM(cfg["vocab"], cfg["hidden"], cfg["layers"], dsl, mode).to(device)
        steps[arm] = make_step(model, cfg, device)
        start = time.perf_counter()
        steps[arm]()  # the first step pays for compilation in the compiled modes
        first_step[arm] = time.perf_counter() - start
        for _ in range(2):
            steps[arm]()
    tps = {arm: [] for arm in steps}
    for _ in range(rounds):  # interleave the arms so both see the same machine load
        for arm, step in steps.items():
            tps[arm].append(tokens_per_second(step, cfg, seconds, clock))
    d, r = max(tps["dsl"]), max(tps["torch"])
    return {"config": name, "mode": mode, "device": device, "threads": torch.get_num_threads(),
            **cfg, "dsl_tokens_per_s": round(d), "torch_tokens_per_s": round(r),
            "ratio": round(d / r, 3), "dsl_first_step_s": round(first_step["dsl"], 2),
            "torch_first_step_s": round(first_step["torch"], 2)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", choices=[*CONFIGS, "all"], default="all")
    parser.add_argument("--mode", choices=MODES, default="eager")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--seconds", type=float, default=10.0, help="per arm and round")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    parser.add_argument("--clock", choices=["wall", "cpu"], default="wall",
                        help="cpu: count this process's CPU time, steadier on a busy machine")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    clock = time.perf_counter if args.clock == "wall" else time.process_time
    names = list(CONFIGS) if args.config == "all" else [args.config]
    for name in names:
        row = measure(name, args.mode, args.device, args.seconds, args.rounds, clock)
        if args.json:
            print(json.dumps(row))
        else:
            print(f"{name:5s} {args.mode:7s} {args.device}: DSL LSTM {row['dsl_tokens_per_s']:>8,} "
                  f"tok/s   torch.nn.LSTM {row['torch_tokens_per_s']:>8,} tok/s   "
                  f"ratio {row['ratio']:.3f}   (first step: DSL {row['dsl_first_step_s']} s, "
                  f"torch {row['torch_first_step_s']} s)")


if __name__ == "__main__":
    main()
