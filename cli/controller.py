"""`cellzoo controller ...`: sample cells from a fresh policy or from a search's controller."""

from __future__ import annotations

import json
from pathlib import Path

import click

from cellzoo.cli.progress import working
from cellzoo.common.errors import UserError
from cellzoo.dsl import Limits, cell_hash, to_text


def load_controller(path: Path):
    """The controller of a search run directory (its checkpoint) or of a `Controller.save` file."""
    from cellzoo.evolve.controller import Controller
    from cellzoo.evolve.rundir import CheckpointError, RunDir

    try:
        if path.is_file():
            return Controller.load(path)
        found = RunDir(path).load_checkpoint()
        if found is None:
            raise UserError(f"{path} holds no search checkpoint")
        state = found[1].get("proposer")
        if state is None:
            raise UserError(f"the search in {path} has no controller state "
                                       f"(it ran without --controller)")
        controller = Controller(pretrain=False, hidden=state["config"]["hidden"])
        controller.load_state_dict(state)
        return controller
    except (CheckpointError, ValueError, KeyError, RuntimeError, OSError) as err:
        raise UserError(f"{path}: cannot load a controller ({err})") from None


@click.group()
def controller() -> None:
    """The RL controller: a grammar-masked policy that writes valid cells."""


@controller.command()
@click.option("-n", "count", type=click.IntRange(min=1), default=10, show_default=True,
              help="How many cells to sample.")
@click.option("--checkpoint", type=click.Path(exists=True, path_type=Path), default=None,
              help="Sample from the controller of this search run directory "
                   "(or a controller .pt file) instead of a fresh one.")
@click.option("--level", type=click.Choice(["core", "extended"]), default=None,
              help="Operators the policy may use (default: core, or the checkpoint's).")
@click.option("--seed", type=int, default=None,
              help="Sampling seed (default 0; with --checkpoint the stored RNG state).")
@click.option("--max-depth", type=click.IntRange(min=1), default=None,
              help=f"Depth limit of a fresh policy (default {Limits.max_depth}).")
@click.option("--max-nodes", type=click.IntRange(min=1), default=None,
              help=f"Node limit of a fresh policy (default {Limits.max_nodes}).")
@click.option("--pretrain/--no-pretrain", default=True, show_default=True,
              help="Pre-train a fresh policy on the library cells.")
@click.option("--json", "as_json", is_flag=True,
              help="Print a JSON list of {expr, hash} objects.")
def sample(count: int, checkpoint: Path | None, level: str | None, seed: int | None,
           max_depth: int | None, max_nodes: int | None, pretrain: bool, as_json: bool) -> None:
    """Print COUNT cells sampled from the policy, one per line (hash, then expression)."""
    from cellzoo.evolve.controller import Controller

    if checkpoint is not None:
        if max_depth is not None or max_nodes is not None:
            raise click.UsageError("--max-depth/--max-nodes apply to a fresh policy; a "
                                   "checkpoint's controller keeps its stored limits")
        policy = load_controller(checkpoint)
        if level is not None:
            policy.set_level(level)
        if seed is not None:
            policy.generator.manual_seed(seed)
    else:
        limits = Limits(max_depth or Limits.max_depth, max_nodes or Limits.max_nodes)
        try:
            with working("pre-training the controller's policy on valid cells",
                         show=pretrain):
                policy = Controller(level=level or "core", limits=limits, seed=seed or 0,
                                    pretrain=pretrain)
        except ValueError as err:
            raise click.UsageError(str(err)) from None
    rows = [{"expr": to_text(cell), "hash": cell_hash(cell)} for cell in policy.sample(count)]
    if as_json:
        click.echo(json.dumps(rows, indent=1))
        return
    for row in rows:
        click.echo(f"{row['hash']}  {row['expr']}")
