"""Kill a zoo writer with SIGKILL many times at random moments; count runs lost.

    OMP_NUM_THREADS=1 python benchmarks/zoo_stress.py --kills 100 [--dir DIR] [--seed 0]

Each round starts ``python -m cellzoo.zoo.soak`` (it adds copies of one real
training result in a loop and prints ``ACK <run id>`` after each `add_run`
returns), waits for its first acknowledgement, lets it run a random while,
kills it, and checks that every run acknowledged so far, in every round, is in
the zoo with the right weights. Rounds vary how often the writer compacts, so
kills land in journal writes, compactions and start-up recovery alike.
"""

from __future__ import annotations

import argparse
import random
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from cellzoo.train import TrainConfig, train_cell
from cellzoo.zoo import Zoo
from cellzoo.zoo.soak import lost_runs, save_template

CONFIG = TrainConfig(task="synthetic", hidden=16, batch_size=4, bptt=10, budget_tokens=400,
                     eval_tokens=200)


def one_round(zoo: Path, template: Path, rng: random.Random) -> tuple[list[str], str]:
    max_pending = rng.choice([1, 2, 5, 256])
    proc = subprocess.Popen([sys.executable, "-m", "cellzoo.zoo.soak", str(zoo), str(template),
                             str(max_pending)], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)
    acked: list[str] = []
    first = threading.Event()

    def pump() -> None:
        for line in proc.stdout:
            if line.startswith("ACK "):
                acked.append(line.split()[1])
                first.set()

    reader = threading.Thread(target=pump, daemon=True)
    reader.start()
    first.wait(120)
    time.sleep(rng.uniform(0.0, 1.0))
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    reader.join()
    return acked, proc.stderr.read()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kills", type=int, default=100)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--dir", type=Path, default=None, help="Work folder (default: a temp one).")
    args = parser.parse_args()
    work = args.dir or Path(tempfile.mkdtemp(prefix="zoo-stress-"))
    work.mkdir(parents=True, exist_ok=True)
    zoo, template = work / "stress.h5", work / "template.pt"
    save_template(train_cell("LSTM", CONFIG), template)
    rng = random.Random(args.seed)
    acknowledged: list[str] = []
    survived = 0
    start = time.perf_counter()
    for kill in range(1, args.kills + 1):
        acked, stderr = one_round(zoo, template, rng)
        acknowledged += acked
        lost = lost_runs(zoo, acknowledged, template)
        survived += not lost
        if lost or "Traceback" in stderr:
            print(f"kill {kill}: LOST {len(lost)} runs {lost[:5]}\n{stderr[-2000:]}", flush=True)
        if kill % 10 == 0:
            print(f"kill {kill}: {len(acknowledged)} runs acknowledged so far, "
                  f"{len(lost)} lost", flush=True)
    with Zoo.open(zoo, "a", timeout=10) as z:  # the next writer recovers by itself
        total = len(z)
    final_lost = lost_runs(zoo, acknowledged, template)
    print(f"kills survived: {survived}/{args.kills}")
    print(f"runs acknowledged: {len(acknowledged)}  runs in zoo: {total}  "
          f"runs lost: {len(final_lost)}")
    print(f"zoo {zoo}: {zoo.stat().st_size / 1e6:.2f} MB, "
          f"{time.perf_counter() - start:.0f} s")


if __name__ == "__main__":
    main()
