"""The search configuration: defaults, a TOML file, command-line options, in that order.

The resolved configuration is saved in the run directory; `--resume` reloads it
and accepts only changes that do not alter what the search computes
(`RESUMABLE`: the budget, the executor and where the data lives).
"""

from __future__ import annotations

import dataclasses
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cellzoo.common.errors import UserError
from cellzoo.dsl import DEFAULT_LIMITS, Limits
from cellzoo.evolve.ladder import Ladder
from cellzoo.evolve.probe import SCALES
from cellzoo.train import TrainConfig

STRATEGIES = ("aging", "mu+lambda", "random")
#: what makes a candidate a duplicate: its structural hash, or also what it computes
DEDUPS = ("structure", "function")
#: the settings that only matter with a breeding strategy, a ranker, a controller
INERT_WITHOUT = {"strategy": ("sample", "crossover_prob"),
                 "ranker": ("offspring_factor", "random_share", "ranker_prior"),
                 "controller": ("controller_share",)}
EXECUTORS = ("inline", "process", "ray")
OP_LEVELS = ("core", "extended")
#: fields that may differ between a run and its resumption
RESUMABLE = ("evaluations", "executor", "workers", "data_dir")
#: a ``[ladder]`` table's keys and defaults (`Ladder`'s fields, and the probe's rate scales)
LADDER_DEFAULTS: dict[str, Any] = {"preset": None, "eta": 3, "rungs": None,
                                   "rung0_tokens": None, "top_tokens": None,
                                   "reference": "LSTM", "schedule": "prefix",
                                   "probe": list(SCALES)}
#: settings the ladder's preset fixes: refused under a ladder
LADDER_FIXES = ("hidden", "budget_tokens", "train")
#: the smallest round: each round trains at least this many candidates (or `workers`)
MIN_ROUND = 4


class ConfigError(UserError, ValueError):
    """A bad option or config file; the message names the field and the valid choices."""


@dataclass
class SearchConfig:
    """Everything that defines a search (see docs/evolve.md for each field).

    ``evaluations`` counts trainings: results reused from the zoo do not count.
    ``train`` overrides fields of the task's proxy `TrainConfig` (its ``seed``
    is the training seed of every candidate, separate from the search ``seed``).
    ``ladder`` (a ``[ladder]`` table, `LADDER_DEFAULTS`) judges candidates on a fidelity
    ladder instead of the proxy: ``evaluations`` then counts new candidates (rung-0 cells),
    and the preset is the recipe (`LADDER_FIXES` are refused).
    ``ranker_prior``: the ranker's prior, ``default`` (the one shipped), ``none`` or a
    file; None lets the command layer choose by task (docs/ranker.md).
    ``dedup``: ``function`` also refuses a candidate that computes what a cell this search
    already took computes, or ignores its input (`cellzoo.dsl.function`); ``structure``
    refuses only a structural duplicate.
    """

    zoo: str | None = None
    task: str = "synthetic"
    data_dir: str | None = None
    evaluations: int = 100
    strategy: str = "aging"
    population: int = 20
    sample: int = 5
    round_size: int | None = None
    ops: str = "core"
    library: bool = True
    dedup: str = "function"
    crossover_prob: float = 0.25
    max_depth: int = DEFAULT_LIMITS.max_depth
    max_nodes: int = DEFAULT_LIMITS.max_nodes
    hidden: int | None = None
    budget_tokens: int | None = None
    train: dict[str, Any] = field(default_factory=dict)
    executor: str = "inline"
    workers: int = 1
    seed: int = 0
    offspring_factor: int = 4
    random_share: float = 0.25
    ranker: bool = False
    ranker_prior: str | None = None
    controller: bool = False
    controller_share: float = 0.25
    ladder: dict[str, Any] | None = None

    def __post_init__(self) -> None:
        _choose("strategy", self.strategy, STRATEGIES)
        _choose("executor", self.executor, EXECUTORS)
        _choose("ops", self.ops, OP_LEVELS)
        _choose("dedup", self.dedup, DEDUPS)
        for name in ("evaluations", "population", "sample", "workers", "offspring_factor",
                     "max_depth", "max_nodes"):
            if getattr(self, name) < 1:
                raise ConfigError(f"{name} must be at least 1, got {getattr(self, name)}")
        if self.sample > self.population:
            raise ConfigError(f"sample ({self.sample}) cannot exceed population "
                              f"({self.population})")
        for name in ("crossover_prob", "random_share", "controller_share"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ConfigError(f"{name} must be in [0, 1], got {getattr(self, name)}")
        if self.round_size is None:
            self.round_size = max(MIN_ROUND, self.workers)
        if self.round_size < 1:
            raise ConfigError(f"round_size must be at least 1, got {self.round_size}")
        if self.ladder is not None:
            self._check_ladder()
        self.train_config()  # validates the training overrides

    @property
    def limits(self) -> Limits:
        return Limits(max_depth=self.max_depth, max_nodes=self.max_nodes)

    @property
    def kind(self) -> str:
        """The kind of search, as plots and reports name it: strategy plus its plug-ins (and
        ``ladder`` for a ladder search)."""
        return "+".join([self.strategy] + [name for name in ("ranker", "controller", "ladder")
                                           if getattr(self, name)])

    @property
    def inert(self) -> frozenset[str]:
        """Settings that have no effect in this search (a random search does not breed, a
        search without a ranker does not pre-filter, ...), so that a report can say so."""
        off = {"strategy": self.strategy == "random", "ranker": not self.ranker,
               "controller": not self.controller}
        return frozenset(name for plug, names in INERT_WITHOUT.items() if off[plug]
                         for name in names)

    def _check_ladder(self) -> None:
        self.ladder = ladder_table(self.ladder)
        fixed = [name for name in LADDER_FIXES if getattr(self, name)]
        if fixed:
            raise ConfigError(f"{', '.join(fixed)} cannot be set for a ladder search: the "
                              f"ladder's preset {self.ladder['preset']!r} is the recipe (its "
                              f"rungs set the budget, each cell's width matches the reference)")
        task = self.make_ladder().base.task
        if self.task != task:
            raise ConfigError(f"task {self.task!r} differs from the ladder preset "
                              f"{self.ladder['preset']!r}'s task {task!r}")

    def make_ladder(self) -> Ladder | None:
        """The fidelity ladder of a ladder search (None for a proxy search)."""
        return None if self.ladder is None else ladder_of(self.ladder)

    def train_config(self) -> TrainConfig:
        """The task's proxy configuration with ``train``, ``hidden`` and ``budget_tokens``
        (for a ladder search: the ladder's preset)."""
        if self.ladder is not None:
            return self.make_ladder().base
        changes = dict(self.train)
        if self.hidden is not None:
            changes["hidden"] = self.hidden
        if self.budget_tokens is not None:
            changes.update(budget_tokens=self.budget_tokens, epochs=None)
        try:
            return TrainConfig.proxy(self.task, **changes)
        except (TypeError, ValueError) as err:
            raise ConfigError(f"bad training settings {changes}: {err}") from None

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> SearchConfig:
        unknown = sorted(set(data) - FIELDS)
        if unknown:
            raise ConfigError(f"unknown search settings {unknown}; valid: {sorted(FIELDS)}")
        return cls(**data)

    def changed(self, **changes: Any) -> SearchConfig:
        return dataclasses.replace(self, **changes)


FIELDS = {f.name for f in dataclasses.fields(SearchConfig)}


def _choose(name: str, value: str, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise ConfigError(f"unknown {name} {value!r}; choose one of {', '.join(choices)}")


def load_toml(path: str | Path) -> dict[str, Any]:
    """Settings from a TOML file: top-level keys are `SearchConfig` fields; a ``[train]``
    table overrides the proxy training configuration. Keys use '_' or '-'."""
    try:
        with open(path, "rb") as f:
            data = tomllib.load(f)
    except OSError as err:
        raise ConfigError(f"cannot read config file {path}: {err.strerror}") from None
    except tomllib.TOMLDecodeError as err:
        raise ConfigError(f"config file {path} is not valid TOML: {err}") from None
    settings = {key.replace("-", "_"): value for key, value in data.items()}
    unknown = sorted(set(settings) - FIELDS)
    if unknown:
        raise ConfigError(f"{path}: unknown settings {unknown}; valid: {sorted(FIELDS)}")
    for table in ("train", "ladder"):
        if not isinstance(settings.get(table, {}), dict):
            raise ConfigError(f"{path}: {table!r} must be a table (a [{table}] section)")
    if "ladder" in settings:
        settings["ladder"] = {k.replace("-", "_"): v for k, v in settings["ladder"].items()}
    return settings


def ladder_table(table: dict[str, Any]) -> dict[str, Any]:
    """A ladder table with every key (`LADDER_DEFAULTS` filled in), checked: ConfigError
    naming the key for an unknown key, a missing preset, bad probe scales or a bad ladder."""
    unknown = sorted(set(table) - set(LADDER_DEFAULTS))
    if unknown:
        raise ConfigError(f"unknown ladder settings {unknown}; valid: {sorted(LADDER_DEFAULTS)}")
    full = {**LADDER_DEFAULTS, **table}
    if full["preset"] is None:
        raise ConfigError("a ladder needs its preset (--ladder PRESET, or preset = ... in the "
                          "[ladder] table)")
    probe = full["probe"]
    if (not isinstance(probe, list) or not probe
            or not all(isinstance(x, int | float) and 0 < x <= 1 for x in probe)
            or probe != sorted(probe, reverse=True)):
        raise ConfigError(f"ladder probe must be a list of rate scales in (0, 1], largest "
                          f"first, got {probe!r}")
    full["probe"] = [float(x) for x in probe]
    try:
        ladder_of(full)
    except (TypeError, ValueError) as err:
        raise ConfigError(f"bad ladder: {err}") from None
    return full


def ladder_of(table: dict[str, Any]) -> Ladder:
    """The `Ladder` of a (complete) ladder table."""
    return Ladder(**{k: v for k, v in table.items() if k != "probe"})


def _given(file_settings: dict[str, Any], options: dict[str, Any],
           ladder: dict[str, Any] | None = None) -> dict[str, Any]:
    """The file's settings, overridden by options that are not None; the ladder tables of
    ``ladder`` (a stored one), the file and the options are merged key by key."""
    given = dict(file_settings)
    given.update({k: v for k, v in options.items() if v is not None and k != "ladder"})
    tables = [ladder, file_settings.get("ladder"), options.get("ladder")]
    if any(tables[1:]):
        given["ladder"] = {k: v for table in tables if table for k, v in table.items()}
    return given


def resolve(file_settings: dict[str, Any], options: dict[str, Any]) -> SearchConfig:
    """Defaults, overridden by the file's settings, overridden by options that are not None."""
    settings = _given(file_settings, options)
    if settings.get("ladder") and "task" not in settings:  # the ladder's preset sets the task
        settings["task"] = ladder_of(ladder_table(settings["ladder"])).base.task
    try:
        return SearchConfig.from_dict(settings)
    except TypeError as err:
        raise ConfigError(f"bad search settings: {err}") from None


def for_resume(stored: SearchConfig, file_settings: dict[str, Any],
               options: dict[str, Any]) -> SearchConfig:
    """The stored configuration with the allowed changes; other differences are errors."""
    given = _given(file_settings, options, stored.ladder)
    if "ladder" in given:
        given["ladder"] = ladder_table(given["ladder"])
    current = stored.to_dict()
    if "workers" in given and "round_size" not in given:
        given["round_size"] = current["round_size"]  # the resolved round size is kept
    conflicts = sorted(k for k, v in given.items() if k not in RESUMABLE and current.get(k) != v)
    if conflicts:
        shown = ", ".join(f"{k} (stored {current.get(k)!r}, given {given[k]!r})"
                          for k in conflicts)
        raise ConfigError(f"the run directory holds a search with other settings: {shown}; "
                          f"only {', '.join(RESUMABLE)} may change on resume")
    return stored.changed(**{k: v for k, v in given.items() if k in RESUMABLE})
