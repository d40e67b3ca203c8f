"""`cellzoo evolve` (run or continue a search) and `cellzoo plot progress`."""

from __future__ import annotations

import json
import math
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from cellzoo.cli.defaults import default
from cellzoo.common.errors import UserError
from cellzoo.evolve.config import (
    DEDUPS,
    EXECUTORS,
    MIN_ROUND,
    OP_LEVELS,
    STRATEGIES,
    ConfigError,
    SearchConfig,
)
from cellzoo.evolve.ladder import SCHEDULES
from cellzoo.train import PROXIES

if TYPE_CHECKING:
    from cellzoo.evolve.candidates import PreFilter, Proposer


def _default(name: str) -> str:
    return default(SearchConfig, name)


@click.command()
@click.argument("run_dir_arg", metavar="[RUN_DIR]", required=False,
                type=click.Path(file_okay=False))
@click.option("--run-dir", type=click.Path(file_okay=False), default=None,
              help="Folder for the checkpoint and logs (an existing one is continued).")
@click.option("--zoo", type=click.Path(dir_okay=False), default=None,
              help="HDF5 zoo that receives every trained cell (created if missing).")
@click.option("--task", type=click.Choice(sorted(PROXIES)), default=None,
              help=f"Task whose proxy training judges candidates (default {_default('task')}).")
@click.option("--data", "data_dir", type=click.Path(file_okay=False), default=None,
              help="Corpus folder (else $CELLZOO_DATA or the cache).")
@click.option("--evaluations", type=click.IntRange(min=1), default=None,
              help=f"Candidates to train in all (default {_default('evaluations')}; zoo reuses "
                   f"do not count; on a ladder: new candidates, at rung 0).")
@click.option("--population", type=click.IntRange(min=1), default=None,
              help=f"Population size P (default {_default('population')}).")
@click.option("--sample", type=click.IntRange(min=1), default=None,
              help=f"Tournament sample S (default {_default('sample')}).")
@click.option("--strategy", type=click.Choice(STRATEGIES), default=None,
              help=f"aging (regularized evolution), mu+lambda, or random search (default "
                   f"{_default('strategy')}).")
@click.option("--round-size", type=click.IntRange(min=1), default=None,
              help=f"Candidates trained per round (default max({MIN_ROUND}, workers)).")
@click.option("--ops", type=click.Choice(OP_LEVELS), default=None,
              help=f"Operators the search may use (default {_default('ops')}).")
@click.option("--library/--no-library", default=None,
              help=f"Seed the population with the human-designed cells (default "
                   f"{_default('library')}).")
@click.option("--dedup", type=click.Choice(DEDUPS), default=None,
              help=f"What makes a candidate a duplicate that is not trained: its structure, "
                   f"or also what it computes (a cell that equals a taken one at generic "
                   f"weights, or ignores its input) (default {_default('dedup')}).")
@click.option("--hidden", type=click.IntRange(min=1), default=None,
              help="Hidden width of the proxy model.")
@click.option("--budget-tokens", type=click.IntRange(min=1), default=None,
              help="Training tokens per candidate.")
@click.option("--executor", type=click.Choice(EXECUTORS), default=None,
              help=f"Where candidates train (default {_default('executor')}).")
@click.option("--workers", type=click.IntRange(min=1), default=None,
              help="Parallel trainings for process/ray executors.")
@click.option("--address", default=None,
              help="Ray cluster to join (host:port, or auto for one started on this machine; "
                   "default $RAY_ADDRESS, else a local Ray instance).")
@click.option("--gpus-per-trial", type=click.FloatRange(min=0), default=None,
              help="GPUs per Ray trial, fractions share a GPU (default 1 when the cluster "
                   "has GPUs, else 0).")
@click.option("--cpus-per-trial", type=click.FloatRange(min=0, min_open=True), default=None,
              help="CPUs per Ray trial (default 1).")
@click.option("--seed", type=int, default=None, help=f"Search seed (default {_default('seed')}).")
@click.option("--ranker/--no-ranker", default=None, help="Pre-filter offspring with the ranker.")
@click.option("--ranker-prior", default=None, metavar="default|none|PATH",
              help="The ranker's pre-trained prior: `default` (the NAS-Bench-NLP prior shipped "
                   "in the package), `none` (start cold) or a file (default: `default` for "
                   "tasks the prior has a head for, ptb and wikitext-2; else `none`).")
@click.option("--controller/--no-controller", default=None,
              help="Add candidates from the RL controller.")
@click.option("--controller-share", type=click.FloatRange(0, 1), default=None,
              help=f"Share of each round's candidates from the controller (default "
                   f"{_default('controller_share')}).")
@click.option("--ladder", "ladder_preset", default=None, metavar="PRESET",
              help="Judge candidates on the fidelity ladder of this training preset (e.g. "
                   "zaremba-small): rate probe at rung 0, successive halving up the rungs.")
@click.option("--eta", type=int, default=None,
              help="Ladder reduction factor: budgets grow and promotions thin by it (default 3).")
@click.option("--rungs", type=int, default=None, help="Number of ladder rungs.")
@click.option("--rung0-tokens", type=int, default=None,
              help="Ladder rung 0's budget; the rung count follows (instead of --rungs).")
@click.option("--top-tokens", type=int, default=None,
              help="Ladder top rung's budget (default and at most: the preset's full run).")
@click.option("--ladder-schedule", type=click.Choice(SCHEDULES), default=None,
              help="A rung's learning-rate schedule: the full run's (prefix: a rung is its "
                   "first tokens; default), or the preset's compressed into the rung's budget.")
@click.option("--config", "config_file", type=click.Path(dir_okay=False, exists=True),
              default=None, help="TOML file of defaults (options given here override it).")
@click.option("--resume", is_flag=True,
              help="Continue the search in RUN_DIR (an error if it has none).")
@click.option("--restore", "restore_log", type=click.Path(dir_okay=False, exists=True),
              default=None, metavar="LOG",
              help="Rebuild a lost ladder search: start it anew and take each result that "
                   "LOG (its evaluations.jsonl) holds instead of training it.")
@click.option("--json", "as_json", is_flag=True,
              help="Print one JSON summary on stdout (progress goes to stderr).")
def evolve(run_dir_arg: str | None, run_dir: str | None, config_file: str | None,
           resume: bool, restore_log: str | None, as_json: bool, **options: Any) -> None:
    """Search for recurrent cells: train candidates, store them in the zoo, evolve.

    Running the same command again on a run directory continues it to the same
    total; so does `cellzoo evolve --resume RUN_DIR`.
    """
    from cellzoo.evolve.display import Reporter
    from cellzoo.evolve.executors import make_executor
    from cellzoo.evolve.search import Search, SearchError
    from cellzoo.zoo import ZooError

    run_dir = run_dir or run_dir_arg
    if run_dir is None:
        raise click.UsageError("missing --run-dir DIR (or RUN_DIR)")
    ray_options = {k: options.pop(k) for k in ("address", "gpus_per_trial", "cpus_per_trial")}
    options["ladder"] = _ladder_options(options)
    config = _resolve(Path(run_dir), config_file, resume, options)
    if restore_log is not None:
        _keep_restore_log(Path(run_dir), restore_log, config)
    try:
        plugins = {"ranker": make_ranker(config) if config.ranker else None,
                   "proposer": make_proposer(config) if config.controller else None,
                   "executor": make_executor(config.executor, config.workers, **ray_options)}
        search = Search.open(config, run_dir, **plugins)
        if search.resumed:
            click.echo(f"resuming the search in {run_dir}: {search.new_trained} of "
                       f"{config.evaluations} candidates trained{_to_go(search)}", err=True)
        elif search.restored is not None:
            click.echo(f"rebuilding the search in {run_dir}: {len(search.restored)} results "
                       f"to take from {restore_log} instead of training", err=True)
        with Reporter(config.evaluations, search.new_trained,
                      live=None if not as_json else False) as reporter:
            search.on_event = reporter
            search.run()
    except KeyboardInterrupt:
        raise UserError(f"interrupted; continue with `cellzoo evolve --resume {run_dir}`") \
            from None
    except (SearchError, ZooError, OSError, ValueError) as err:
        raise UserError(str(err)) from None
    _report(search, as_json)


def _keep_restore_log(run_dir: Path, log: str, config: SearchConfig) -> None:
    """Check that ``--restore LOG`` can start this search, then keep LOG in the run directory
    (a resume goes on restoring from it)."""
    from cellzoo.evolve.restore import Restored
    from cellzoo.evolve.rundir import RunDir

    files = RunDir(run_dir)
    if files.resumable_config() is not None:
        raise click.UsageError(f"--restore starts a new search, and {run_dir} holds one: "
                               f"continue it with `cellzoo evolve --resume {run_dir}` (it "
                               f"goes on restoring from the log it started with)")
    if config.ladder is None:
        raise click.UsageError("--restore rebuilds a ladder search (--ladder PRESET or a "
                               "config file's [ladder] table); this search has no ladder")
    Restored.read(log)  # an unusable log fails before anything is written
    files.keep_restore_log(log)


def _ladder_options(options: dict[str, Any]) -> dict[str, Any] | None:
    """The ladder options given (popped from ``options``) as a ladder table, or None."""
    table = {"preset": options.pop("ladder_preset")}
    table.update({k: options.pop(k) for k in ("eta", "rungs", "rung0_tokens", "top_tokens")})
    table["schedule"] = options.pop("ladder_schedule")
    return {k: v for k, v in table.items() if v is not None} or None


def make_ranker(config: SearchConfig) -> PreFilter:
    """A fresh `cellzoo.ranker.Ranker` for the search's task, the search's pre-filter, starting
    from the prior `ranker_prior` names (imported only when asked for). A missing or damaged
    prior file raises `PriorError` (a ValueError naming the file and ``--ranker-prior none``)
    before anything is written."""
    from cellzoo.evolve.search import SearchError

    try:
        from cellzoo.ranker.prior import from_prior, prior_path
    except ImportError as err:
        raise SearchError(f"--ranker needs cellzoo.ranker.Ranker, which cannot be imported "
                          f"here ({err}); run without --ranker") from None
    return from_prior(prior_path(ranker_prior(config)), task=config.task)


def ranker_prior(config: SearchConfig) -> str:
    """The search's ``ranker_prior``; unset: ``default`` for a task the shipped prior has a
    head for (ptb, wikitext-2), else ``none``."""
    if config.ranker_prior is not None:
        return config.ranker_prior
    from cellzoo.ranker.prior import TASK_HEADS

    return "default" if config.task in TASK_HEADS else "none"


def make_proposer(config: SearchConfig) -> Proposer:
    """A fresh `cellzoo.evolve.controller.Controller`, the search's proposer, for the search's
    operators and limits."""
    from cellzoo.evolve.search import SearchError

    try:
        from cellzoo.evolve.controller import Controller
    except ImportError as err:
        raise SearchError(f"--controller needs cellzoo.evolve.controller.Controller, which "
                          f"cannot be imported here ({err}); run without --controller") from None
    return Controller(level=config.ops, limits=config.limits, seed=config.seed)


def _resolve(run_dir: Path, config_file: str | None, resume: bool,
             options: dict[str, Any]) -> SearchConfig:
    """New search: defaults < file < options. Existing run: the stored configuration."""
    from cellzoo.evolve import config as cfg
    from cellzoo.evolve.rundir import RunDir

    for name in _paths(options):
        options[name] = os.path.abspath(options[name])
    try:
        file_settings = cfg.load_toml(config_file) if config_file else {}
        for name in _paths(file_settings):  # paths in a config file are relative to it
            file_settings[name] = str(Path(config_file).parent.resolve() /
                                      file_settings[name])
        stored = RunDir(run_dir).resumable_config()
        if stored is not None:
            return cfg.for_resume(stored, file_settings, options)
        if resume:
            raise click.UsageError(f"--resume: {run_dir} holds no search checkpoint "
                                   f"(checkpoint.json) to continue")
        config = cfg.resolve(file_settings, options)
        if config.ranker:  # stored resolved, so that a resume uses the same prior
            config = config.changed(ranker_prior=ranker_prior(config))
    except ConfigError as err:
        raise click.UsageError(str(err)) from None
    except ValueError as err:  # an unreadable checkpoint
        raise UserError(str(err)) from None
    if config.zoo is None:
        raise click.UsageError("missing --zoo PATH (the HDF5 zoo that receives the cells)")
    return config


def _paths(settings: dict[str, Any]) -> list[str]:
    """The settings that hold a file or folder path (a ranker prior that names a file)."""
    from cellzoo.ranker.prior import PRIOR_WORDS

    names = [n for n in ("zoo", "data_dir") if settings.get(n) is not None]
    if settings.get("ranker_prior") not in (None, *PRIOR_WORDS):
        names.append("ranker_prior")
    return names


def _report(search: Any, as_json: bool) -> None:
    from rich.console import Console

    from cellzoo.evolve.display import best_table

    top = search.top(10)
    if as_json:
        c = search.counters
        best = top[0] if top else None
        click.echo(json.dumps({
            "run_dir": str(search.run_dir), "zoo": search.config.zoo,
            "search_id": search.search_id, "config_key": search.key,
            "evaluations": search.new_trained, "promotions": c.promoted, "reused": c.reused,
            "restored": sum(bool(r.get("restored")) for r in search.files.evaluations()),
            "rounds": c.rounds,
            "population": [m.to_dict() for m in search.strategy.members],
            "best": best, "top": top, "seconds": round(search.elapsed_total, 3)},
            allow_nan=False))
        return
    console = Console(file=sys.stdout, width=None if sys.stdout.isatty() else 200)
    console.print(best_table(top, f"best cells of {search.run_dir} "
                                  f"({search.new_trained} trained, "
                                  f"{search.counters.reused} reused)"))


def _to_go(search) -> str:
    """'; about H training hours to go ...' for a ladder search (`ladder_forecast`), else ''."""
    from cellzoo.evolve.forecast import hours_left, ladder_forecast
    from cellzoo.evolve.progress import progress_frame

    if search.climb is None or not search.files.is_search:
        return ""
    forecast = ladder_forecast(progress_frame([search.files.path]), search.config.evaluations,
                               search.climb.ladder.eta, search.climb.asha.rungs)
    left = hours_left(forecast)
    if not math.isfinite(left):
        return "; no forecast of the hours to go before the first promotion"
    rungs = ", ".join(f"{h:.1f}" for h in forecast["hours_left"])
    return (f"; about {left:.1f} training hours to go at its pace so far (rungs 0-"
            f"{len(forecast) - 1}: {rungs})")


@click.command("progress")
@click.argument("run_dirs", nargs=-1, required=True, metavar="RUN_DIR|LOG...",
                type=click.Path(exists=True))
@click.option("--out", type=click.Path(dir_okay=False), required=True, help="PNG file to write.")
@click.option("--title", default=None, help="Plot title.")
@click.option("--csv", "csv_out", type=click.Path(dir_okay=False), default=None,
              help="Also write the plotted data as CSV.")
@click.option("--json", "as_json", is_flag=True,
              help="Print a JSON summary per run (cells, trainings, hours, best per rung).")
def plot_progress(run_dirs: tuple[str, ...], out: str, title: str | None,
                  csv_out: str | None, as_json: bool) -> None:
    """Validation perplexity of every trained candidate and the best so far, per search
    (mean and band over several runs of one kind). A search is its RUN_DIR, or its
    evaluations LOG alone (a log kept after its run directory was lost)."""
    from cellzoo.evolve.progress import draw_progress, progress_summary

    frame = _frame(run_dirs)
    if csv_out:
        frame.to_csv(csv_out, index=False)
    path = draw_progress(frame, out, title)
    if as_json:
        click.echo(json.dumps({"out": str(path), "runs": progress_summary(frame)},
                              allow_nan=False))
        return
    runs = frame["run"].nunique()
    click.echo(f"wrote {path} ({len(frame)} trainings from {runs} run{'s' * (runs != 1)}"
               + "".join(_best_per_rung(frame)) + ")")


@click.command("finalists")
@click.argument("run_dirs", nargs=-1, required=True, metavar="RUN_DIR|LOG...",
                type=click.Path(exists=True))
@click.option("--out", type=click.Path(dir_okay=False), required=True, help="PNG file to write.")
@click.option("--json", "as_json", is_flag=True,
              help="Print each run's finalists and per-rung Kendall tau as JSON.")
def plot_finalists(run_dirs: tuple[str, ...], out: str, as_json: bool) -> None:
    """The cells each ladder search trained at its highest rung, ranked among themselves at
    every rung on the way (a bump chart: where lines cross, a rung ranked them otherwise
    than the top did). A search is its RUN_DIR or its evaluations LOG."""
    from cellzoo.evolve.finalists import draw_finalists, rung_taus, tau_text
    from cellzoo.evolve.progress import progress_summary

    runs = progress_summary(_frame(run_dirs))
    try:
        path = draw_finalists(runs, out)
    except ValueError as err:
        raise UserError(str(err)) from None
    summary = [{"run": run["run"], "finalists": run["finalists"], "tau": rung_taus(run)}
               for run in runs]
    if as_json:
        click.echo(json.dumps({"out": str(path), "runs": summary}, allow_nan=False))
        return
    for run in summary:
        click.echo(f"{run['run']}: {len(run['finalists'])} finalists; Kendall tau of each "
                   f"rung against the top rung's test perplexity: {tau_text(run['tau'])}")
    click.echo(f"wrote {path}")


def _frame(run_dirs: tuple[str, ...]):
    """`progress_frame` of the searches, or a user error saying why there is none."""
    from cellzoo.evolve.progress import ProgressDataError, progress_frame

    try:
        frame = progress_frame(run_dirs)
    except ProgressDataError as err:
        raise UserError(str(err)) from None
    if frame.empty:
        raise UserError("the run directories hold no trained candidate yet")
    return frame


def _best_per_rung(frame) -> list[str]:
    """', best val ppl X' (a proxy search), or one such part per ladder rung: perplexities of
    different rungs are never one best."""
    best = frame.groupby("rung")["best_so_far"].min()
    several = len(best) > 1
    return [f", best val ppl{f' at rung {rung}' if several else ''} {value:.2f}"
            for rung, value in best.items() if math.isfinite(value)]
