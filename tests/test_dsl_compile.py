"""The compiler against PyTorch's own cells, and every library cell end to end."""

import pytest
import torch

from cellzoo.dsl import cell_hash, parse_cell
from cellzoo.dsl.compile import CompiledCell
from cellzoo.dsl.library import LIBRARY

T, B, E, H = 6, 3, 5, 4


def _copy(cell: CompiledCell, k: int, weight: torch.Tensor, bias: torch.Tensor) -> None:
    with torch.no_grad():
        cell.mm[k].weight.copy_(weight)
        cell.mm[k].bias.copy_(bias)


def _run_reference(ref, x, two_states):
    h = torch.zeros(B, H)
    c = torch.zeros(B, H)
    outs = []
    for t in range(T):
        if two_states:
            h, c = ref(x[t], (h, c))
        else:
            h = ref(x[t], h)
        outs.append(h)
    return torch.stack(outs)


def _compare(cell, ref, two_states):
    x = torch.randn(T, B, E, requires_grad=True)
    x2 = x.detach().clone().requires_grad_(True)
    out, _ = cell(x)
    expected = _run_reference(ref, x2, two_states)
    torch.testing.assert_close(out, expected, rtol=1e-5, atol=1e-6)
    grad = torch.randn_like(out)
    out.backward(grad)
    expected.backward(grad)
    torch.testing.assert_close(x.grad, x2.grad, rtol=1e-5, atol=1e-6)
    return cell


def test_lstm_matches_torch_lstmcell():
    torch.manual_seed(0)
    ref = torch.nn.LSTMCell(E, H)
    cell = CompiledCell(LIBRARY["LSTM"].expr, E, H)
    rows = dict(zip("ifgo", range(4), strict=True))
    w_ih, w_hh = ref.weight_ih.detach(), ref.weight_hh.detach()
    b_ih, b_hh = ref.bias_ih.detach(), ref.bias_hh.detach()
    # prefix order of the DSL LSTM's MMs: o, f, i, g gates; x before h in each
    for gate_number, gate in enumerate("ofig"):
        sl = slice(rows[gate] * H, (rows[gate] + 1) * H)
        _copy(cell, 2 * gate_number, w_ih[sl], b_ih[sl])
        _copy(cell, 2 * gate_number + 1, w_hh[sl], b_hh[sl])
    _compare(cell, ref, two_states=True)
    # gradients reach every MM weight
    assert all(m.weight.grad is not None and m.weight.grad.abs().sum() > 0 for m in cell.mm)


def test_gru_torch_variant_matches_torch_grucell():
    torch.manual_seed(1)
    ref = torch.nn.GRUCell(E, H)
    cell = CompiledCell(LIBRARY["GRU-torch"].expr, E, H)
    w_ih, w_hh = ref.weight_ih.detach(), ref.weight_hh.detach()
    b_ih, b_hh = ref.bias_ih.detach(), ref.bias_hh.detach()

    def rows(i):
        return slice(i * H, (i + 1) * H)

    r, z, n = rows(0), rows(1), rows(2)
    # prefix order: n_x, r_x, r_h, n_h, z_x, z_h
    for k, (w, b, sl) in enumerate([(w_ih, b_ih, n), (w_ih, b_ih, r), (w_hh, b_hh, r),
                                    (w_hh, b_hh, n), (w_ih, b_ih, z), (w_hh, b_hh, z)]):
        _copy(cell, k, w[sl], b[sl])
    _compare(cell, ref, two_states=False)


def test_original_gru_is_a_different_cell_from_torch_variant():
    assert cell_hash(LIBRARY["GRU"].expr) != cell_hash(LIBRARY["GRU-torch"].expr)


def test_state_carries_across_calls():
    torch.manual_seed(3)
    for name in ("LSTM", "QRNN", "SRU"):
        cell = CompiledCell(LIBRARY[name].expr, E, H)
        x = torch.randn(T, B, E)
        whole, _ = cell(x)
        first, state = cell(x[:2])
        second, _ = cell(x[2:], state)
        torch.testing.assert_close(torch.cat([first, second]), whole)


@pytest.mark.parametrize("name", sorted(LIBRARY))
def test_library_cell_compiles_and_backpropagates(name):
    torch.manual_seed(4)
    cell = CompiledCell(LIBRARY[name].expr, E, H)
    out, (h, c, xp, pos) = cell(torch.randn(T, B, E))
    assert out.shape == (T, B, H) and torch.isfinite(out).all()
    out.square().sum().backward()
    assert all(p.grad is not None for p in cell.parameters())
    assert pos[0, 0].item() == T


def test_extended_operators_compile_and_match_scripted_mode():
    expr = ("Add(PosEnc(LayerNorm(Div(Sin(MM(x)), Cos(MM(h))))), "
            "Max(SeLU(Sub(MM(x_prev), h)), Min(MM(x), ReLU(MM(h)))))")
    torch.manual_seed(5)
    eager = CompiledCell(expr, E, H)
    scripted = CompiledCell(expr, E, H, mode="script")
    scripted.load_state_dict(eager.state_dict())
    x = torch.randn(T, B, E)
    torch.testing.assert_close(eager(x)[0], scripted(x)[0])


def test_equal_weight_free_subexpressions_are_computed_once():
    cell = CompiledCell("Add(Tanh(h), Mult(Tanh(h), MM(x)))", E, H)
    assert cell.code.count("fn_Tanh") == 1
    # but equal subtrees with weights keep their own weights
    cell = CompiledCell("Add(MM(x), Add(MM(h), MM(h)))", E, H)
    assert len(cell.mm) == 3


def test_parse_cell_rejects_before_compiling():
    with pytest.raises(ValueError, match="column"):
        CompiledCell("Tanh(x)", E, H)
    assert parse_cell("Tanh(Add(MM(x), MM(h)))")


@pytest.mark.parametrize("name", sorted(LIBRARY))
def test_library_cell_trains_on_synthetic_task(name):
    from cellzoo.train import TrainConfig, train_cell

    config = TrainConfig.proxy("synthetic", hidden=16, budget_tokens=2_000, eval_tokens=500)
    result = train_cell(LIBRARY[name].expr, config)
    assert result.status == "ok", result.error
    assert result.val_ppl < _uniform_ppl()


def _uniform_ppl() -> float:
    from cellzoo.train import load_corpus

    return float(len(load_corpus("synthetic").vocab))


def test_every_operator_has_exactly_one_torch_meaning():
    from cellzoo.dsl.kernels import FUNCTIONS, SPECIAL
    from cellzoo.dsl.ops import OPS

    assert not set(FUNCTIONS) & set(SPECIAL)
    assert set(FUNCTIONS) | set(SPECIAL) == set(OPS)
