"""Help texts take defaults from the dataclasses that define them."""

from __future__ import annotations

import dataclasses

import pytest
from click.testing import CliRunner

from cellzoo.cli import main
from cellzoo.cli.defaults import default
from cellzoo.evolve.config import SearchConfig


def test_default_reads_the_dataclass_field():
    assert default(SearchConfig, "evaluations") == str(SearchConfig().evaluations)
    assert default(SearchConfig, "library") == "yes"
    with pytest.raises(ValueError, match="no plain default"):
        default(SearchConfig, "train")  # a default_factory


def test_evolve_help_names_the_dataclass_defaults():
    text = " ".join(CliRunner().invoke(main, ["evolve", "--help"]).output.split())
    defaults = {f.name: f.default for f in dataclasses.fields(SearchConfig)}
    for name in ("evaluations", "population", "sample", "ops", "executor", "seed",
                 "controller_share"):
        assert f"(default {defaults[name]}" in text, name
