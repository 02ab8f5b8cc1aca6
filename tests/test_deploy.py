"""Deployment formats (``yolo_necks.deploy``, ``yolo-necks bench --formats``): every block exports with ultralytics'
exporter to ONNX (static and dynamic batch/height/width) and OpenVINO and computes there what PyTorch computes.

Models: every shipped YAML with one of our blocks at the SPPF site, and yolo26n with all four inserted at p3, p4, p5
(``yolo_necks.edit``), one after the other (one model: an export costs per model, and each block still sits at each
of the three strides with the channels it has there, in front of the end-to-end head). Nano scale, nc=4, 64 px.
yolo26n is exported with its NMS-free head (output ``(N, k, 6)``). Each model is built once and exported once per
format (module-scoped cache).

Random weights are conditioned first (:func:`condition`): BatchNorm statistics from a batch of noise, then each layer's
output scaled to unit RMS over the test sizes (LSUV-like, through the last BatchNorm or conv the layer runs), then the
head's last convs to unit-std logits with zero bias. Without it the signal explodes through multiplicative blocks
(FocalModulation squares its input's scale: feature std ~1e35 at p5 of yolov8n with blocks at p3-p5), class scores
saturate at exactly 1.0, and the ranking of the NMS-free head is a tie that any runtime may break its own way. With
it, features stay O(1) and the comparison is of the blocks, not of overflow. Measured (``deploy.PARITY_TOL`` is 1e-3):
``max_rel`` <= ~1e-5 static (ONNX, OpenVINO), <= ~6e-5 dynamic ONNX. Scaling the block's output by 1.1 must fail
parity, so the comparison sees the block.
"""

from __future__ import annotations

import copy
import math

import numpy as np
import pytest
import torch
import torch.nn as nn
import yaml
from conftest import YAML_DIR
from export_helpers import CumMaxNeck  # a block that cannot export

import yolo_necks
from yolo_necks import deploy
from yolo_necks.errors import NeckConfigError

pytestmark = pytest.mark.usefixtures("one_thread")

IMGSZ = 64
DYNAMIC_SIZES = ((64, 64), (64, 96), (96, 64))  # batch 2 at the export size, then wider, then taller
BLOCKS = ("FocalModulation", "DyCAConv", "SKConv", "PyramidPool")
VARIANTS = ("onnx", "onnx-dynamic", "openvino")


def _site_yamls() -> list[str]:
    """Shipped YAMLs whose layer 9 (the SPPF site) is one of our blocks."""
    names = []
    for p in sorted(YAML_DIR.glob("*.yaml")):
        row = yaml.safe_load(p.read_text())["backbone"][9]
        if row[2] in BLOCKS:
            names.append(p.name)
    return names


SITE_YAMLS = _site_yamls()
INSERTED = ["yolo26n+" + "+".join(f"{b}@p3,p4,p5" for b in BLOCKS)]
MODELS = SITE_YAMLS + INSERTED


# ------------------------------------------------------------------------------------------------ conditioning
def condition(net: nn.Module, sizes=DYNAMIC_SIZES, seed: int = 0) -> None:
    """See the module docstring: BatchNorm from noise, unit-RMS layer outputs over ``sizes``, unit-std logits."""
    g = torch.Generator().manual_seed(seed)
    xs = [torch.rand(2, 3, h, w, generator=g) for h, w in sizes]
    bns = [m for m in net.modules() if isinstance(m, nn.BatchNorm2d)]
    for m in bns:
        m.momentum = 1.0
    net.train()
    with torch.no_grad():
        net(torch.rand(4, 3, IMGSZ, IMGSZ, generator=g))
    net.eval()
    for m in bns:
        m.momentum = 0.03
    layers = list(net.model)
    for layer in layers[:-1]:
        ran, rms = [], []
        hooks = [m.register_forward_hook(lambda mod, i, o: ran.append(mod)) for m in layer.modules()
                 if isinstance(m, (nn.BatchNorm2d, nn.Conv2d))]
        hooks.append(layer.register_forward_hook(lambda mod, i, o: rms.append(o.float().pow(2).mean().item())))
        with torch.no_grad():
            for x in xs:
                net(x)
        for h in hooks:
            h.remove()
        if ran and rms:
            s = (sum(rms) / len(rms)) ** 0.5
            with torch.no_grad():
                ran[-1].weight /= s
                if ran[-1].bias is not None:
                    ran[-1].bias /= s
    finals = [m for n, m in layers[-1].named_modules()
              if type(m) is nn.Conv2d and not n.startswith("dfl") and not n.endswith(".conv")]
    std: dict = {m: [] for m in finals}
    hooks = [m.register_forward_hook(lambda mod, i, o: std[mod].append(o.std().item())) for m in finals]
    with torch.no_grad():
        for x in xs:
            net(x)
    for h in hooks:
        h.remove()
    with torch.no_grad():
        for m in finals:
            m.weight /= max(std[m])
            if m.bias is not None:
                m.bias.zero_()


# ------------------------------------------------------------------------------------------------------ fixtures
@pytest.fixture(scope="module")
def runtimes():
    pytest.importorskip("onnxruntime")
    pytest.importorskip("openvino")
    pytest.importorskip("onnxslim")


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    """``get(name) -> (YOLO, index of the first block layer)``, each built and conditioned once."""
    from ultralytics import YOLO

    yolo_necks.register()
    root = tmp_path_factory.mktemp("deploy-yamls")
    cache: dict = {}

    def get(name: str):
        if name not in cache:
            if name in SITE_YAMLS:
                d = yaml.safe_load((YAML_DIR / name).read_text())
                stem = name.replace("yolov8-", "yolov8n-").replace("yolo11-", "yolo11n-")[:-5]
                block_at = 9
            else:  # each block after p3, p4, p5; several: one after the other (the next reads the previous)
                base, *edits = name.split("+")
                d, block_at = f"{base}.yaml", None
                for edit in edits:
                    result = yolo_necks.edit_with_map(d, insert=edit)
                    d = result.model
                    block_at = result.inserted[0] if block_at is None else result.index_map[block_at]
                stem = f"{base}-" + "-".join(e.split("@")[0] for e in edits)
            d["nc"] = 4
            path = root / f"{stem}.yaml"
            path.write_text(yaml.safe_dump(d, sort_keys=False))
            torch.manual_seed(0)
            model = YOLO(str(path))
            condition(model.model)
            cache[name] = (model, block_at)
        return cache[name]

    return get


@pytest.fixture(scope="module")
def exported(models, runtimes, tmp_path_factory):
    """``get(name, variant) -> (ExportResult, Runner | None)``, each exported and loaded once. ``get.requirements``
    records each ``check_requirements`` call of ultralytics' exporter and whether the installed packages met it
    (checked without installing)."""
    from ultralytics.engine import exporter

    root = tmp_path_factory.mktemp("deploy-out")
    cache: dict = {}
    real = exporter.check_requirements
    seen: list = []

    def spy(requirements, *args, **kwargs):
        met = real(requirements, install=False)
        seen.append((requirements, met))
        return met

    def get(name: str, variant: str):
        key = (name, variant)
        if key not in cache:
            fmt, dynamic = variant.split("-")[0], variant.endswith("-dynamic")
            res = deploy.export(models(name)[0], fmt, IMGSZ, dynamic=dynamic, out_dir=root / f"m{MODELS.index(name)}")
            cache[key] = (res, deploy.load_runner(res.path, fmt, threads=1) if res.ok else None)
        return cache[key]

    get.requirements = seen
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(exporter, "check_requirements", spy)
        yield get


def _inputs(dynamic: bool) -> list[np.ndarray]:
    if not dynamic:
        return deploy.sample_inputs(IMGSZ, n=2)
    return [deploy.sample_inputs(hw, batch=2 if i == 0 else 1, n=1, seed=i)[0] for i, hw in enumerate(DYNAMIC_SIZES)]


# ------------------------------------------------------------------------------------------ every block, exported
def test_models_cover_every_block_at_the_sppf_site_and_at_p3_p5():
    assert {"yolov8-focal.yaml", "yolov8-dyca.yaml", "yolov8-sk.yaml", "yolov8-pyramid.yaml",
            "yolo11-focal.yaml"} <= set(SITE_YAMLS)
    assert not {"yolov8-sppf.yaml", "yolov8-spp.yaml"} & set(SITE_YAMLS)  # ultralytics' own modules


@pytest.mark.slow
@pytest.mark.parametrize("variant", VARIANTS)
@pytest.mark.parametrize("name", MODELS)
def test_export_matches_pytorch(name, variant, models, exported):
    model, block_at = models(name)
    res, runner = exported(name, variant)
    assert res.ok, res.line()
    assert res.export_s > 0 and res.path and res.imgsz == (IMGSZ, IMGSZ) and res.dynamic == variant.endswith("dynamic")
    yolo26 = name.startswith("yolo26")
    assert res.end2end == runner.end2end == yolo26  # YOLO26: the NMS-free head
    assert runner.runtime == ("openvino" if variant == "openvino" else "onnxruntime") and runner.version
    inputs = _inputs(res.dynamic)
    outs = [runner(x)[0] for x in inputs]
    for x, out in zip(inputs, outs):  # raw (N, 4 + nc, anchors), or NMS-free (N, k, 6) rows
        anchors = sum((x.shape[2] // s) * (x.shape[3] // s) for s in (8, 16, 32))
        assert out.shape == ((x.shape[0], min(300, 84), 6) if yolo26 else (x.shape[0], 4 + 4, anchors))
    p = deploy.parity(model, runner, inputs)
    assert p.ok and p.max_rel <= deploy.PARITY_TOL and math.isfinite(p.max_abs), p
    if variant == "onnx":  # the comparison sees the block: its output x1.1 in PyTorch is beyond the tolerance
        perturbed = copy.deepcopy(model.model)
        perturbed.model[block_at].register_forward_hook(lambda m, i, o: o * 1.1)
        assert not deploy.parity(perturbed, runner, inputs).ok


def test_an_export_keeps_the_callers_thread_count(models, runtimes, tmp_path, monkeypatch):
    """ultralytics' exporter sets torch to its own NUM_THREADS (min(8, CPUs - 1)): an export leaves torch at the
    caller's count (a timing session or the bench goes on at the threads it chose)."""
    from ultralytics.utils import torch_utils

    monkeypatch.setattr(torch_utils, "NUM_THREADS", 3)  # what a machine with 4 CPUs gives
    threads = torch.get_num_threads()  # 1: the module's one_thread fixture
    res = deploy.export(models("yolov8-pyramid.yaml")[0], "onnx", IMGSZ, out_dir=tmp_path)
    assert res.ok, res.line()
    assert torch.get_num_threads() == threads and torch_utils.NUM_THREADS == 3


def test_the_deploy_extra_meets_the_exporters_requirements(exported):
    """What ultralytics' exporter checks before ONNX and OpenVINO exports is installed by the extra: it would
    otherwise try to pip-install at run time (offline: warn and go on with what is there)."""
    for variant in ("onnx", "openvino"):
        assert exported(MODELS[0], variant)[0].ok
    assert exported.requirements and all(met for _, met in exported.requirements), exported.requirements
    wanted = " ".join(str(r) for r, _ in exported.requirements)
    assert "onnx" in wanted and "onnxslim" in wanted and "openvino" in wanted


def test_parity_of_nms_free_rows_allows_swapped_near_ties():
    """Two rows whose scores differ by less than the tolerance may come back in either order."""
    ref = np.array([[[0, 0, 10, 10, 0.9, 1], [5, 5, 20, 20, 0.5000004, 2], [1, 1, 9, 9, 0.5, 0], [2, 2, 4, 4, 0.1, 3]]],
                   dtype=np.float32)
    swapped = ref[:, [0, 2, 1, 3]].copy()

    class Fixed:
        end2end = True

        def __init__(self, out):
            self.out = out

        def __call__(self, x):
            return [self.out]

    class Head(nn.Module):  # stands in for a fused model whose eval output is the NMS-free rows
        def forward(self, x):
            return torch.from_numpy(ref)

    x = np.zeros((1, 3, 8, 8), np.float32)
    assert deploy.parity(Head(), Fixed(swapped), [x]).ok
    wrong = swapped.copy()
    wrong[0, 1, 5] = 3  # a class PyTorch does not give that box
    assert deploy.parity(Head(), Fixed(wrong), [x]) == (math.inf, math.inf, False)
    moved = ref.copy()
    moved[0, 0, :4] += 0.5  # a box 0.5 px off at scale 20: 2.5e-2 relative
    p = deploy.parity(Head(), Fixed(moved), [x])
    assert not p.ok and p.max_abs == pytest.approx(0.5) and p.max_rel == pytest.approx(0.5 / 20)
    nan = ref.copy()
    nan[0, 3, 0] = np.nan
    assert not deploy.parity(Head(), Fixed(nan), [x]).ok


# ------------------------------------------------------------------------------------- a block that cannot export
def test_unexportable_block_gives_a_one_line_result_and_the_next_export_works(models, exported, tmp_path, logged):
    from ultralytics import YOLO
    from ultralytics.utils import LOGGER

    yolo_necks.register_block(CumMaxNeck)
    try:
        d = yolo_necks.edit("yolov8n.yaml", replace="CumMaxNeck@sppf")
        d["nc"] = 4
        (tmp_path / "yolov8n-cummax.yaml").write_text(yaml.safe_dump(d, sort_keys=False))
        model = YOLO(str(tmp_path / "yolov8n-cummax.yaml"))
        level = LOGGER.level
        for fmt in ("onnx", "openvino"):
            res = deploy.export(model, fmt, IMGSZ, out_dir=tmp_path / "out")
            assert not res.ok and res.path is None and res.export_s > 0
            assert (res.op, res.layer, res.block) == ("aten::cummax", "model.9", "CumMaxNeck"), res
            assert "\n" not in res.reason and len(res.reason) <= 300 and "cummax" in res.reason
            line = res.line()
            assert "\n" not in line and line.startswith(f"{fmt}: CumMaxNeck (model.9): aten::cummax: ")
            assert LOGGER.level == level and not hasattr(model.model, "pt_path")
    finally:
        yolo_necks.unregister_block("CumMaxNeck")
    res, runner = exported(SITE_YAMLS[0], "onnx")  # the other arms go on
    assert res.ok and runner(deploy.sample_inputs(IMGSZ, n=1)[0])[0].shape[0] == 1


@pytest.mark.parametrize("error", [MemoryError(), OSError(28, "No space left on device"),
                                   RuntimeError("CUDA error: an illegal memory access was encountered")])
def test_machine_failures_keep_their_type(error, models, monkeypatch, tmp_path):
    from ultralytics.engine.exporter import Exporter

    def fail(self, model=None):
        raise error

    monkeypatch.setattr(Exporter, "__call__", fail)
    with pytest.raises(type(error)) as info:
        deploy.export(models(SITE_YAMLS[0])[0], "onnx", IMGSZ, out_dir=tmp_path)
    assert info.value is error


def test_failing_op_is_read_from_each_runtime_message():
    assert deploy.failing_op("Exporting the operator 'aten::fft_fft2' to ONNX opset version 18 is not "
                             "supported. Please feel free to request support") == "aten::fft_fft2"
    assert deploy.failing_op("Check 'false' failed at src/x.cpp:151:\nFrontEnd API failed with OpConversionFailure: "
                             "Model wasn't fully converted. Summary:\n-- No conversion rule found for operations: "
                             "aten::i0") == "aten::i0"
    assert deploy.failing_op("Could not find an implementation for Einsum(12) node with name '/m/Einsum'") == "Einsum"
    assert deploy.failing_op("shape mismatch in Concat") == ""


# ----------------------------------------------------------------------------------------------- check_formats
def test_check_formats_normalises_and_names_what_is_missing(monkeypatch):
    import importlib.util

    assert deploy.check_formats("ONNX, ov,torch,onnx") == ["onnx", "openvino", "torch"]
    assert deploy.check_formats(["torch"]) == ["torch"]
    with pytest.raises(NeckConfigError, match=r"unknown deployment format 'tflite' \(known: torch, onnx, openvino"):
        deploy.check_formats("tflite")
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "openvino" else real(name, *a))
    with pytest.raises(NeckConfigError) as info:
        deploy.check_formats(["torch", "openvino"])
    msg = str(info.value)
    assert "\n" not in msg and "'openvino'" in msg and 'pip install "yolo-necks[deploy]"' in msg
    assert deploy.check_formats("torch,onnx") == ["torch", "onnx"]
    if not torch.cuda.is_available():
        monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: object())  # as if TensorRT were installed
        with pytest.raises(NeckConfigError, match="needs an NVIDIA GPU"):
            deploy.check_formats("engine")


def test_bench_formats_missing_runtime_is_one_line(monkeypatch, tmp_path, capsys):
    import importlib.util

    from yolo_necks.cli import main

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "onnxruntime" else real(name, *a))
    assert main(["bench", "--quick", "--formats", "onnx", "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "onnxruntime" in err[0] and "yolo-necks[deploy]" in err[0]


# ---------------------------------------------------------------------------------------- bench --formats, Fast*
@pytest.mark.slow
def test_bench_formats_rows_and_fast_paths_export_identically(runtimes, tmp_path):
    """``bench --formats``: a row per module and runtime next to the torch rows; FastSPPF/FastSPP (the exact fast
    paths of accelerate()) give bit-identical outputs to SPPF/SPP in each runtime, and match PyTorch."""
    import pandas as pd

    from yolo_necks.cli import main

    argv = ["bench", "--quick", "--formats", "onnx,openvino", "--blocks", "PyramidPool", "--layouts", "contiguous",
            "--shapes", "64x8", "--repeats", "3", "--warmup", "1", "--no-model", "--threads", "1", "--out",
            str(tmp_path)]
    assert main(argv) == 0
    df = pd.read_csv(tmp_path / "bench.csv", keep_default_na=False)
    modules = {"SPPF", "SPP", "FastSPPF", "FastSPP", "PyramidPool"}
    assert set(df["format"]) == {"torch", "onnx", "openvino"}
    for fmt in ("onnx", "openvino"):
        rows = df[df["format"] == fmt]
        assert set(rows["module"]) == modules and (rows["status"] == "").all()
        assert (rows["median_ms"].astype(float) > 0).all() and (rows["export_s"].astype(float) > 0).all()
        assert (rows["max_abs_diff_vs_torch"].astype(float) < 1e-4).all()
        assert rows["runtime"].str.startswith("onnxruntime " if fmt == "onnx" else "openvino ").all()
        fast = rows[rows["module"].isin(["FastSPPF", "FastSPP"])]
        assert list(fast["ref"]) == ["SPPF", "SPP"] and (fast["exact_vs_ref"] == "yes").all()
        assert (fast["max_abs_diff_vs_ref"].astype(float) == 0).all()
    torch_rows = df[df["format"] == "torch"]
    assert set(torch_rows["module"]) == modules and torch_rows["runtime"].str.startswith("torch ").all()
    md = (tmp_path / "bench.md").read_text()
    assert "| onnx ms | openvino ms |" in md and "| vs torch |" in md
