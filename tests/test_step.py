"""The optimizer step on its own: accumulation, clipping, and a non-finite update that never lands,
decided on the device."""

import contextlib
import copy
import functools
import sys

import pytest
import torch
from conftest import build_model

import tinygpt.model.loss
from tinygpt.training import step
from tinygpt.training.optim import Lion
from tinygpt.training.state import TrainState, make_ema
from tinygpt.training.step import StepStats, accumulate_gradients, apply_update, train_step

# The step's settings as a run settles them, in fp32 (precision=auto is decided before the step)
StepSettings = functools.partial(step.StepSettings, precision="fp32")

X, Y = torch.randint(0, 50, (8, 16)), torch.randint(0, 50, (8, 16))


def new_state(optimizer=torch.optim.AdamW, ema_decay=None, seed=0):
    torch.manual_seed(seed)
    model = build_model()
    ema = make_ema(model) if ema_decay else None
    return TrainState(
        model, optimizer(model.parameters(), lr=1e-2), torch.amp.GradScaler("cpu", enabled=False), ema
    )


def poisoned(model):
    """The model's forward, its loss made NaN: a loss and gradients that are not finite."""
    return lambda x, **loss: model(x, **loss) * float("nan")


def snapshot(state):
    weights = {n: p.detach().clone() for n, p in state.model.named_parameters()}
    return weights, copy.deepcopy(state.optimizer.state_dict()), copy.deepcopy(state.ema)


def assert_same(a, b):
    for name in a:
        assert torch.equal(a[name], b[name]), name


OPTIMIZERS = {
    "adamw": torch.optim.AdamW,
    "adamw fused (skips on the device itself)": functools.partial(torch.optim.AdamW, fused=True),
    "lion": Lion,
    "sgd": functools.partial(torch.optim.SGD, momentum=0.9),
}
EMA = StepSettings(ema_decay=0.9)


@pytest.mark.parametrize("optimizer", OPTIMIZERS)
def test_a_non_finite_step_changes_no_weight_and_no_optimizer_state(optimizer):
    state = new_state(OPTIMIZERS[optimizer], ema_decay=0.9)
    train_step(state, state.model, X, Y, EMA)  # a good step first: optimizer state exists
    weights, opt_state, ema = snapshot(state)
    stats = train_step(state, poisoned(state.model), X, Y, EMA)
    assert not stats.applied and not torch.isfinite(stats.loss)
    assert_same(weights, snapshot(state)[0])
    after = state.optimizer.state_dict()["state"]
    for i, entry in opt_state["state"].items():
        for key, value in entry.items():
            assert torch.equal(torch.as_tensor(value), torch.as_tensor(after[i][key])), (i, key)
    assert_same(dict(ema.named_parameters()), dict(state.ema.named_parameters()))
    assert state.ema.n_averaged == ema.n_averaged
    assert (state.skipped_in_a_row.item(), state.skipped_total.item()) == (1, 1)


@pytest.mark.parametrize("optimizer", OPTIMIZERS)
def test_a_skipped_first_step_leaves_the_run_as_if_it_had_not_happened(optimizer):
    skipped, fresh = (
        new_state(OPTIMIZERS[optimizer], ema_decay=0.9),
        new_state(OPTIMIZERS[optimizer], ema_decay=0.9),
    )
    train_step(skipped, poisoned(skipped.model), X, Y, EMA)
    for state in (skipped, fresh):
        stats = train_step(state, state.model, X, Y, EMA)
        assert stats.applied
    assert_same(dict(fresh.model.named_parameters()), dict(skipped.model.named_parameters()))
    assert_same(dict(fresh.ema.named_parameters()), dict(skipped.ema.named_parameters()))


def test_skip_counters_count_in_a_row_and_in_total():
    state = new_state()
    for forward in ("nan", "nan", "ok", "nan"):
        train_step(state, poisoned(state.model) if forward == "nan" else state.model, X, Y, StepSettings())
    assert state.skipped_in_a_row.item() == 1
    assert state.skipped_total.item() == 3
    assert state.worst_in_a_row.item() == 2


def test_the_step_asks_the_host_nothing(monkeypatch):
    """No .item() and no bool() of a tensor in TinyGPT's step code, so it can run ahead of a GPU (and
    into a CUDA graph). torch's optimizers are trusted: they keep their step counts on the CPU."""
    state = new_state(ema_decay=0.9)
    train_step(state, state.model, X, Y, EMA)

    def refusing(method):
        def wrapper(tensor, *args, **kwargs):
            if sys._getframe(1).f_globals.get("__name__", "").startswith("tinygpt"):
                raise AssertionError(f"a host sync inside the step: Tensor.{method.__name__}")
            return method(tensor, *args, **kwargs)

        return wrapper

    for name in ("item", "__bool__", "tolist"):
        monkeypatch.setattr(torch.Tensor, name, refusing(getattr(torch.Tensor, name)))
    train_step(state, state.model, X, Y, StepSettings(grad_clip=1.0, grad_accum_steps=2, ema_decay=0.9))
    train_step(state, poisoned(state.model), X, Y, EMA)


def test_clipping_bounds_the_update_and_reports_the_norm_before_clipping():
    state = new_state(torch.optim.SGD)
    before = {n: p.detach().clone() for n, p in state.model.named_parameters()}
    stats = train_step(state, state.model, X, Y, StepSettings(grad_clip=1e-3))
    moved = torch.sqrt(sum((p.detach() - before[n]).pow(2).sum() for n, p in state.model.named_parameters()))
    assert stats.grad_norm > 1e-3
    torch.testing.assert_close(moved, torch.tensor(1e-2 * 1e-3))  # lr x clipped norm


def _grads(model):
    return {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}


def test_four_micro_batches_of_8_give_the_gradient_of_one_batch_of_32():
    x, y = torch.randint(0, 50, (32, 16)), torch.randint(0, 50, (32, 16))
    scaler = torch.amp.GradScaler("cpu", enabled=False)
    model = build_model()
    accumulate_gradients(model, x, y, StepSettings(grad_accum_steps=1), scaler)
    whole = _grads(model)
    model.zero_grad()
    accumulate_gradients(model, x, y, StepSettings(grad_accum_steps=4), scaler)
    for name, g in _grads(model).items():
        torch.testing.assert_close(g, whole[name], rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize("variant", [[], ["model=llama", "model.dropout=0.1"]])
def test_gradient_checkpointing_gives_the_same_gradients(variant):
    x, y = torch.randint(0, 50, (4, 16)), torch.randint(0, 50, (4, 16))
    scaler = torch.amp.GradScaler("cpu", enabled=False)
    model = build_model(*variant)
    torch.manual_seed(1)
    accumulate_gradients(model, x, y, StepSettings(), scaler)
    plain = _grads(model)
    model.zero_grad()
    model.grad_checkpointing = True
    torch.manual_seed(1)  # same dropout masks: checkpoint replays the RNG state in the recompute
    accumulate_gradients(model, x, y, StepSettings(), scaler)
    for name, g in _grads(model).items():
        torch.testing.assert_close(g, plain[name])


def test_the_ema_lives_on_the_models_device():
    """Its count too: a count left on the CPU breaks the first EMA update of a GPU run."""
    model = build_model().to("meta")
    ema = make_ema(model)
    assert ema.n_averaged.device.type == "meta"
    assert all(p.device.type == "meta" for p in ema.parameters())


@pytest.mark.slow
def test_the_compiled_step_computes_the_loss_in_its_graph_and_matches_the_eager_step():
    """torch.compile of the model compiles the loss with it (label smoothing and z-loss included), so
    inductor fuses the head's log-softmax and casts; the numbers stay those of the eager step."""
    graphs = []

    def inductor_recording(graph, example_inputs):
        graphs.append(graph)
        return torch._inductor.compile(graph, example_inputs)

    settings = StepSettings(label_smoothing=0.1, z_loss=1e-3, grad_accum_steps=2)
    sgd = OPTIMIZERS["sgd"]  # linear in the gradient: Adam would turn rounding noise into +-lr
    eager, compiled = new_state(sgd), new_state(sgd)
    forward = torch.compile(compiled.model, backend=inductor_recording)
    for _ in range(3):
        expected = train_step(eager, eager.model, X, Y, settings)
        got = train_step(compiled, forward, X, Y, settings)
        torch.testing.assert_close(got.loss, expected.loss)
        torch.testing.assert_close(got.grad_norm, expected.grad_norm)
    for (name, p), q in zip(compiled.model.named_parameters(), eager.model.parameters(), strict=True):
        torch.testing.assert_close(p, q, msg=name)
    ops = {str(node.target) for graph in graphs for node in graph.graph.nodes}
    assert any("cross_entropy" in op for op in ops) and any("logsumexp" in op for op in ops), ops


def test_the_update_changes_the_state_in_place_so_a_cuda_graph_can_replay_it():
    """A CUDA graph replays its kernels onto the memory it recorded: an update that made new counter or
    gradient tensors would leave the graph updating tensors the loop no longer reads."""
    state = new_state(OPTIMIZERS["adamw fused (skips on the device itself)"])
    for p in state.model.parameters():
        p.grad = torch.zeros_like(p)  # as GraphedUpdate allocates them
    counters = [state.skipped_total, state.skipped_in_a_row, state.worst_in_a_row]
    grads = [p.grad for p in state.model.parameters()]
    for loss in (1.0, float("nan"), float("nan"), 1.0):
        state.model(X, targets=Y).backward()
        for p, g in zip(state.model.parameters(), grads, strict=True):
            assert p.grad is g  # backward accumulated into the same tensors
        norm, applied = apply_update(state, torch.tensor(loss), StepSettings(), keep_grads=True)
        assert bool(applied) == (loss == 1.0)
    now = [state.skipped_total, state.skipped_in_a_row, state.worst_in_a_row]
    assert all(a is b for a, b in zip(now, counters, strict=True))
    assert [int(c) for c in counters] == [2, 0, 2]  # skipped in total, in a row now, worst run
    assert all(int(g.count_nonzero()) == 0 for g in grads)  # zeroed for the next accumulation


def test_gradient_checkpointing_never_keeps_the_whole_logits_and_gives_the_same_loss(monkeypatch):
    """With grad_checkpointing the head and loss go a chunk of tokens at a time (here 10 of the 64), so
    the (B*T, V) logits, the largest tensor of a GPT-2-sized step, are never kept for backward whole."""
    monkeypatch.setattr(tinygpt.model.loss, "LOGITS_PER_CHUNK", 50 * 10)
    x, y = torch.randint(0, 50, (4, 16)), torch.randint(0, 50, (4, 16))
    model = build_model(vocab_size=50)
    results = {}
    for checkpointed in (False, True):
        model.grad_checkpointing = checkpointed
        kept = []

        def pack(t, kept=kept):
            kept.append(t.shape)
            return t

        with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
            loss = model(x, targets=y, label_smoothing=0.1, z_loss=1e-3)
        loss.backward()
        logits_kept = max((s.numel() for s in kept if len(s) and s[-1] == 50), default=0)
        results[checkpointed] = loss.detach(), _grads(model), logits_kept
        model.zero_grad()
    (plain_loss, plain_grads, plain_kept), (loss, grads, kept_now) = results[False], results[True]
    assert plain_kept == 64 * 50 and kept_now < 64 * 50
    torch.testing.assert_close(loss, plain_loss)
    for name, g in grads.items():
        torch.testing.assert_close(g, plain_grads[name], msg=name)


class ReplayedByRerunning:
    """Stands in for a CUDA graph on the CPU: ``replay`` runs the recorded step again, into the outputs."""

    recorded: list["ReplayedByRerunning"] = []

    def __init__(self, step):
        self.step = step
        self.out = StepStats(torch.zeros(()), torch.zeros(()), torch.zeros((), dtype=torch.bool))
        ReplayedByRerunning.recorded.append(self)

    def replay(self):
        new = self.step()
        for name in ("loss", "grad_norm", "applied"):
            getattr(self.out, name).copy_(getattr(new, name))


def test_the_whole_step_graph_trains_as_the_eager_step_through_a_change_of_block_size(monkeypatch):
    """cuda_graph=true (training/graphs.py GraphedStep), its CUDA parts replaced: each step's batch goes
    into the tensors the graph reads, the first 2 steps of a shape run eagerly, the third records, a new
    block size records anew; the run is the eager one's. On a GPU: benchmarks/cuda_graph_check.py step."""
    import tinygpt.training.graphs as graphs
    from tinygpt.runtime import cuda_graphs

    class NoStream:
        def wait_stream(self, other):
            pass

    monkeypatch.setattr(torch.cuda, "current_stream", lambda device=None: NoStream())
    monkeypatch.setattr(torch.cuda, "Stream", lambda device=None: NoStream())
    monkeypatch.setattr(torch.cuda, "stream", lambda stream: contextlib.nullcontext())

    def record(step, generator=None):
        graph = ReplayedByRerunning(step)
        return graph, graph.out

    monkeypatch.setattr(cuda_graphs, "record", record)
    ReplayedByRerunning.recorded.clear()
    fused = OPTIMIZERS["adamw fused (skips on the device itself)"]
    eager, graphed = new_state(fused), new_state(fused)
    settings = StepSettings(grad_accum_steps=2, ema_decay=0.9)
    eager.ema, graphed.ema = make_ema(eager.model), make_ema(graphed.model)
    step = graphs.GraphedStep(graphed, graphed.model, settings)
    torch.manual_seed(1)
    for block_size in (8, 8, 8, 8, 16, 16, 16, 16, 16):
        windows = torch.randint(0, 50, (8, block_size + 1))
        x, y = windows[:, :-1], windows[:, 1:]  # views with gaps, as get_batch returns them
        expected = train_step(eager, eager.model, x, y, settings)
        got = step(graphed, x, y)
        torch.testing.assert_close(got.loss, expected.loss)
        torch.testing.assert_close(got.grad_norm, expected.grad_norm)
    assert len(ReplayedByRerunning.recorded) == 2  # one recording per block size, after 2 eager steps
    for p, q in zip(graphed.model.parameters(), eager.model.parameters(), strict=True):
        torch.testing.assert_close(p, q)
    for p, q in zip(graphed.ema.module.parameters(), eager.ema.module.parameters(), strict=True):
        torch.testing.assert_close(p, q)


def test_ema_averages_the_weights_not_rope_tables_that_sampling_grew():
    """Sampling past block_size grows the EMA model's RoPE tables; the next EMA update still works
    (before: a size mismatch at the first step after such a sample) and averages every weight."""
    model = build_model("model=llama", "model.sliding_window=5")
    state = TrainState(
        model, torch.optim.SGD(model.parameters(), lr=0.1), torch.amp.GradScaler("cpu", enabled=False)
    )
    state.ema = make_ema(model)
    rope = state.ema.module.transformer.wpe
    rope.cos, rope.sin = (torch.cat([t, t]) for t in (rope.cos, rope.sin))  # as a long sample leaves them
    train_step(state, state.model, X, Y, EMA)
    train_step(state, state.model, X, Y, EMA)
    for mine, averaged in zip(model.parameters(), state.ema.module.parameters(), strict=True):
        assert not torch.equal(mine, averaged) or mine.grad is None  # the second update averaged, not copied
