"""Functional dedup in breeding (``dedup = "function"``): a candidate that ignores its input,
or computes what a cell handed out before computes, is refused like a structural duplicate;
``dedup = "structure"`` refuses structural duplicates only; the memory survives a checkpoint."""

from __future__ import annotations

import pytest
from test_dsl_function import CONTROLLER, DEAD_CODE_CHILD, IGNORE_INPUT

from cellzoo.dsl import parse
from cellzoo.dsl.library import LIBRARY
from cellzoo.evolve.breeding import Breeder, Round
from cellzoo.evolve.candidates import Candidate
from cellzoo.evolve.config import ConfigError, SearchConfig
from cellzoo.evolve.population import make_strategy
from cellzoo.evolve.variation import Variation


def breeder(dedup: str) -> Breeder:
    config = SearchConfig(dedup=dedup, ops="extended")
    return Breeder(config, Variation("extended", config.limits), make_strategy("random", 4, 2))


def candidates(*cells: str) -> list[Candidate]:
    return [Candidate(parse(cell), "random") for cell in cells]


POOL = (CONTROLLER, IGNORE_INPUT[0], LIBRARY["LSTM"].expr, DEAD_CODE_CHILD, CONTROLLER)


def test_function_dedup_refuses_inert_cells_and_dead_code_variants():
    made = breeder("function")._unique(candidates(*POOL), None, 5, set())
    assert [c.expr for c in made] == [c.expr for c in candidates(CONTROLLER, POOL[2])]


def test_structure_dedup_refuses_only_structural_duplicates():
    made = breeder("structure")._unique(candidates(*POOL), None, 5, set())
    assert [c.expr for c in made] == [c.expr for c in candidates(*POOL[:4])]


def test_what_was_handed_out_stays_refused_after_a_checkpoint():
    first = breeder("function")
    first._handed_out(Round(candidates(CONTROLLER), []))
    second = breeder("function")
    second.load(first.state(), first.tensors())
    assert second._unique(candidates(DEAD_CODE_CHILD), None, 1, set()) == []
    assert breeder("function")._unique(candidates(DEAD_CODE_CHILD), None, 1, set())


def test_an_unknown_dedup_is_refused():
    with pytest.raises(ConfigError, match="unknown dedup 'shape'; choose one of structure, "
                                          "function"):
        SearchConfig(dedup="shape")
