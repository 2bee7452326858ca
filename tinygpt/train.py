"""Training entry point: ``python -m tinygpt.train [overrides]``.

The loop, top to bottom: build data, model and optimizer from the config; maybe resume; then for each
step set the LR, accumulate gradients over micro-batches, clip, step; log, evaluate, sample and
checkpoint at their intervals. Everything a run writes goes to its run directory.
"""

import json
import logging
import math
import random
import time
from pathlib import Path
from typing import Any

import hydra
import torch
import torch.nn.functional as F
from hydra.core.hydra_config import HydraConfig
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from tinygpt.checkpoint import load_checkpoint, save_checkpoint
from tinygpt.config import check_train_config, conf_dir
from tinygpt.data import TRAIN_STREAM, VAL_STREAM, TextData, check_fits, get_batch
from tinygpt.errors import UserError, exit_on_user_error
from tinygpt.jsonconfig import with_json_config
from tinygpt.optim import build_optimizer, set_lr

log = logging.getLogger("tinygpt")


def pick_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise UserError("device=cuda but no CUDA GPU is visible; use device=cpu or device=auto")
    if name == "mps" and not torch.backends.mps.is_available():
        raise UserError("device=mps but MPS is not available here; use device=cpu or device=auto")
    return torch.device(name)


def lm_loss(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Mean next-token cross-entropy; logits (B, T, V), targets (B, T)."""
    return F.cross_entropy(logits.flatten(0, 1).float(), targets.flatten())


@torch.no_grad()
def evaluate(model: torch.nn.Module, data: TextData, cfg: DictConfig, device: torch.device) -> float:
    """Mean val loss over ``eval_iters`` batches; the same batches at every evaluation, so values compare."""
    model.eval()
    total = torch.zeros((), device=device)
    for i in range(cfg.eval_iters):
        x, y = get_batch(
            data.val, cfg.batch_size, cfg.model.block_size, (cfg.seed, VAL_STREAM), i, device=device
        )
        total += lm_loss(model(x), y)
    model.train()
    return total.item() / cfg.eval_iters


@torch.no_grad()
def sample_text(model: torch.nn.Module, data: TextData, n_tokens: int, device: torch.device) -> str:
    model.eval()
    tok = data.tokenizer
    start = tok.encode("\n") if "\n" in getattr(tok, "chars", "") else [0]
    idx = torch.tensor([list(start)], dtype=torch.long, device=device)
    out = model.generate(idx, n_tokens, temperature=0.8, top_k=50)
    model.train()
    return tok.decode(out[0, len(start) :].tolist())


def model_signature(cfg: DictConfig) -> dict[str, Any]:
    """The resolved model config: a resumed run must have exactly the same one."""
    return OmegaConf.to_container(cfg.model, resolve=True)


def capture_rng() -> dict[str, Any]:
    state = {"python": random.getstate(), "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng(state: dict[str, Any]) -> None:
    random.setstate(state["python"])
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def append_metrics(run_dir: Path, record: dict[str, Any]) -> None:
    with open(run_dir / "metrics.jsonl", "a", encoding="utf-8") as f:
        f.write(json.dumps(record) + "\n")


def train(cfg: DictConfig, run_dir: str | Path) -> dict[str, float]:
    """Run (or resume) one training job into ``run_dir``; returns final and best val loss."""
    run_dir = Path(run_dir)
    check_train_config(cfg)
    device = pick_device(cfg.device)
    ckpt_path = run_dir / "ckpt.pt"
    if not cfg.resume and ckpt_path.exists():
        raise UserError(
            f"{run_dir} already holds a run (ckpt.pt); pass resume=true to continue it, "
            "or choose a new hydra.run.dir"
        )
    ckpt = load_checkpoint(ckpt_path) if cfg.resume else None
    if ckpt is not None and ckpt["config"]["model"] != model_signature(cfg):
        raise UserError(
            f"cannot resume {ckpt_path}: its model config differs from this one; "
            "resume with the same model.* settings, or start a new run directory"
        )

    torch.manual_seed(cfg.seed)
    random.seed(cfg.seed)
    data: TextData = instantiate(cfg.data)
    check_fits(data, cfg.model.block_size)
    model = instantiate(cfg.model)(vocab_size=data.tokenizer.vocab_size).to(device)
    optimizer = build_optimizer(model, instantiate(cfg.optim), cfg.optim.weight_decay)
    lr_factor = instantiate(cfg.schedule)

    step, best_val = 0, math.inf
    if ckpt is not None:
        model.load_state_dict(ckpt["model"])
        optimizer.load_state_dict(ckpt["optimizer"])
        step, best_val = ckpt["step"], ckpt["best_val_loss"]
        restore_rng(ckpt["rng"])
        log.info("resumed %s at step %d", ckpt_path, step)

    run_dir.mkdir(parents=True, exist_ok=True)
    resolved = OmegaConf.to_container(cfg, resolve=True)
    (run_dir / "effective_config.json").write_text(json.dumps(resolved, indent=2) + "\n", encoding="utf-8")
    data.tokenizer.save(run_dir / "tokenizer.json")
    log.info(
        "model: %.2fM parameters (%.2fM non-embedding), vocab %d, device %s, run dir %s",
        model.num_params(non_embedding=False) / 1e6,
        model.num_params() / 1e6,
        data.tokenizer.vocab_size,
        device,
        run_dir,
    )

    def checkpoint(path: Path) -> None:
        state = {
            "model": model.state_dict(),
            "optimizer": optimizer.state_dict(),
            "step": step,
            "best_val_loss": best_val,
            "config": resolved,
            "rng": capture_rng(),
        }
        save_checkpoint(state, path)

    micro_batch = cfg.batch_size // cfg.grad_accum_steps
    tokens_per_step = cfg.batch_size * cfg.model.block_size
    val_loss = math.nan
    t_last, step_last = time.perf_counter(), step
    model.train()
    while step < cfg.max_steps:
        lr = cfg.optim.lr * lr_factor(step, cfg.max_steps)
        set_lr(optimizer, lr)
        loss_sum = torch.zeros((), device=device)
        for micro in range(cfg.grad_accum_steps):
            x, y = get_batch(
                data.train,
                micro_batch,
                cfg.model.block_size,
                (cfg.seed, TRAIN_STREAM),
                step * cfg.grad_accum_steps + micro,  # global micro-batch index: resume-exact, epoch-aware
                sampling=data.sampling,
                device=device,
            )
            loss = lm_loss(model(x), y) / cfg.grad_accum_steps
            loss.backward()
            loss_sum += loss.detach()
        if cfg.grad_clip > 0:
            torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        step += 1

        if step % cfg.log_interval == 0 or step == cfg.max_steps:
            train_loss = loss_sum.item()  # the only host sync of a training step, and only at log time
            elapsed = time.perf_counter() - t_last
            tokens_per_s = tokens_per_step * (step - step_last) / max(elapsed, 1e-9)
            t_last, step_last = time.perf_counter(), step
            log.info(
                "step %d/%d | loss %.4f | lr %.2e | %.0f tok/s",
                step,
                cfg.max_steps,
                train_loss,
                lr,
                tokens_per_s,
            )
            append_metrics(run_dir, dict(step=step, train_loss=train_loss, lr=lr, tokens_per_s=tokens_per_s))
        pause = time.perf_counter()  # eval, samples and checkpoints do not count against tokens/s
        if step % cfg.eval_interval == 0 or step == cfg.max_steps:
            val_loss = evaluate(model, data, cfg, device)
            log.info("step %d | val loss %.4f", step, val_loss)
            append_metrics(run_dir, dict(step=step, val_loss=val_loss, lr=lr))
            if val_loss < best_val:
                best_val = val_loss
                checkpoint(run_dir / "ckpt_best.pt")
        if cfg.sample_interval and (step % cfg.sample_interval == 0 or step == cfg.max_steps):
            log.info("sample at step %d:\n%s", step, sample_text(model, data, cfg.sample_tokens, device))
        if step % cfg.ckpt_interval == 0 or step == cfg.max_steps:
            checkpoint(ckpt_path)
        t_last += time.perf_counter() - pause
    if ckpt is not None and step == ckpt["step"]:
        log.info("nothing to do: the run already reached max_steps=%d", cfg.max_steps)
    return {"val_loss": val_loss, "best_val_loss": best_val, "step": step}


@with_json_config  # config_json=FILE: the JSON's keys become overrides before Hydra reads the command line
@hydra.main(version_base="1.3", config_path=conf_dir(), config_name="train")
@exit_on_user_error
def main(cfg: DictConfig) -> float:
    result = train(cfg, HydraConfig.get().runtime.output_dir)
    return result["best_val_loss"]


if __name__ == "__main__":
    main()
