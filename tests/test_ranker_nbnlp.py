"""NAS-Bench-NLP recipes -> ranker DAGs and DSL trees (real logs via CELLZOO_DATA)."""

import os
from pathlib import Path

import pytest

from cellzoo.dsl import canonical_text, is_valid, parse
from cellzoo.ranker.nbnlp import (
    REFERENCE_IDS,
    data_file,
    load_runs,
    mapping_report,
    recipe_to_dsl,
    recipe_to_graph,
)

DATA = Path(os.environ.get("CELLZOO_DATA", "/work/shared/data"))
NBNLP_HOW = ("NAS-Bench-NLP logs not found under {} (set CELLZOO_DATA to a folder with "
             "nas-bench-nlp/ptb_single_run.jsonl; docs/ranker.md says where to get them)")

# DESIGN.md's cells. Upstream's LSTM recipe puts tanh (not sigmoid) on the output gate,
# so its DSL form is the DESIGN LSTM with that one Sigmoid written Tanh.
RNN = "Tanh(Add(MM(x), MM(h)))"
GRU = "Gate3(h, Tanh(Add(MM(x), MM(Mult(Sigmoid(Add(MM(x), MM(h))), h)))), Add(MM(x), MM(h)))"
LSTM_TANH_OUT = ("Mult(Tanh(Add(MM(x), MM(h))), Tanh(Mem(Add(Mult(Sigmoid(Add(MM(x), MM(h))), c), "
                 "Mult(Sigmoid(Add(MM(x), MM(h))), Tanh(Add(MM(x), MM(h))))))))")


@pytest.fixture(scope="module")
def reference():
    if not (DATA / "nas-bench-nlp" / "ptb_single_run.jsonl").is_file():
        pytest.skip(NBNLP_HOW.format(DATA))
    runs = load_runs(DATA / "nas-bench-nlp", limit=3)
    by_id = {r.id: r for r in runs}
    return {name: by_id[i] for name, i in REFERENCE_IDS.items()}


@pytest.mark.parametrize("name, expected", [("rnn", RNN), ("gru", GRU), ("lstm", LSTM_TANH_OUT)])
def test_reference_recipes_convert_exactly(reference, name, expected):
    tree, notes = recipe_to_dsl(reference[name].recipe)
    assert notes == []
    assert canonical_text(tree) == canonical_text(parse(expected))
    assert is_valid(tree)


def test_reference_cells_match_the_dsl_library(reference):
    library = pytest.importorskip("cellzoo.dsl.library")
    known = {canonical_text(parse(cell.expr)) for cell in library.LIBRARY.values()}
    for name in ("rnn", "gru"):
        assert canonical_text(recipe_to_dsl(reference[name].recipe)[0]) in known
    lstm = canonical_text(recipe_to_dsl(reference["lstm"].recipe)[0])
    sigmoid_out = lstm.replace("Mult(Tanh(Add(MM(h), MM(x))), Tanh(Mem(",
                               "Mult(Sigmoid(Add(MM(h), MM(x))), Tanh(Mem(", 1)
    assert canonical_text(parse(sigmoid_out)) in known


def test_reference_runs_carry_the_published_perplexities(reference):
    assert reference["lstm"].finished and round(reference["lstm"].test_ppl, 2) == 78.89
    assert round(reference["gru"].test_ppl, 2) == 86.60


def test_lstm_graph_is_exact_and_shares_sources(reference):
    g = recipe_to_graph(reference["lstm"].recipe)
    assert g.ops.count("x") == 1 and g.ops.count("h") == 1 and g.ops.count("Mem") == 1
    assert g.ops.count("MM") == 8 and g.ops[-1] == "Mult"


def _lin(*inputs):
    return {"op": "linear", "input": list(inputs)}


def test_blend_without_sigmoid_gate_is_exact_with_sub():
    recipe = {"z": {"op": "activation_tanh", "input": ["g"]}, "g": _lin("x", "h_prev_0"),
              "a": _lin("x", "h_prev_0"),
              "h_new_0": {"op": "blend", "input": ["z", "a", "h_prev_0"]}}
    tree, notes = recipe_to_dsl(recipe)
    assert notes == []
    lin = "Add(MM(x), MM(h))"
    expected = f"Add(h, Mult(Tanh({lin}), Sub({lin}, h)))"
    assert canonical_text(tree) == canonical_text(parse(expected))
    g = recipe_to_graph(recipe)
    assert g.ops.count("h") == 1 and g.ops.count("Sub") == 1  # the DAG shares `h`


def test_inexact_mappings_are_reported():
    leaky = {"h_new_0": {"op": "activation_leaky_relu", "input": ["l"]}, "l": _lin("x", "h_prev_0")}
    tree, notes = recipe_to_dsl(leaky)
    assert notes == ["leaky_relu"] and tree.op == "ReLU"
    assert recipe_to_graph(leaky).ops[-1] == "LeakyReLU"

    off_path = {"h_new_0": {"op": "activation_tanh", "input": ["l"]}, "l": _lin("x", "h_prev_1"),
                "h_new_1": _lin("x", "h_prev_0")}
    tree, notes = recipe_to_dsl(off_path)
    assert notes == ["memory_off_path"]
    assert canonical_text(tree) == canonical_text(parse("Tanh(Add(MM(x), MM(h)))"))
    assert recipe_to_graph(off_path).ops[-1] == "Root2"

    both = {"h_new_0": {"op": "elementwise_sum", "input": ["h_new_1", "h_prev_2"]},
            "h_new_1": _lin("x", "h_prev_1"), "h_new_2": _lin("x", "h_prev_0")}
    tree, notes = recipe_to_dsl(both)
    assert notes == ["two_memories"]
    assert canonical_text(tree) == canonical_text(parse("Add(Mem(Add(MM(x), MM(c))), c)"))

    shared = {"s": _lin("x", "h_prev_0"), "t": {"op": "activation_tanh", "input": ["s"]},
              "h_new_0": {"op": "elementwise_prod", "input": ["s", "t"]}}
    assert recipe_to_dsl(shared)[1] == ["shared_weights"]


def test_unknown_ops_and_missing_nodes_are_clear_errors():
    with pytest.raises(ValueError, match="unknown op 'conv'"):
        recipe_to_graph({"h_new_0": {"op": "conv", "input": ["x"]}})
    with pytest.raises(ValueError, match="undefined node 'q'"):
        recipe_to_graph({"h_new_0": {"op": "activation_tanh", "input": ["q"]}})


def test_mapping_report_counts(reference):
    report = mapping_report(list(reference.values()))
    assert report["recipes"] == 3 and report["exact"] == 3 and report["inexact"] == 0


def test_missing_data_is_a_clear_error(tmp_path, monkeypatch):
    monkeypatch.delenv("CELLZOO_DATA", raising=False)
    with pytest.raises(FileNotFoundError, match="CELLZOO_DATA"):
        data_file(None)
    with pytest.raises(FileNotFoundError, match="not found at"):
        data_file(tmp_path)
