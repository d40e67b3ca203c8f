"""The compiled-step mode: same numbers as eager, one compilation per cell and width."""

import logging

import pytest
import torch

from cellzoo.dsl.compile import CompiledCell
from cellzoo.dsl.library import LIBRARY
from cellzoo.dsl.step import CompiledStep

T, B, E, H = 4, 2, 3, 4
EXTENDED = ("Add(PosEnc(LayerNorm(Div(Sin(MM(x)), Cos(MM(h))))), "
            "Max(SeLU(Sub(MM(x_prev), h)), Min(MM(x), ReLU(MM(h)))))")
CUDA = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")


def _run(cell: CompiledCell, x: torch.Tensor, state=None):
    """Outputs, final state and the gradients of the input, the state and every parameter."""
    x = x.detach().clone().requires_grad_(True)
    cell.zero_grad()
    if state is not None:
        state = tuple(s.detach().clone().requires_grad_(True) for s in state)
    out, new_state = cell(x, state)
    (out.square().sum() + new_state[1].sum()).backward()
    grads = [x.grad] + [p.grad for p in cell.parameters()]
    grads += [s.grad for s in state[:2]] if state is not None else []
    return [out, *new_state], grads


def _pair(expr: str, input_size: int = E, hidden: int = H, device: str = "cpu"):
    torch.manual_seed(0)
    eager = CompiledCell(expr, input_size, hidden).to(device)
    step = CompiledCell(expr, input_size, hidden, mode="step").to(device)
    step.load_state_dict(eager.state_dict())
    return eager, step


def _assert_same(eager: CompiledCell, step: CompiledCell, x: torch.Tensor, state=None) -> None:
    (want, want_grads), (got, got_grads) = _run(eager, x, state), _run(step, x, state)
    for w, g in zip(want + want_grads, got + got_grads, strict=True):
        torch.testing.assert_close(g, w, rtol=1e-3, atol=1e-4)  # Div amplifies rounding


def _graphs() -> int:
    return torch._dynamo.utils.counters["stats"]["unique_graphs"]


@pytest.mark.parametrize("name", ["LSTM", "GRU"])
def test_step_matches_eager_outputs_and_gradients(name):
    eager, step = _pair(LIBRARY[name].expr)
    torch.manual_seed(1)
    state = tuple(torch.randn(B, w) for w in (H, H, E, 1))
    _assert_same(eager, step, torch.randn(T, B, E), state)


@pytest.mark.slow  # compiles ten cells: ~30 s of CPU, 2 min wall on a busy 2-core machine
@pytest.mark.parametrize("expr", [cell.expr for name, cell in sorted(LIBRARY.items())
                                  if name not in ("LSTM", "GRU")] + [EXTENDED],
                         ids=[n for n in sorted(LIBRARY) if n not in ("LSTM", "GRU")]
                         + ["extended-operators"])
def test_every_cell_steps_like_eager(expr):
    eager, step = _pair(expr)
    torch.manual_seed(2)
    _assert_same(eager, step, torch.randn(T, B, E))


def test_one_compilation_serves_every_layer_length_and_model():
    expr = LIBRARY["MinimalRNN"].expr
    _, first = _pair(expr, input_size=5)
    x = torch.randn(T, B, 5)
    _run(first, x)
    graphs = _graphs()
    # another model of the cell: an upper layer (other input width), other lengths, twice
    _, upper = _pair(expr, input_size=H)
    assert upper._step is first._step
    for length in (1, T + 3):
        _run(upper, torch.randn(length, B, H))
    assert _graphs() == graphs
    # a new width is a new step
    _, wider = _pair(expr, input_size=5, hidden=H + 1)
    _run(wider, x)
    assert wider._step is not first._step and _graphs() > graphs


def test_evaluation_without_gradients_compiles_nothing():
    eager, step = _pair(LIBRARY["CIFG-LSTM"].expr)
    graphs = _graphs()
    x = torch.randn(T, B, E)
    with torch.no_grad():
        torch.testing.assert_close(step(x)[0], eager(x)[0])
    assert _graphs() == graphs


def test_a_step_the_compiler_rejects_runs_eager_with_one_warning(caplog):
    def broken_backend(graph, example_inputs):
        raise NotImplementedError("this backend compiles nothing")

    eager, step = _pair(LIBRARY["tanh-RNN"].expr)
    step._step = CompiledStep(step._step.eager, backend=broken_backend)
    x = torch.randn(T, B, E)
    with caplog.at_level(logging.WARNING, logger="cellzoo.dsl.step"):
        _assert_same(eager, step, x)
        _assert_same(eager, step, x)
    warnings = [r.getMessage() for r in caplog.records if r.name == "cellzoo.dsl.step"]
    assert len(warnings) == 1
    assert "running eager (NotImplementedError: this backend compiles nothing)" in warnings[0]
    assert "\n" not in warnings[0]


@CUDA
def test_step_on_cuda_matches_eager():
    eager, step = _pair(LIBRARY["LSTM"].expr, device="cuda")
    _assert_same(eager, step, torch.randn(T, B, E, device="cuda"))


def test_training_model_takes_the_measured_default_or_the_environment(monkeypatch):
    from cellzoo.train import TrainConfig
    from cellzoo.train.model import DEFAULT_MODES, MODE_VARIABLE, LanguageModel, cell_mode

    config = TrainConfig.proxy("synthetic", hidden=H)
    monkeypatch.delenv(MODE_VARIABLE, raising=False)
    assert cell_mode("cpu") == DEFAULT_MODES["cpu"]
    monkeypatch.setenv(MODE_VARIABLE, "step")
    model = LanguageModel(LIBRARY["GRU"].expr, 10, config)
    assert all(cell._step is not None for cell in model.cells)
    monkeypatch.setenv(MODE_VARIABLE, "fast")
    with pytest.raises(ValueError, match="CELLZOO_CELL_MODE='fast'"):
        LanguageModel(LIBRARY["GRU"].expr, 10, config)
