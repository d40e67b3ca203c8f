"""`cellzoo train` and `cellzoo data`: train one cell as a language model; find or fetch corpora."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import click

from cellzoo.cli.defaults import default
from cellzoo.cli.types import IntList
from cellzoo.common.errors import UserError
from cellzoo.common.paths import check_writable_dir
from cellzoo.dsl.canonical import canonical_text
from cellzoo.dsl.library import LIBRARY, resolve_cell
from cellzoo.dsl.parse import DSLError
from cellzoo.train.checkpoint import CheckpointError
from cellzoo.train.config import DEVICES, OPTIMIZERS, PRESETS, PROXIES, TrainConfig, TrainResult
from cellzoo.train.corpus import (
    REAL_TASKS,
    CorpusNotFoundError,
    candidate_dirs,
    has_corpus,
    load_corpus,
    missing_files,
)
from cellzoo.train.fetch import FetchError, fetch_corpus
from cellzoo.train.loop import load_run, train_cell
from cellzoo.train.model import matched_hidden
from cellzoo.train.progress import progress_reporter

TASK_CHOICES = click.Choice(sorted(PROXIES))
RESULT_NAME = "unstored-result.pt"  # a finished run waiting for `cellzoo zoo add`
STORE_WAIT = 600.0  # seconds a finished run waits for another writer before it is kept aside




@click.command()
@click.argument("cell", required=False)
@click.option("--task", type=TASK_CHOICES, default=None,
              help="Corpus to train on (default: the preset's, else synthetic).")
@click.option("--preset", type=click.Choice(sorted(PRESETS)), default=None,
              help="A published configuration (default: the task's search proxy).")
@click.option("--data", "data_dir", type=click.Path(file_okay=False), default=None,
              help="Folder with train/valid/test.txt, or with <task>/ inside.")
@click.option("--budget-tokens", type=click.IntRange(min=1), default=None,
              help="Train on this many tokens.")
@click.option("--epochs", type=click.IntRange(min=1), default=None, help="Train this many epochs.")
@click.option("--hidden", type=click.IntRange(min=1), default=None, help="Hidden width.")
@click.option("--layers", type=click.IntRange(min=1), default=None, help="Stacked cells.")
@click.option("--lr", type=click.FloatRange(min=0, min_open=True), default=None,
              help="Learning rate.")
@click.option("--optimizer", type=click.Choice(OPTIMIZERS), default=None)
@click.option("--batch-size", type=click.IntRange(min=1), default=None)
@click.option("--bptt", type=click.IntRange(min=1), default=None, help="Truncated BPTT steps.")
@click.option("--dropout", type=click.FloatRange(0, 1, max_open=True), default=None)
@click.option("--clip", type=click.FloatRange(min=0, min_open=True), default=None,
              help="Gradient norm clip.")
@click.option("--match-params", "match_params", metavar="CELL", default=None,
              help="Set the hidden width so the model has CELL's parameter count (within 5%).")
@click.option("--eval-tokens", type=click.IntRange(min=1), default=None,
              help="Cap on validation and test tokens.")
@click.option("--eval-at", type=IntList(example="149188,447565"), default=None, metavar="N,N,...",
              help="Also validate when training reaches these token counts (e.g. a ladder's "
                   "rung budgets: a full run then records every prefix rung's result).")
@click.option("--seed", type=int, default=None,
              help=f"Random seed (default {default(TrainConfig, 'seed')}).")
@click.option("--device", type=click.Choice(DEVICES), default=None,
              help="auto = cuda when available.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
@click.option("--zoo", "zoo_path", type=click.Path(dir_okay=False), default=None,
              help="Store the run in this HDF5 zoo (checked before training, locked to store).")
@click.option("--lock-timeout", type=click.FloatRange(min=0), default=0, show_default=True,
              help="Seconds to wait for another writer (a search) to release --zoo before "
                   f"training (when storing: at least {STORE_WAIT:.0f}).")
@click.option("--save-result", "result_file", type=click.Path(dir_okay=False), default=None,
              help="With --zoo: where the result is kept until the zoo has it (default: "
                   f"{RESULT_NAME} in --checkpoint, else unstored-result-PID.pt here).")
@click.option("--checkpoint", "checkpoint_dir", type=click.Path(file_okay=False), default=None,
              help="Checkpoint here; a matching checkpoint already there is continued.")
@click.option("--resume", "resume_dir", type=click.Path(file_okay=False), default=None,
              help="Continue the run checkpointed in this folder (CELL and options optional).")
def train(cell: str | None, task: str | None, preset: str | None, data_dir: str | None,
          as_json: bool, zoo_path: str | None, lock_timeout: float, result_file: str | None,
          checkpoint_dir: str | None, resume_dir: str | None, match_params: str | None,
          **options: Any) -> None:
    """Train CELL (DSL text or a library name) as a language model and report perplexities.

    Without --preset the task's proxy configuration is the base (the one a
    search uses); the options above override its fields.
    """
    if options["budget_tokens"] is not None and options["epochs"] is not None:
        raise click.UsageError("give --budget-tokens or --epochs, not both")
    if resume_dir is not None:
        cell, config = _resumed(cell, resume_dir, task, preset, options | {"match_params":
                                                                            match_params})
        checkpoint_dir = checkpoint_dir or resume_dir
    else:
        if cell is None:
            raise click.UsageError("missing CELL (DSL text or a library name), or --resume DIR")
        config = _config(task, preset, options)
    node = _parse(cell)
    if match_params is not None:
        if options["hidden"] is not None:
            raise click.UsageError("give --hidden or --match-params, not both")
        config = _matched(node, match_params, config, data_dir)
    if checkpoint_dir is not None:
        check_writable_dir(checkpoint_dir, "the checkpoint")
    if zoo_path is None:
        with progress_reporter() as report:
            result = _run(node, config, data_dir, report, checkpoint_dir)
        _print(result, as_json)
        _exit_if_failed(result)
        return
    saved = Path(result_file or (Path(checkpoint_dir) / RESULT_NAME if checkpoint_dir
                                 else f"unstored-result-{os.getpid()}.pt"))
    check_writable_dir(saved.parent, "the result")
    _open_zoo(zoo_path, lock_timeout).close()  # fail before training, not after it
    with progress_reporter() as report:
        result = _run(node, config, data_dir, report, checkpoint_dir)
    lineage = {"origin": _origin(cell, node, resumed=resume_dir is not None)}
    _store(zoo_path, max(lock_timeout, STORE_WAIT), result, lineage, saved, as_json)
    _exit_if_failed(result)


def _exit_if_failed(result: TrainResult) -> None:
    """Exit code 1 for a run that failed (an error inside training, not the cell's result:
    a diverged run is a result and exits 0), after its result was printed and stored."""
    if result.status == "failed":
        click.get_current_context().exit(1)


def _config(task: str | None, preset: str | None, options: dict[str, Any]) -> TrainConfig:
    base = TrainConfig.preset(preset) if preset else TrainConfig.proxy(task or "synthetic")
    changes = {k: v for k, v in options.items() if v is not None}  # options are field names
    if task is not None:
        changes["task"] = task
    if options["budget_tokens"] is not None:
        changes["epochs"] = None
    if options["epochs"] is not None:
        changes["budget_tokens"] = None
    try:
        return base.replace(**changes)
    except ValueError as err:
        raise click.UsageError(str(err)) from None


def _matched(node, reference: str, config: TrainConfig, data_dir: str | None) -> TrainConfig:
    """`config` with the hidden width that gives `node` the reference cell's parameter count."""
    ref = _parse(reference)
    try:
        vocab = load_corpus(config.task, data_dir).vocab_size
        hidden, count, target = matched_hidden(node, ref, vocab, config)
    except (CorpusNotFoundError, ValueError) as err:
        raise UserError(str(err)) from None
    click.echo(f"hidden {hidden}: {count:,} parameters; {reference} at hidden {config.hidden}: "
               f"{target:,} ({count / target - 1:+.1%})", err=True)
    return config.replace(hidden=hidden)


def _resumed(cell: str | None, folder: str, task: str | None, preset: str | None,
             options: dict[str, Any]) -> tuple[str, TrainConfig]:
    """The stored cell and configuration; only --device may differ from the stored run."""
    try:
        expr, config, _ = load_run(folder)
    except CheckpointError as err:
        raise click.UsageError(str(err)) from None
    given = {k: v for k, v in options.items() if k != "device"} | {"task": task, "preset": preset}
    changed = [f"--{k.replace('_', '-')}" for k, v in given.items() if v is not None]
    if changed:
        raise click.UsageError("--resume continues the stored configuration; drop "
                               + ", ".join(changed))
    if cell is not None and _parse(cell) != _parse(expr):
        raise click.UsageError(f"{folder} holds a run of {expr}, not of {cell}")
    if options["device"] is not None:
        config = config.replace(device=options["device"])
    return expr, config


def _parse(cell: str):
    try:
        return resolve_cell(cell)
    except DSLError as err:
        raise click.UsageError(f"invalid cell: {err}") from None


def _run(node, config: TrainConfig, data_dir: str | None, report, checkpoint_dir: str | None):
    try:
        return train_cell(node, config, data_dir, report, checkpoint_dir)
    except (CorpusNotFoundError, CheckpointError, ValueError) as err:
        raise UserError(str(err)) from None


def _origin(cell: str, node, resumed: bool) -> str:
    """"library" for a cell given by its library name (a resumed run's checkpoint holds only
    the text: there, a cell equal to a library cell), else "manual"."""
    if resumed:
        library = {canonical_text(resolve_cell(c.expr)) for c in LIBRARY.values()}
        return "library" if canonical_text(node) in library else "manual"
    return "library" if cell.strip().lower() in {n.lower() for n in LIBRARY} else "manual"


def _open_zoo(zoo_path: str, lock_timeout: float):
    """The zoo opened for writing (created if missing), its writer lock held. Opened and
    closed again before training, so that a run is never trained for want of a zoo; the
    lock is held only while storing, so that runs can train side by side into one zoo."""
    from cellzoo.zoo import Zoo, ZooError  # the zoo needs h5py: import it only when asked

    path = Path(zoo_path)
    check_writable_dir(path.parent, f"the zoo {path}", create=False)
    try:
        zoo = Zoo.open(path, "a", timeout=lock_timeout)
    except ZooError as err:
        raise UserError(f"{err} (--lock-timeout SECONDS waits for it)"
                        if "open for writing" in str(err) else str(err)) from None
    if zoo.journal.dir.exists():
        check_writable_dir(zoo.journal.dir, f"the journal of the zoo {path}")
    return zoo


def _store(zoo_path: str, lock_timeout: float, result: TrainResult, lineage: dict[str, Any],
           saved: Path, as_json: bool) -> None:
    """Save the result to `saved`, store it in the zoo, then delete `saved`: a kill or a
    failure (a full disk, a writer that keeps the lock) at any point leaves the run in the
    zoo, in `saved`, or both (`zoo add` skips the copy). When neither can be written, the
    printed result is what remains."""
    from cellzoo.zoo.pending import save_pending

    try:
        save_pending(saved, result, lineage)
        unsaved = None
    except (OSError, RuntimeError) as err:  # torch.save raises RuntimeError on a full disk
        unsaved = err
    try:
        with _open_zoo(zoo_path, lock_timeout) as zoo:
            run_id = zoo.add_run(result, lineage=lineage)
    except (UserError, OSError) as err:
        _print(result, as_json)
        if unsaved is not None:
            raise UserError(f"the run was trained but could not be stored in {zoo_path} "
                            f"({err}) nor saved to {saved} ({unsaved}); its numbers are "
                            f"printed above, its weights are lost") from None
        raise UserError(f"the run was trained but could not be stored in {zoo_path}: {err}\n"
                        f"its result is saved in {saved}; store it later with\n"
                        f"  cellzoo zoo add {zoo_path} {saved}") from None
    if unsaved is None:
        saved.unlink()
    _print(result, as_json, run_id)
    click.echo(f"stored run {run_id} in {zoo_path}", err=True)


def _print(result: TrainResult, as_json: bool, run_id: str | None = None) -> None:
    """The result on stdout; with ``run_id`` (the run stored in a zoo), its id too."""
    if as_json:
        data = result.to_json()
        if run_id is not None:
            data["run_id"] = run_id
        click.echo(json.dumps(data))
        return
    click.echo(f"cell      {result.expr}")
    click.echo(f"hash      {result.hash}  config {result.config.key()}")
    error = f"  ({result.error.strip()})" if result.error else ""
    click.echo(f"status    {result.status}{error}")
    click.echo(f"valid ppl {result.val_ppl:.2f}   test ppl {result.test_ppl:.2f}")
    click.echo(f"params    {result.params:,}   tokens {result.tokens_trained:,}   "
               f"{result.tokens_per_s:,.0f} tokens/s   {result.seconds:.1f} s on {result.device}")


@click.group()
def data() -> None:
    """Find and fetch the corpora of the training tasks."""


@data.command("path")
@click.argument("task", type=click.Choice(REAL_TASKS))
@click.option("--data", "data_dir", type=click.Path(file_okay=False), default=None)
def data_path(task: str, data_dir: str | None) -> None:
    """Show where TASK's corpus resolves (and every place searched)."""
    folders = candidate_dirs(task, data_dir)
    found = [has_corpus(folder) for folder in folders]
    for folder, ok in zip(folders, found, strict=True):
        lacking = missing_files(folder)
        state = "found  " if ok else "partial" if folder.is_dir() and len(lacking) < 3 else \
            "missing"
        detail = f"  (no {', '.join(lacking)})" if state == "partial" else ""
        click.echo(f"{state} {folder}{detail}")
    if not any(found):
        raise UserError(str(CorpusNotFoundError(task, folders)))


@data.command("fetch")
@click.argument("task", type=click.Choice(REAL_TASKS))
@click.option("--dest", type=click.Path(file_okay=False), default=None,
              help="Folder to write into (default: the cache folder of TASK).")
def data_fetch(task: str, dest: str | None) -> None:
    """Download TASK's corpus from its public source and check its SHA-256 sums."""
    try:
        folder = fetch_corpus(task, Path(dest) if dest else None)
    except FetchError as err:
        raise UserError(str(err)) from None
    click.echo(f"{task}: {folder}")

