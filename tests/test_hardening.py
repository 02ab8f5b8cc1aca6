"""A new user's first day: switching datasets from the command line, everything checked before training, damaged
results files, and random mutations of the default spec (a Spec or a one-line NeckError, never another exception).
"""

from __future__ import annotations

import copy
import csv
import sys
from pathlib import Path
from unittest import mock

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

sys.path.insert(0, str(Path(__file__).resolve().parent))
from ablation_helpers import FakeTraining, make_tiny_dataset, tiny_spec  # noqa: E402

from yolo_necks.ablation.execute import run as run_module  # noqa: E402
from yolo_necks.ablation import runner  # noqa: E402
from yolo_necks.ablation.prepare.prepare import prepare  # noqa: E402
from yolo_necks.ablation.spec.keys import DEFAULT_SPEC  # noqa: E402
from yolo_necks.ablation.spec.overrides import parse_overrides  # noqa: E402
from yolo_necks.ablation.spec.load import load_spec  # noqa: E402
from yolo_necks.cli import main as cli_main  # noqa: E402
from yolo_necks.errors import NeckConfigError, NeckError  # noqa: E402

DIGITS_CPU = DEFAULT_SPEC["cpu"]["data_params"]
DIGITS_FULL = DEFAULT_SPEC["data_params"]


# ------------------------------------------------------------------------------------------- switching datasets
@pytest.mark.parametrize("device, section", [("cpu", DIGITS_CPU), ("0", DIGITS_FULL)])  # cpu: section applies or not
@pytest.mark.parametrize(
    "argv, expected",
    [
        ([], "SECTION"),  # the spec's dataset keeps its parameters
        (["data=digits"], "SECTION"),  # naming the same dataset is no switch
        (["data_params.n_train=50"], "SECTION+"),  # dotted: merges into the spec's parameters
        (["data_params={'n_train': 50}"], {"n_train": 50}),  # a mapping replaces
        (["data=neon-trees"], {}),  # another dataset: the digits parameters do not follow
        (["data=neon-trees", "data_params.tile=256"], {"tile": 256}),
        (["data=neon-trees", "data_params={'tile': 256}"], {"tile": 256}),
        (["data=digits", "data_params.n_train=50"], "SECTION+"),
        (["data=my.yaml"], {}),
    ],
)
def test_data_params_follow_the_dataset_and_cli_mappings_replace(argv, expected, device, section):
    over = parse_overrides([*argv, f"device={device}"])
    spec = load_spec(None, over)  # a data YAML is only looked up when the sweep resolves its dataset
    if expected == "SECTION":
        expected = section
    elif expected == "SECTION+":
        expected = {**section, "n_train": 50}
    assert spec.data_params == expected
    assert spec.reduced == ("cpu" if device == "cpu" else None)  # the rest of the cpu section still applies


def test_switching_to_neon_trees_from_the_command_line_validates(tmp_path):
    from yolo_necks.datasets import BUILTIN
    from yolo_necks.datasets._common import check_params

    spec = load_spec(None, parse_overrides(["data=neon-trees", "device=cpu"]))
    assert spec.data == "neon-trees" and check_params(BUILTIN["neon-trees"], spec.data_params)  # no n_train error


@pytest.mark.parametrize(
    "argv, epochs, reduced, imgsz",
    [
        (["cpu.epochs=5"], 5, "cpu", 128),  # dotted: merges into the spec's cpu section
        (["cpu={'epochs': 5}"], 5, None, 320),  # a mapping replaces the whole section
        (["cpu=None"], 30, None, 320),  # no cpu section: the full sweep on the CPU
        (["epochs=7"], 7, "cpu", 128),  # top-level overrides beat the section
    ],
)
def test_the_cpu_section_follows_the_same_rules(argv, epochs, reduced, imgsz):
    spec = load_spec(None, parse_overrides([*argv, "device=cpu"]))
    assert (spec.epochs, spec.reduced, spec.imgsz) == (epochs, reduced, imgsz)


def test_train_args_mapping_replaces_and_single_keys_merge():
    spec = load_spec(None, parse_overrides(["device=cpu", "lr0=0.01"]))
    assert spec.train_args["lr0"] == 0.01 and spec.train_args["optimizer"] == "AdamW"  # merged with the cpu section
    spec = load_spec(None, parse_overrides(["device=cpu", "train_args={'lr0': 0.01}"]))
    assert spec.train_args == {"lr0": 0.01}


# --------------------------------------------------------------------------------------- checked before training
def _no_cuda() -> bool:
    import torch

    return not torch.cuda.is_available()


@pytest.mark.parametrize(
    "overrides, message, missing",
    [
        ({"device": "gpu"}, "key 'device': 'gpu' is not a device; use cpu", False),
        ({"device": "0,,1"}, "key 'device': '0,,1' is not a device", False),
        ({"device": "99"}, "key 'device': '99'", True),
        ({"device": "cuda:99"}, "key 'device': 'cuda:99'", True),
        ({"speed.device": "99"}, "key 'speed.device': '99'", True),
        ({"speed.device": "tpu"}, "key 'speed.device': 'tpu' is not a device", False),
        ({"devices": [0, 99], "device": None}, "key 'devices'", True),
        ({"devices": ["cpu", 0], "device": None}, "mixes cpu and GPUs", False),
    ],
)
def test_a_bad_device_fails_before_any_run(spec_file, overrides, message, missing):
    fake = FakeTraining()
    path = spec_file(**{k: v for k, v in overrides.items() if "." not in k})
    with mock.patch.object(run_module, "execute_run", fake):
        with pytest.raises(NeckConfigError) as e:
            runner.run_sweep(path, **{k: v for k, v in overrides.items() if "." in k})
    msg = str(e.value)
    assert message in msg and "\n" not in msg and path in msg
    if missing:  # a GPU this machine does not have: no CUDA at all, or not that index
        assert ("asks for a CUDA GPU but this machine has none" if _no_cuda() else "but this machine has") in msg
    assert fake.calls == [] and not (Path(path).parent / "runs" / "tiny" / "results.csv").exists()


def test_an_image_size_off_the_stride_is_rounded_up_with_a_warning(spec_file, logged):
    path = spec_file(imgsz=70, seeds=[0])
    with mock.patch.object(run_module, "execute_run", FakeTraining()):
        df = runner.run_sweep(path)
    out = "\n".join(logged)
    assert "key 'imgsz': 70 is not a multiple of the models' largest stride 32; using 96" in out
    assert list(df["imgsz"]) == [96, 96] and set(df["status"]) == {"ok"}


def test_a_batch_larger_than_the_training_set_fails_before_training(spec_file):
    with pytest.raises(NeckConfigError, match=r"key 'batch': 32 is larger than the training set \(8 images"):
        runner.run_sweep(spec_file(batch=32))


def test_every_arm_runs_forward_at_imgsz_before_training(spec_file):
    """A block that builds (ultralytics' stride pass runs at 256 px) but fails at the sweep's 64 px."""
    import torch.nn as nn
    from ultralytics.nn.modules import Conv

    import yolo_necks

    class NeedsFourByFour(nn.Module):
        def __init__(self, c1: int, c2: int):
            super().__init__()
            self.cv = Conv(c1, c2, 1)

        def forward(self, x):
            if min(x.shape[-2:]) < 4:
                raise RuntimeError(f"map {tuple(x.shape[-2:])} is smaller than 4x4")
            return self.cv(x)

    yolo_necks.register_block(NeedsFourByFour)
    try:
        arms = [{"name": "sppf", "block": "SPPF", "args": [5], "baseline": True},
                {"name": "small", "block": "NeedsFourByFour"}]
        with pytest.raises(NeckConfigError, match=r"arm 'small': forward pass at imgsz 64 fails on the CPU: "
                                                  r"RuntimeError: map \(2, 2\) is smaller than 4x4"):
            runner.run_sweep(spec_file(arms=arms))
    finally:
        from yolo_necks.registry import unregister_block

        unregister_block("NeedsFourByFour")


# ------------------------------------------------------------------------------------------------ damaged files
def test_a_damaged_results_csv_is_reported_once_kept_in_the_file_and_out_of_the_summaries(spec_file, capsys,
                                                                                         logged):
    path = spec_file(seeds=[0, 1])
    sweep = Path(path).parent / "runs" / "tiny"
    with mock.patch.object(run_module, "execute_run", FakeTraining()):
        runner.run_sweep(path)
    results = sweep / "results.csv"
    lines = results.read_text().splitlines(keepends=True)
    garbage = ["\x00\x00\x00\x00 disk full\n", 'spp,1,"truncated cell\n']
    damaged = lines[:3] + [garbage[0]] + lines[3:] + [garbage[1].rstrip("\n")]  # one inside, one cut at the end
    results.write_text("".join(damaged))
    capsys.readouterr()
    logged.clear()
    assert cli_main(["report", str(sweep)]) == 0
    assert "unreadable line(s) (4, 7: truncated or not a results row)" in capsys.readouterr().out  # summary note
    assert sum("unreadable line(s) (4, 7:" in m for m in logged) == 1  # warned once
    s = {r["arm"]: r for r in csv.DictReader(open(sweep / "summary.csv"))}
    assert s["spp"]["n_runs"] == "2" and s["sppf"]["n_runs"] == "2"  # all 4 good rows, no garbage row
    # resume: nothing to run, every good row counts as done; the damaged lines stay as they were
    fake = FakeTraining()
    with mock.patch.object(run_module, "execute_run", fake):
        runner.run_sweep(path, seeds=[0, 1, 2])
    assert sorted(fake.calls) == [("spp", 2), ("sppf", 2)]
    text = results.read_text()
    assert garbage[0] in text and garbage[1] in text
    assert len(list(csv.DictReader(open(sweep / "summary.csv")))) == 2
    assert "unreadable line(s)" in (sweep / "summary.md").read_text()


# -------------------------------------------------------------------------------------------------- spec fuzzing
VALUES = st.sampled_from([None, True, False, -1, 0, 1, 3, 2.5, float("nan"), "", "x", "auto", "cpu", "0,1", "cuda:9",
                          [], [0], [1, "a"], [[5, 9]], {}, {"a": 1}, {"min": 2}, "yolov8.yaml", "SPPF", 10**12,
                          "../../x.yaml", "a b", {"name": "z", "block": "SPPF"}])


def _paths(d, prefix=()):
    """Every key path of a nested spec mapping (list items by index)."""
    for k, v in d.items() if isinstance(d, dict) else enumerate(d):
        yield (*prefix, k)
        if isinstance(v, (dict, list)) and v:
            yield from _paths(v, (*prefix, k))


SPEC_PATHS = list(_paths(DEFAULT_SPEC)) + [("mlflow",), ("mlflow_experiment",)]  # keys the default spec leaves out


def _mutate(spec: dict, path: tuple, value, action: str) -> dict:
    out = copy.deepcopy(spec)
    node = out
    for k in path[:-1]:
        node = node[k]
    if action == "delete" and isinstance(node, dict):
        node.pop(path[-1], None)
    elif action == "add" and isinstance(node, dict):
        node[f"{path[-1]}_typo"] = value
    else:
        node[path[-1]] = value
    return out


@settings(max_examples=300, deadline=None, derandomize=True, suppress_health_check=list(HealthCheck))
@given(mutations=st.lists(st.tuples(st.sampled_from(SPEC_PATHS), VALUES, st.sampled_from(["set", "delete", "add"])),
                          min_size=1, max_size=3))
def test_mutated_default_specs_give_a_spec_or_a_one_line_error(mutations):
    spec = copy.deepcopy(DEFAULT_SPEC)
    for path, value, action in mutations:
        try:
            spec = _mutate(spec, path, value, action)
        except (KeyError, IndexError, TypeError):  # an earlier mutation removed or replaced this path
            continue
    try:
        load_spec(spec, {"device": "cpu"})
    except (NeckConfigError, NeckError) as e:
        assert "\n" not in str(e) and str(e)


@settings(max_examples=150, deadline=None, derandomize=True, suppress_health_check=list(HealthCheck))
@given(key=st.sampled_from([".".join(map(str, p)) for p in SPEC_PATHS if not isinstance(p[-1], int)] +
                           ["epochs", "seeds.min", "arms", "lr0", "speed.x", "x.y.z", "cpu.cpu"]),
       value=st.sampled_from(["1", "-1", "0", "None", "[]", "{}", "'a'", "auto", "1e9", "[0, 0]", "{'x': 1}",
                              "nan", "cuda:1", "__import__('os')"]))
def test_mutated_command_lines_give_a_spec_or_a_one_line_error(key, value):
    try:
        load_spec(None, parse_overrides([f"{key}={value}", "device=cpu"]))
    except (NeckConfigError, NeckError) as e:
        assert "\n" not in str(e) and str(e)


@settings(max_examples=12, deadline=None, derandomize=True, suppress_health_check=list(HealthCheck))
@given(mutations=st.lists(st.tuples(st.sampled_from(["epochs", "imgsz", "batch", "seeds", "model", "scale",
                                                     "replace", "data_params", "arms", "pretrained", "workers"]),
                                    VALUES), min_size=1, max_size=2))
def test_mutated_tiny_specs_prepare_or_fail_with_one_line(mutations, tmp_path_factory):
    """The whole preparation (dataset, arms built and run forward, batch, checkpoint) on mutated tiny specs."""
    data = make_tiny_dataset(tmp_path_factory.mktemp("fuzz"), n_train=4, n_val=2)
    spec = tiny_spec(data, tmp_path_factory.mktemp("runs"))
    for key, value in mutations:
        spec[key] = copy.deepcopy(value)
    try:
        prepare(spec)
    except (NeckConfigError, NeckError) as e:
        assert "\n" not in str(e) and str(e)


def test_the_default_yaml_round_trips_through_the_effective_spec(tmp_path):
    spec = load_spec(None, {"device": "cpu", "project": str(tmp_path)})
    again = load_spec(yaml.safe_load(yaml.safe_dump(spec.effective)), {"device": "cpu"})
    assert (again.epochs, again.imgsz, again.data_params, again.execution) == (
        spec.epochs, spec.imgsz, spec.data_params, spec.execution)


@pytest.mark.parametrize("path", sorted((Path(__file__).resolve().parents[1] / "ablations").glob("*.yaml")),
                         ids=lambda p: p.name)
def test_every_shipped_spec_loads(path):
    for device in ("cpu", "0"):
        spec = load_spec(path, {"device": device})
        assert spec.arms and spec.baseline is not None
