"""A component of the user's own, plugged in by ``_target_``: it trains, and a run that names it is
loaded again (resume, generate) only when the user lists its module in TINYGPT_TRUSTED_MODULES; a run
directory never gets code imported or called that TinyGPT's config tree does not name."""

from pathlib import Path

import pytest
from conftest import REPO, TINY, run_cli

from tinygpt.training.checkpoint import load_checkpoint, save_checkpoint

NORM_MODULE = '''
import torch


class ScaledNorm(torch.nn.Module):
    """RMS normalisation with one learned scale for the whole vector."""

    def __init__(self, n_embd, eps=1e-5, bias=True):
        super().__init__()
        self.scale, self.eps = torch.nn.Parameter(torch.ones(())), eps

    def forward(self, x):
        return self.scale * x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.eps)
'''


@pytest.fixture(scope="module")
def plugin_run(tmp_path_factory) -> tuple[Path, Path]:
    """A 2-step run whose norm is ``my_norms.ScaledNorm`` from a folder of the user's; (run, folder)."""
    folder = tmp_path_factory.mktemp("user_code")
    (folder / "my_norms.py").write_text(NORM_MODULE)
    run = folder / "run"
    proc = run_cli(
        *TINY,
        "max_steps=2",
        "model.norm._target_=my_norms.ScaledNorm",
        f"hydra.run.dir={run}",
        env=path_with(folder),
    )
    assert proc.returncode == 0, proc.stderr
    return run, folder


def path_with(folder: Path, trusted: str | None = None) -> dict[str, str]:
    env = {"PYTHONPATH": f"{REPO}:{folder}"}
    return env if trusted is None else {**env, "TINYGPT_TRUSTED_MODULES": trusted}


def one_error_line(proc) -> str:
    assert proc.returncode == 2, proc.stderr
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1 and "Traceback" not in proc.stderr, proc.stderr
    return errors[0]


def test_a_run_naming_the_users_module_samples_only_once_it_is_trusted(plugin_run):
    run, folder = plugin_run
    args = [f"run={run}", "prompt=a", "max_new_tokens=5", "device=cpu"]
    refused = run_cli(*args, module="tinygpt.generate", env=path_with(folder))
    line = one_error_line(refused)
    assert "'my_norms.ScaledNorm'" in line and "TINYGPT_TRUSTED_MODULES" in line
    trusted = run_cli(*args, module="tinygpt.generate", env=path_with(folder, trusted="my_norms"))
    assert trusted.returncode == 0, trusted.stderr
    assert trusted.stdout.startswith("a") and len(trusted.stdout) > 1


def test_a_run_naming_the_users_module_resumes_only_once_it_is_trusted(plugin_run):
    run, folder = plugin_run
    args = [*TINY, "max_steps=3", f"hydra.run.dir={run}", "resume=true"]
    line = one_error_line(run_cli(*args, env=path_with(folder)))
    assert "model.norm._target_" in line and "TINYGPT_TRUSTED_MODULES" in line
    assert load_checkpoint(run / "ckpt.pt")["step"] == 2  # nothing changed
    resumed = run_cli(*args, env=path_with(folder, trusted="my_norms,another"))
    assert resumed.returncode == 0, resumed.stderr
    assert load_checkpoint(run / "ckpt.pt")["step"] == 3


def test_a_resume_never_builds_what_a_checkpoints_saved_overrides_name(plugin_run, tmp_path):
    run, _ = plugin_run
    marker = tmp_path / "pwned"
    state = load_checkpoint(run / "ckpt.pt")
    state["overrides"] = [f"optim={{_target_:builtins.open,_args_:['{marker}',w]}}"]
    hostile = tmp_path / "run"
    hostile.mkdir()
    save_checkpoint(state, hostile / "ckpt.pt")
    line = one_error_line(run_cli(*TINY, f"hydra.run.dir={hostile}", "resume=true"))
    assert "'builtins.open'" in line and str(hostile / "ckpt.pt") in line
    assert not marker.exists()
