"""Every model YAML builds at every scale and runs forward (at 128 px and 96x160 at every scale, where the channels
and depths of the scale are what is checked, and at 320 and 640 px at scale n), reports info(), fuses, and exports
to ONNX with outputs matching PyTorch."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
from conftest import YAML_DIR
from ultralytics.nn.tasks import DetectionModel

import yolo_necks

YAMLS = sorted(p.name for p in YAML_DIR.glob("*.yaml"))
NECKS = {  # file -> {layer index: the module studied there}
    "yolov8-sppf.yaml": {9: "SPPF"},
    "yolov8-spp.yaml": {9: "SPP"},
    "yolov8-focal.yaml": {9: "FocalModulation"},
    "yolov8-dyca.yaml": {9: "DyCAConv"},
    "yolov8-sk.yaml": {9: "SKConv"},
    "yolov8-pyramid.yaml": {9: "PyramidPool"},
    "yolo11-focal.yaml": {9: "FocalModulation"},
    "yolov8-dyca-neck.yaml": {16: "DyCAConv", 20: "DyCAConv", 24: "DyCAConv"},  # in front of the head's P3/P4/P5
}
ONNX_ATOL = 1e-3  # fp32 ONNX Runtime vs PyTorch on the raw Detect output (boxes in pixels, class scores in [0, 1])


@pytest.fixture(autouse=True, scope="module")
def _registered():
    yolo_necks.register()


def scaled(name: str, scale: str) -> str:
    stem = name.replace("yolov8-", f"yolov8{scale}-").replace("yolo11-", f"yolo11{scale}-")
    return str(YAML_DIR / stem)


def test_every_yaml_is_listed():
    assert set(YAMLS) == set(NECKS)


@pytest.mark.parametrize("scale", list("nsmlx"))
@pytest.mark.parametrize("name", YAMLS)
def test_builds_and_runs_at_every_scale(name, scale):
    model = DetectionModel(scaled(name, scale), verbose=False).eval()
    assert {i: type(model.model[i]).__name__ for i in NECKS[name]} == NECKS[name]
    assert model.yaml["scale"] == scale
    sizes = [(128, 128), (96, 160)] + ([(320, 320), (640, 640)] if scale == "n" else [])
    with torch.inference_mode():
        for h, w in sizes:
            y = model(torch.rand(1, 3, h, w))
            pred = y[0] if isinstance(y, (list, tuple)) else y
            anchors = sum((h // s) * (w // s) for s in (8, 16, 32))
            assert pred.shape == (1, 4 + 80, anchors)
            assert torch.isfinite(pred).all()


@pytest.mark.parametrize("name", YAMLS)
def test_info_fuse_and_onnx_export(name, tmp_path):
    model = DetectionModel(scaled(name, "n"), verbose=False).eval()
    n_layers, n_params, _, gflops = model.info(verbose=True, imgsz=320)
    assert n_params == sum(p.numel() for p in model.parameters())
    assert gflops > 0
    x = torch.rand(1, 3, 160, 160)
    fused = copy.deepcopy(model).fuse(verbose=False)
    with torch.no_grad():
        before = model(x)[0]
        after = fused(x)[0]
    for i in NECKS[name]:
        assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in fused.model[i].modules()), "BN left unfused"
    torch.testing.assert_close(after, before, atol=1e-3, rtol=1e-3)

    import onnxruntime as ort

    path = tmp_path / "model.onnx"
    export_onnx(fused, x, path)
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    (out,) = sess.run(None, {"images": x.numpy()})
    np.testing.assert_allclose(out, after.numpy(), atol=ONNX_ATOL, rtol=1e-3)


def export_onnx(model, x, path):
    """Export the way ultralytics' exporter does for ONNX (Detect in export mode, opset 17, legacy exporter)."""
    from ultralytics.nn.modules import Detect

    for m in model.modules():
        if isinstance(m, Detect):
            m.export, m.format = True, "onnx"
    try:
        kwargs = {"dynamo": False} if "dynamo" in torch.onnx.export.__code__.co_varnames else {}
        torch.onnx.export(model, x, str(path), opset_version=17, input_names=["images"], output_names=["output0"], **kwargs)
    finally:
        for m in model.modules():
            if isinstance(m, Detect):
                m.export = False
