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
from cellzoo.train import TrainConfig

STRATEGIES = ("aging", "mu+lambda", "random")
EXECUTORS = ("inline", "process", "ray")
OP_LEVELS = ("core", "extended")
#: fields that may differ between a run and its resumption
RESUMABLE = ("evaluations", "executor", "workers", "data_dir")
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
    ``ranker_prior``: the ranker's prior, ``default`` (the one shipped), ``none`` or a
    file; None lets the command layer choose by task (docs/ranker.md).
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

    def __post_init__(self) -> None:
        _choose("strategy", self.strategy, STRATEGIES)
        _choose("executor", self.executor, EXECUTORS)
        _choose("ops", self.ops, OP_LEVELS)
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
        self.train_config()  # validates the training overrides

    @property
    def limits(self) -> Limits:
        return Limits(max_depth=self.max_depth, max_nodes=self.max_nodes)

    @property
    def kind(self) -> str:
        """The kind of search, as plots and reports name it: strategy plus its plug-ins."""
        return "+".join([self.strategy] + [name for name in ("ranker", "controller")
                                           if getattr(self, name)])

    def train_config(self) -> TrainConfig:
        """The task's proxy configuration with ``train``, ``hidden`` and ``budget_tokens``."""
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
    if not isinstance(settings.get("train", {}), dict):
        raise ConfigError(f"{path}: 'train' must be a table of TrainConfig fields")
    return settings


def resolve(file_settings: dict[str, Any], options: dict[str, Any]) -> SearchConfig:
    """Defaults, overridden by the file's settings, overridden by options that are not None."""
    settings = dict(file_settings)
    settings.update({k: v for k, v in options.items() if v is not None})
    try:
        return SearchConfig.from_dict(settings)
    except TypeError as err:
        raise ConfigError(f"bad search settings: {err}") from None


def for_resume(stored: SearchConfig, file_settings: dict[str, Any],
               options: dict[str, Any]) -> SearchConfig:
    """The stored configuration with the allowed changes; other differences are errors."""
    given = dict(file_settings)
    given.update({k: v for k, v in options.items() if v is not None})
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
