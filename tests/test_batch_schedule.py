"""The batch and length schedules: batch_size_start grows the batch to batch_size in stages (the
block-size curriculum does the same for the window length); the batches the model sees, the tokens
counted, the refusals, and runs stopped just before a stage boundary that resume bitwise across it."""

import json

import numpy as np
import pytest
import torch
from conftest import TINY, assert_same_weights, compose_train, run_cli, straight_and_resumed

from tinygpt.config.schema import check_train_config
from tinygpt.data import get_batch
from tinygpt.errors import UserError
from tinygpt.model import GPT
from tinygpt.training.loop import train
from tinygpt.training.schedule import sequences_before, staged_size

# batch_size=8 from batch_size_start=2 over 4 steps: 2 + 6 * step / 4, down to a multiple of 2
BATCH = ["batch_size=8", "batch_size_start=2", "batch_size_steps=4"]
BATCHES = [2, 2, 4, 6, 8, 8]  # steps 0-5
# model.block_size=32 from 8 over 4 steps: 8 + 24 * step / 4, down to a multiple of 8
CURRICULUM = ["curriculum_start_block_size=8", "curriculum_steps=4"]
BLOCKS = [8, 8, 16, 24, 32, 32]


def records(run_dir):
    lines = (run_dir / "metrics.jsonl").read_text().splitlines()
    return [r for r in map(json.loads, lines) if "train_loss" in r]


def test_the_batch_grows_in_multiples_of_its_start_then_stays():
    assert [staged_size(s, 2, 8, 4) for s in range(6)] == BATCHES
    assert [staged_size(s, 8, 64, 8) for s in range(10)] == [8, 8, 16, 24, 32, 40, 48, 56, 64, 64]
    assert [staged_size(s, None, 8, 4) for s in range(3)] == [8, 8, 8]  # off: batch_size throughout


@pytest.mark.parametrize("start, end, steps", [(2, 8, 4), (3, 16, 7), (8, 8, 5), (4, 32, 0)])
def test_sequences_before_a_step_add_up_every_earlier_batch(start, end, steps):
    for step in range(steps + 4):
        assert sequences_before(step, start, end, steps) == sum(
            staged_size(s, start, end, steps) for s in range(step)
        )
    assert sequences_before(5, None, 8, 4) == 40


def test_the_model_sees_each_steps_batch_and_tokens_seen_counts_them(tmp_path):
    seen = []

    def hook(module, inputs, output):
        if isinstance(module, GPT) and module.training:
            seen.append(tuple(inputs[0].shape))

    handle = torch.nn.modules.module.register_module_forward_hook(hook)
    try:
        train(
            compose_train(*BATCH, *CURRICULUM, "max_steps=6", "eval_interval=100", "eval_iters=1"), tmp_path
        )
    finally:
        handle.remove()
    assert seen == list(zip(BATCHES, BLOCKS, strict=True))
    logged = records(tmp_path)
    assert [r["batch_size"] for r in logged] == BATCHES and [r["block_size"] for r in logged] == BLOCKS
    assert [r["tokens_seen"] for r in logged] == np.cumsum(np.multiply(BATCHES, BLOCKS)).tolist()


def test_epoch_sampling_takes_up_its_order_where_the_smaller_batches_left_it():
    """sampling=epoch visits every window once per epoch: the growing batches take consecutive ones."""
    ids = np.arange(161, dtype=np.uint16)  # 20 disjoint windows of 8 tokens
    starts = []
    for step in range(4):  # batches of 2, 2, 4, 6: 14 windows, none twice
        size = staged_size(step, 2, 8, 4)
        x, _ = get_batch(ids, size, 8, (1, 0), step, sampling="epoch", drawn=sequences_before(step, 2, 8, 4))
        starts += x[:, 0].tolist()
    assert len(starts) == len(set(starts)) == 14
    x, _ = get_batch(ids, 6, 8, (1, 0), 4, sampling="epoch", drawn=14)  # the epoch's last 6 windows
    assert sorted(starts + x[:, 0].tolist()) == list(range(0, 160, 8))


@pytest.mark.parametrize(
    "overrides, world_size, message",
    [
        (["batch_size_start=16"], 1, "batch_size_start must be between 1 and batch_size (8), got 16"),
        (
            ["batch_size_start=3"],
            2,
            "batch_size_start (3, global) must be divisible by world size x grad_accum",
        ),
        (
            ["batch_size_start=2", "grad_accum_steps=4"],
            1,
            "batch_size_start (2, global) must be divisible by",
        ),
    ],
)
def test_a_schedule_some_stage_of_which_cannot_split_is_refused(overrides, world_size, message):
    with pytest.raises(UserError) as error:
        check_train_config(compose_train("batch_size=8", *overrides), world_size)
    assert message in str(error.value)


def test_the_command_refuses_a_start_above_batch_size_in_one_line(tmp_path):
    proc = run_cli(*TINY, "max_steps=1", "batch_size_start=8", f"hydra.run.dir={tmp_path / 'run'}")
    assert proc.returncode != 0 and "Traceback" not in proc.stderr
    assert "error: batch_size_start must be between 1 and batch_size (4), got 8" in proc.stderr
    assert not (tmp_path / "run" / "ckpt.pt").exists()


@pytest.mark.parametrize(
    "schedule",
    [[*BATCH], [*BATCH, "data.sampling=epoch"], [*CURRICULUM]],
    ids=["batch", "batch, epoch sampling", "curriculum"],
)
def test_a_run_stopped_just_before_a_stage_resumes_across_it_bitwise(schedule, tmp_path):
    """Steps 0-1 share a shape, step 2 starts the next stage: the split run stops after step 2's
    predecessor and resumes into it; parameters, optimizer state and losses are the uninterrupted run's."""
    a, b = straight_and_resumed([*schedule, "eval_interval=100", "eval_iters=1"], tmp_path, total=5, stop=2)
    assert_same_weights(a, b)
    for index, state in a["optimizer"]["state"].items():
        assert all(torch.equal(v, b["optimizer"]["state"][index][k]) for k, v in state.items())
    assert a["tokens_seen"] == b["tokens_seen"]
    losses = {r["step"]: r["train_loss"] for r in records(tmp_path / "split")}
    straight = records(tmp_path / "straight")
    assert [losses[r["step"]] for r in straight] == [r["train_loss"] for r in straight]
