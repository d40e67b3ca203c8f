"""The `cellzoo` command line: one click group; each subcommand lives in its own `cli` module.

Subcommands are imported lazily (click's documented lazy-group pattern) so that
`cellzoo dsl check` does not pay for importing Ray, seaborn or h5py.
"""

from __future__ import annotations

import errno
import importlib

import click

from cellzoo.common.errors import UserError

# the machine's state, not a bug: a full disk, a read-only mount, missing permission
ENVIRONMENT_ERRNOS = {errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES, errno.EPERM}


class Failure(click.ClickException):
    """How a `UserError` or an unusable path reaches the user: 'Error: ...', exit code 2."""

    exit_code = UserError.exit_code


# command name -> ("module:attribute" of a click command or group, the line `--help` shows).
# The line is kept here so that `cellzoo --help` lists the commands without importing them.
COMMANDS: dict[str, tuple[str, str]] = {
    "dsl": ("cellzoo.cli.dsl:dsl", "The cell language: check expressions, list the library."),
    "data": ("cellzoo.cli.train:data", "Find and fetch the corpora of the training tasks."),
    "train": ("cellzoo.cli.train:train", "Train a cell as a language model and report "
              "perplexities."),
    "zoo": ("cellzoo.cli.zoo:zoo", "Inspect, export, merge and repair zoos of trained cells."),
    "evolve": ("cellzoo.cli.evolve:evolve", "Search for recurrent cells (optionally on the "
               "fidelity ladder)."),
    "controller": ("cellzoo.cli.controller:controller", "The RL controller: a grammar-masked "
                   "policy that writes valid cells."),
    "rank": ("cellzoo.cli.rank:rank", "Fit, apply and judge the TreeRNN ranker."),
    "compare": ("cellzoo.cli.analysis:compare", "Compare zoo cells' hidden states on the same "
                "text (CKA, SVCCA, plots)."),
    "ensemble": ("cellzoo.cli.analysis:ensemble", "Build an ensemble of zoo runs and report its "
                 "test perplexity."),
    "report": ("cellzoo.cli.report:report", "Write a static HTML page about a zoo and its "
               "searches."),
}

# `cellzoo plot KIND`: each plot's command lives beside the data it draws
PLOTS: dict[str, tuple[str, str]] = {
    "finalists": ("cellzoo.cli.evolve:plot_finalists", "A ladder search's finalists, ranked "
                  "among themselves at every rung."),
    "progress": ("cellzoo.cli.evolve:plot_progress", "Validation perplexity of every trained "
                 "candidate and the best so far."),
    "ranker": ("cellzoo.cli.rank:plot_ranker", "Ranker predicted vs true during a search, and "
               "its Kendall tau per round."),
}


class LazyGroup(click.Group):
    """A click group that imports a subcommand's module only when it is used."""

    def __init__(self, *args, lazy: dict[str, tuple[str, str]], **kwargs):
        super().__init__(*args, **kwargs)
        self.lazy = lazy

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(set(super().list_commands(ctx)) | set(self.lazy))

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name in self.commands:
            return self.commands[cmd_name]
        if cmd_name not in self.lazy:
            return None
        module_name, attr = self.lazy[cmd_name][0].split(":")
        return getattr(importlib.import_module(module_name), attr)

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        """List the subcommands with the lines of the lazy table (importing none of them)."""
        rows = [(name, self.lazy[name][1] if name in self.lazy
                 else self.commands[name].get_short_help_str(formatter.width))
                for name in self.list_commands(ctx)]
        if rows:
            with formatter.section("Commands"):
                formatter.write_dl(rows)

    def invoke(self, ctx: click.Context):
        """Run the subcommand; a user error (or a file the OS refuses) exits 2 without a
        traceback. Every other exception is an internal error (exit code 1)."""
        try:
            return super().invoke(ctx)
        except UserError as err:
            raise Failure(str(err)) from None
        except OSError as err:
            if err.filename is None and err.errno not in ENVIRONMENT_ERRNOS:
                raise
            where = f"{err.filename}: " if err.filename is not None else ""
            raise Failure(f"{where}{err.strerror or err}") from None


@click.group(cls=LazyGroup, lazy=COMMANDS)
@click.version_option(package_name="cellzoo")
def main() -> None:
    """cellzoo: evolve recurrent cells, keep every trained cell in an HDF5 zoo, analyse them."""


@main.group(cls=LazyGroup, lazy=PLOTS)
def plot() -> None:
    """Draw plots (PNG) from runs and zoos."""
