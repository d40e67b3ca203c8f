"""`cellzoo rank ...` (fit, score, eval-nbnlp, build-prior) and `cellzoo plot ranker RUN_DIR`."""

from __future__ import annotations

import json
import math
from pathlib import Path

import click

from cellzoo.cli.types import IntList
from cellzoo.common.errors import UserError
from cellzoo.common.io import json_safe

#: NAS-Bench-NLP logs 50 epochs of validation loss
NBNLP_EPOCHS = IntList(1, 50)


@click.group()
def rank() -> None:
    """Fit, apply and judge the TreeRNN ranker."""


@rank.command("fit")
@click.argument("zoo", type=click.Path(dir_okay=False))
@click.option("--out", required=True, type=click.Path(dir_okay=False), help="Where to save it.")
@click.option("--task", default=None, help="Only runs of this task (default: all).")
@click.option("--loss", type=click.Choice(["pairwise", "mse"]), default="pairwise",
              show_default=True)
@click.option("--epochs", type=click.IntRange(1), default=None, help="At most this many epochs.")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--prior", default="none", show_default=True, metavar="PATH|default|none",
              help="Fine-tune from a prior: a file, `default` (the NAS-Bench-NLP prior shipped "
                   "in the package) or `none` (start cold; --loss and --seed apply).")
@click.option("--json", "as_json", is_flag=True, help="Print a JSON summary.")
def fit_command(zoo: str, out: str, task: str | None, loss: str, epochs: int | None, seed: int,
                prior: str, as_json: bool) -> None:
    """Train a ranker on the runs of ZOO and save it to --out."""
    from cellzoo.ranker.fit import Ranker, RankerConfig
    from cellzoo.ranker.prior import from_prior, prior_path

    if not Path(zoo).is_file():
        raise UserError(f"zoo file {zoo} does not exist")
    runs = _zoo_runs(zoo, task)
    try:
        if prior == "none":
            ranker = Ranker(RankerConfig(loss=loss, seed=seed))
        else:
            ranker = from_prior(prior_path(prior), task=task or runs[0].task)
        ranker.fit(runs, epochs=epochs)
    except ValueError as e:  # PriorError included: it names the file
        raise UserError(f"cannot fit on {zoo}: {e}") from e
    ranker.save(out)
    last = ranker.history[-1] if ranker.history else {}
    summary = {"out": out, "runs": len(runs), "tasks": sorted(ranker.task_stats),
               "epochs": len(ranker.history), "val_score": last.get("val_score")}
    click.echo(json.dumps(summary) if as_json else
               f"fitted on {len(runs)} runs ({', '.join(summary['tasks'])}) in "
               f"{summary['epochs']} epochs; saved {out}")


def _zoo_runs(path: str, task: str | None) -> list:
    from cellzoo.zoo import Zoo

    try:
        with Zoo.open(path) as z:
            runs = list(z.runs(task=task))
    except OSError as e:
        raise UserError(f"cannot read zoo {path}: {e}") from e
    if not runs:
        raise UserError(f"no runs{f' for task {task!r}' if task else ''} in {path}")
    return runs


@rank.command("score")
@click.argument("ranker_path", metavar="RANKER.pt", type=click.Path(dir_okay=False))
@click.argument("exprs", nargs=-1, required=True, metavar="EXPR...")
@click.option("--task", default=None, help="Task whose perplexity scale to use.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON lines.")
def score_command(ranker_path: str, exprs: tuple[str, ...], task: str | None,
                  as_json: bool) -> None:
    """Predicted perplexity, divergence probability and score (higher = more promising).

    EXPR is DSL text or a library cell name (e.g. lstm)."""
    from cellzoo.dsl import DSLError, canonical_text, cell_hash
    from cellzoo.dsl.library import resolve_cell
    from cellzoo.ranker.graph import pack

    ranker = _load(ranker_path)
    cells = []
    for text in exprs:
        try:
            cells.append(resolve_cell(text))
        except DSLError as e:
            raise UserError(f"cannot parse {text!r}: {e}") from e
    packed = pack(cells)
    try:
        log_ppl, p_div = ranker.predict(packed, task=task)
    except ValueError as e:
        raise UserError(str(e)) from e
    scores = ranker.score(packed)
    for cell, lp, p, s in zip(cells, log_ppl, p_div, scores, strict=True):
        row = {"expr": canonical_text(cell), "hash": cell_hash(cell),
               "predicted_ppl": math.exp(lp), "predicted_log_ppl": float(lp),
               "p_diverge": float(p), "score": float(s)}
        click.echo(json.dumps(row) if as_json else
                   f"ppl {math.exp(lp):10.2f}  p_div {p:5.3f}  score {s:7.3f}  {row['expr']}")


def _load(path: str):
    from cellzoo.ranker.fit import Ranker

    if not Path(path).is_file():
        raise UserError(f"ranker file {path} does not exist")
    try:
        return Ranker.load(path)
    except Exception as e:  # a foreign or damaged file: say so instead of a traceback
        raise UserError(f"{path} is not a cellzoo ranker: {e}") from e


@rank.command("eval-nbnlp")
@click.option("--train-size", type=click.IntRange(2), default=1000, show_default=True)
@click.option("--test-size", type=click.IntRange(2), default=2000, show_default=True)
@click.option("--seeds", type=click.IntRange(1), default=1, show_default=True)
@click.option("--data", type=click.Path(), default=None,
              help="Folder holding ptb_single_run.jsonl (default $CELLZOO_DATA/nas-bench-nlp).")
@click.option("--loss", type=click.Choice(["pairwise", "mse"]), default="pairwise",
              show_default=True)
@click.option("--epochs", type=click.IntRange(1), default=None, help="At most this many epochs.")
@click.option("--members", type=click.IntRange(1), default=None,
              help="Networks in the ranker's ensemble, averaged (default: the ranker's).")
@click.option("--curve-epochs", type=NBNLP_EPOCHS, default="", metavar="E,E,...",
              help="Also train on the training runs' validation loss after these epochs "
                   "(learning-curve targets), e.g. 1,5,20.")
@click.option("--no-baseline", is_flag=True, help="Skip the random-forest baselines.")
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
def eval_nbnlp_command(train_size: int, test_size: int, seeds: int, data: str | None, loss: str,
                       epochs: int | None, members: int | None,
                       curve_epochs: tuple[int, ...],
                       no_baseline: bool, as_json: bool) -> None:
    """Train on N NAS-Bench-NLP cells, test on others; ranker and forests side by side.

    Also: tau without held-out twins of training cells, on the better half, and on
    the WikiText-2 runs (when wikitext2_single_run.jsonl sits beside the PTB file)."""
    from cellzoo.ranker.evaluate import eval_nbnlp
    from cellzoo.ranker.fit import RankerConfig

    runs, wt2 = _nbnlp_runs(data)
    given = {"epochs": epochs, "members": members}
    config = RankerConfig(loss=loss, **{k: v for k, v in given.items() if v is not None})
    try:
        result = eval_nbnlp(runs, train_size, test_size, seeds, config, baseline=not no_baseline,
                            progress=lambda line: click.echo(line, err=True), wt2_runs=wt2,
                            curve_epochs=curve_epochs)
    except ValueError as e:
        raise UserError(str(e)) from e
    if as_json:
        click.echo(json.dumps(json_safe(result), allow_nan=False))
        return
    click.echo(f"train {train_size}, test {test_size}, mean over {seeds} seed(s):")
    keys = list(result["mean"]["ranker"])
    click.echo(f"{'model':13}" + "".join(f"{k:>17}" for k in keys))
    for model, m in result["mean"].items():
        click.echo(f"{model:13}" + "".join(f"{m[k]:17.3f}" for k in keys))


def _nbnlp_runs(data: str | None) -> tuple[list, list | None]:
    """PTB runs (required) and WikiText-2 runs (None when that file is absent)."""
    from cellzoo.ranker.nbnlp import load_runs

    try:
        runs = load_runs(data)
    except FileNotFoundError as e:
        raise UserError(str(e)) from e
    try:
        return runs, load_runs(data, dataset="wikitext-2")
    except FileNotFoundError:
        return runs, None


@rank.command("build-prior")
@click.option("--data", type=click.Path(), default=None,
              help="Folder holding the NAS-Bench-NLP files (default $CELLZOO_DATA/nas-bench-nlp).")
@click.option("--out", type=click.Path(dir_okay=False), default=None,
              help="Where to write it (default: the prior shipped in the package).")
@click.option("--limit", type=click.IntRange(2), default=None,
              help="Only the first N PTB runs (for a quick check).")
@click.option("--epochs", type=click.IntRange(1), default=None,
              help="At most this many epochs (default: the shipped prior's).")
@click.option("--members", type=click.IntRange(1), default=None,
              help="Networks in the ensemble (default: the shipped prior's).")
@click.option("--curve-epochs", type=NBNLP_EPOCHS, default="", metavar="E,E,...",
              help="Also train on the runs' validation loss after these epochs.")
def build_prior_command(data: str | None, out: str | None, limit: int | None,
                        epochs: int | None, members: int | None,
                        curve_epochs: tuple[int, ...]) -> None:
    """Pre-train the ranker on NAS-Bench-NLP's PTB and WikiText-2 runs; save it as a prior."""
    from dataclasses import replace

    from cellzoo.ranker.evaluate import curve_examples, nbnlp_examples
    from cellzoo.ranker.fit import join
    from cellzoo.ranker.prior import DEFAULT_PRIOR, PRIOR_CONFIG, build_prior

    runs, wt2 = _nbnlp_runs(data)
    datasets = [("ptb", runs[:limit])] + ([("wikitext-2", wt2)] if wt2 else [])
    parts = [part for name, found in datasets
             for part in (nbnlp_examples(found, name)[0],
                          *([curve_examples(found, curve_epochs, name)] if curve_epochs else []))]
    config = PRIOR_CONFIG if members is None else replace(PRIOR_CONFIG, members=members)
    data = join(parts)
    total = epochs or config.epochs
    click.echo(f"fitting the prior on {len(data.targets):,} examples ({config.members} "
               f"member(s), at most {total} epochs)", err=True)
    ranker = build_prior(data, config, epochs=epochs, progress=lambda h: click.echo(
        f"epoch {h['epoch'] + 1}/{total}: train loss {h['train_loss']:.4f}, held-out tau "
        f"{h['val_score']:.3f}", err=True))
    out = out or str(DEFAULT_PRIOR)
    ranker.save(out, with_prior=False)
    best = max(h["val_score"] for h in ranker.history)
    click.echo(f"prior fitted on {len(runs[:limit])} PTB and {len(wt2 or [])} WikiText-2 runs in "
               f"{len(ranker.history)} epochs (held-out tau {best:.3f}); saved {out}")


@click.command("ranker")
@click.argument("run_dir", type=click.Path(file_okay=False))
@click.option("--out", type=click.Path(dir_okay=False), default=None,
              help="PNG to write (default RUN_DIR/ranker.png).")
def plot_ranker(run_dir: str, out: str | None) -> None:
    """Ranker predicted vs true during a search, and its Kendall tau per round."""
    from cellzoo.ranker.plot import draw, load_log, round_correlations

    try:
        log = load_log(run_dir)
    except (FileNotFoundError, ValueError) as e:
        raise UserError(str(e)) from e
    if log.empty:
        raise UserError(f"the ranker log in {run_dir} is empty")
    out = out or str(Path(run_dir) / "ranker.png")
    per_round = round_correlations(log)
    draw(log, per_round, out)
    click.echo(f"wrote {out} ({len(log)} candidates, {len(per_round)} rounds)")
