"""Parse, print and canonical form: property tests over generated trees, and bad input."""

import subprocess
import sys

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cellzoo.dsl import (
    OPS,
    DSLError,
    Node,
    canonical,
    canonical_text,
    cell_hash,
    from_prefix,
    parse,
    parse_cell,
    to_prefix,
    to_text,
)
from cellzoo.dsl.library import LIBRARY, resolve_cell

H_LEAVES = st.sampled_from([Node("h"), Node("c")])
E_LEAVES = st.sampled_from([Node("x"), Node("x_prev")])


def _extend(children):
    mm = st.builds(lambda a: Node("MM", (a,)), st.one_of(children, E_LEAVES))
    others = [
        st.tuples(*[children] * spec.arity).map(lambda args, n=name: Node(n, args))
        for name, spec in OPS.items() if name != "MM"
    ]
    return st.one_of(mm, *others)


# trees of width H (parse's width rules hold by construction; validity rules may not)
H_TREES = st.recursive(st.one_of(H_LEAVES, E_LEAVES.map(lambda e: Node("MM", (e,)))),
                       _extend, max_leaves=25)


@given(H_TREES)
@settings(max_examples=300, deadline=None)
def test_print_parse_round_trip(tree):
    assert parse(to_text(tree)) == tree


@given(H_TREES)
@settings(max_examples=300, deadline=None)
def test_prefix_round_trip(tree):
    assert from_prefix(to_prefix(tree)) == tree


@given(H_TREES)
@settings(max_examples=300, deadline=None)
def test_canonical_is_idempotent_and_invariant_to_commuting(tree):
    canon = canonical(tree)
    assert canonical(canon) == canon
    assert parse(canonical_text(tree)) == canon
    swapped = _swap_commutative(tree)
    assert canonical(swapped) == canon
    assert cell_hash(swapped) == cell_hash(tree)


def _swap_commutative(node: Node) -> Node:
    kids = tuple(_swap_commutative(c) for c in node.children)
    if node.op in OPS and OPS[node.op].commutative:
        kids = kids[::-1]
    return Node(node.op, kids)


def test_hash_tells_different_cells_apart():
    hashes = {cell_hash(c.expr) for c in LIBRARY.values()}
    assert len(hashes) == len(LIBRARY)
    assert cell_hash("Tanh(Add(MM(x), MM(h)))") == cell_hash("Tanh(Add(MM(h),MM(x)))")
    assert cell_hash("Tanh(Add(MM(x), MM(h)))") != cell_hash("Tanh(Sub(MM(x), MM(h)))")


@pytest.mark.parametrize("name", sorted(LIBRARY))
def test_library_cells_parse_and_print_back(name):
    expr = LIBRARY[name].expr
    assert to_text(parse_cell(expr)) == expr
    assert resolve_cell(name.upper()) == parse(expr)


@pytest.mark.parametrize(
    ("text", "column", "fragment"),
    [
        ("Tanh(Add(MM(x), MM(h))", 1, "unbalanced parentheses"),
        ("Tanh(Add(MM(x), MM(h))))", 24, "unexpected ')'"),
        ("Tahn(Add(MM(x), MM(h)))", 1, "did you mean Tanh"),
        ("Tanh(Add(MM(x), MM(h)), h)", 1, "Tanh takes 1 argument, got 2"),
        ("Add(MM(x))", 1, "Add takes 2 arguments, got 1"),
        ("Tanh()", 1, "Tanh takes 1 argument, got 0"),
        ("Tanh(Add(x, MM(h)))", 10, "x has width E, used where width H is needed"),
        ("Mult(MM(x), Tanh(Mem(MM(h))))", 18, "Mem is pointless"),
        ("Add(MM(x), Mult(c, MM(h)))", None, "needs exactly one Mem, found 0"),
        ("Add(Mem(MM(x)), Mem(Mult(c, MM(h))))", 17, "needs exactly one Mem, found 2"),
        ("Tanh(MM(h))", None, "never reads its input"),
        ("Tanh(MM(x))", None, "carries no state"),
        ("", 1, "empty expression"),
        ("   ", 1, "empty expression"),
        ("Tanh(Add(MM(x); MM(h)))", 15, "unexpected character ';'"),
        ("Tanh Add", 6, "Tanh must be followed by '('"),
        ("x", 1, "root x has width E"),
    ],
)
def test_malformed_input_is_located(text, column, fragment):
    with pytest.raises(DSLError) as info:
        parse_cell(text)
    assert fragment in str(info.value)
    assert info.value.column == column


def test_enormous_and_deep_input_fail_cleanly():
    deep = "Tanh(" * 100_000 + "h" + ")" * 100_000
    with pytest.raises(DSLError, match="nesting deeper than"):
        parse(deep)
    with pytest.raises(DSLError, match="characters long"):
        parse("Tanh(" * 300_000)
    wide = "Add(MM(x), " * 150 + "h" + ")" * 150
    with pytest.raises(DSLError, match="exceeds the limit"):
        parse_cell(wide)
    assert parse(wide).op == "Add"


def test_cli_check_exit_codes():
    run = [sys.executable, "-m", "cellzoo.cli", "dsl", "check"]
    ok = subprocess.run([*run, "GRU", "--json"], capture_output=True, text=True)
    assert ok.returncode == 0 and '"hash"' in ok.stdout
    bad = subprocess.run([*run, "Tanh(x)"], capture_output=True, text=True)
    assert bad.returncode == 2
    assert "column 6" in bad.stderr and "Traceback" not in bad.stderr


def _heavy_modules_after(*argv: str) -> tuple[str, list[str]]:
    """Run `cellzoo ARGV` in a fresh interpreter: its stdout and the heavy modules it loaded."""
    probe = ("import sys\nfrom cellzoo.cli import main\n"
             f"sys.argv = ['cellzoo', *{list(argv)!r}]\n"
             "try:\n    main()\nexcept SystemExit:\n    pass\n"
             "print('heavy:', sorted({'torch', 'h5py'} & set(sys.modules)))")
    run = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True)
    assert run.returncode == 0, run.stderr
    return run.stdout, run.stdout.splitlines()[-1]


def test_cli_check_imports_neither_torch_nor_h5py():
    """The operator table holds no torch functions, so checking a cell stays light."""
    out, heavy = _heavy_modules_after("dsl", "check", "LSTM")
    assert "canonical" in out and heavy == "heavy: []"


def test_cli_help_lists_every_command_without_importing_them():
    from cellzoo.cli import COMMANDS

    out, heavy = _heavy_modules_after("--help")
    assert heavy == "heavy: []"
    assert all(f"  {name} " in out for name in COMMANDS)
