"""A config read back from a run (its checkpoint, its effective_config.json) or fed in with config_json=
is data, stored resolved: an interpolation hidden anywhere in it is refused by file and key, before
anything can resolve it and build what it names."""

import json
import shutil
from pathlib import Path

import pytest
from conftest import compose_train, run_cli
from omegaconf import OmegaConf

import tinygpt
from tinygpt.config.jsonconfig import json_overrides
from tinygpt.errors import UserError
from tinygpt.training.checkpoint import load_checkpoint, save_checkpoint
from tinygpt.training.loop import train

# Interpolations that, resolved, create the file MARKER.
PAYLOADS = {
    "oc.create": "${oc.create:{_target_: builtins.open, _args_: [MARKER, w]}}",
    "oc.decode": "${oc.decode:'{_target_: builtins.open, _args_: [MARKER, w]}'}",
    "custom resolver": "${touch_for_test:MARKER}",
}
# Where in a run's config a payload hides -> (how to put it there, the key the refusal names).
PLACES = {
    "top-level value": (lambda cfg, p: cfg["model"].update(dropout=p), "model.dropout"),
    "nested node": (lambda cfg, p: cfg["model"]["norm"].update(eps=p), "model.norm.eps"),
    "inside a list": (lambda cfg, p: cfg["model"]["pos"].update(extra=[0, p]), "model.pos.extra[1]"),
    "inside optim.betas": (lambda cfg, p: cfg["optim"].update(betas=[0.9, p]), "optim.betas[1]"),
    "a dict key": (lambda cfg, p: cfg["model"]["norm"].update({p: 1}), "model.norm"),
}
CASES = [
    ("top-level value", "oc.create"),
    ("nested node", "oc.decode"),
    ("inside a list", "oc.create"),
    ("top-level value", "custom resolver"),
    ("inside a list", "custom resolver"),
    ("a dict key", "oc.create"),
]


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory) -> Path:
    run = tmp_path_factory.mktemp("run")
    train(compose_train("max_steps=2", "eval_interval=1"), run)
    return run


@pytest.fixture(autouse=True)
def touch_resolver():
    """A resolver an attacker might count on being registered: resolving it creates a file."""
    OmegaConf.register_new_resolver("touch_for_test", lambda path: Path(path).touch() or 0.0)
    yield
    OmegaConf.clear_resolver("touch_for_test")


def hide(config: dict, place: str, payload: str, marker: Path) -> str:
    """Put the payload (creating ``marker`` if resolved) into a run's config; return the key to name."""
    put, key = PLACES[place]
    put(config, PAYLOADS[payload].replace("MARKER", str(marker)))
    return key


def hostile_run(run_dir: Path, tmp_path: Path, place: str, payload: str, in_json: bool) -> tuple[Path, str]:
    """A copy of the run with the payload in its checkpoint's config, or (``in_json``) in its
    effective_config.json with no config in the checkpoint; returns the copy and the key to name."""
    copy = tmp_path / "run"
    shutil.copytree(run_dir, copy)
    state = load_checkpoint(copy / "ckpt.pt")
    if in_json:
        config = json.loads((copy / "effective_config.json").read_text())
        key = hide(config, place, payload, tmp_path / "pwned")
        (copy / "effective_config.json").write_text(json.dumps(config))
        del state["config"]
    else:
        key = hide(state["config"], place, payload, tmp_path / "pwned")
    save_checkpoint(state, copy / "ckpt.pt")
    return copy, key


def assert_refused(message: str, source: Path, key: str, tmp_path: Path) -> None:
    assert "\n" not in message
    assert str(source) in message and key in message and "interpolation" in message, message
    assert not (tmp_path / "pwned").exists()


def assert_cli_refused(proc, source: Path, key: str, tmp_path: Path) -> None:
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr and proc.stdout == ""
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1, proc.stderr
    assert_refused(errors[0], source, key, tmp_path)


@pytest.mark.parametrize("place,payload", CASES)
def test_load_refuses_an_interpolation_in_the_checkpoints_config(place, payload, run_dir, tmp_path):
    run, key = hostile_run(run_dir, tmp_path, place, payload, in_json=False)
    with pytest.raises(UserError) as err:
        tinygpt.load(run, device="cpu")
    assert_refused(str(err.value), run / "ckpt.pt", key, tmp_path)


@pytest.mark.parametrize(
    "place,payload", [("nested node", "oc.create"), ("inside a list", "custom resolver")]
)
def test_load_refuses_an_interpolation_in_effective_config_json(place, payload, run_dir, tmp_path):
    run, key = hostile_run(run_dir, tmp_path, place, payload, in_json=True)
    with pytest.raises(UserError) as err:
        tinygpt.load(run, device="cpu")
    assert_refused(str(err.value), run / "effective_config.json", key, tmp_path)


@pytest.mark.parametrize("in_json", [False, True], ids=["checkpoint", "effective_config.json"])
def test_generate_refuses_an_interpolation_in_one_line(in_json, run_dir, tmp_path):
    run, key = hostile_run(run_dir, tmp_path, "top-level value", "oc.create", in_json)
    proc = run_cli(f"run={run}", "prompt=a", module="tinygpt.generate", cwd=tmp_path)
    assert_cli_refused(proc, run / ("effective_config.json" if in_json else "ckpt.pt"), key, tmp_path)


def hostile_json(run_dir: Path, tmp_path: Path, place: str, payload: str) -> tuple[Path, str]:
    config = json.loads((run_dir / "effective_config.json").read_text())
    key = hide(config, place, payload, tmp_path / "pwned")
    path = tmp_path / "config.json"
    path.write_text(json.dumps(config))
    return path, key


@pytest.mark.parametrize(
    "place,payload",
    [("top-level value", "oc.create"), ("inside optim.betas", "oc.decode"), ("a dict key", "oc.create")],
)
def test_config_json_refuses_an_interpolation(place, payload, run_dir, tmp_path):
    path, key = hostile_json(run_dir, tmp_path, place, payload)
    with pytest.raises(UserError) as err:
        json_overrides(path)
    assert_refused(str(err.value), path, key, tmp_path)


def test_config_json_refuses_an_interpolation_in_a_flat_key(tmp_path):
    path = tmp_path / "flat.json"
    path.write_text(json.dumps({"n_layer": 2, "dropout": "${oc.create:{_target_: builtins.print}}"}))
    with pytest.raises(UserError, match=r"dropout .*interpolation"):
        json_overrides(path)


def test_training_from_a_hostile_config_json_stops_before_it_starts(run_dir, tmp_path):
    path, key = hostile_json(run_dir, tmp_path, "top-level value", "oc.create")
    proc = run_cli(f"config_json={path}", f"hydra.run.dir={tmp_path / 'r'}", cwd=tmp_path)
    assert_cli_refused(proc, path, key, tmp_path)
    assert not (tmp_path / "r").exists()
