"""End to end through the *stock* `yolo` CLI: train a plugin model for one epoch on a tiny generated dataset, then
reload its best.pt in fresh processes for val and predict (also with ULTRALYTICS_SAFE_LOAD=1) and export it to
ONNX with `yolo export`, checking ONNX Runtime against PyTorch. No user code imports yolo_necks: the start-up hook
does the work."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from conftest import YAML_DIR, run_cmd, run_py

pytestmark = pytest.mark.slow
ONNX_ATOL = 1e-3


@pytest.fixture(scope="module")
def trained(tiny_data, tmp_path_factory) -> Path:
    project = tmp_path_factory.mktemp("e2e")
    yolo = shutil.which("yolo")
    assert yolo, "the ultralytics `yolo` console script is not on PATH"
    r = run_cmd(
        [
            yolo, "train", f"model={YAML_DIR / 'yolov8-focal.yaml'}", f"data={tiny_data}", "epochs=1", "imgsz=64",
            "device=cpu", "batch=8", "workers=0", "plots=False", f"project={project}", "name=focal", "exist_ok=True",
        ],
        cwd=project,
    )
    assert r.returncode == 0, (r.stdout[-3000:], r.stderr[-3000:])
    assert "FocalModulation" in r.stdout + r.stderr  # ultralytics' own layer table names our block
    best = project / "focal" / "weights" / "best.pt"
    assert best.is_file()
    return best


RELOAD = """
import json, sys
from ultralytics import YOLO
best, data, image = sys.argv[1:4]
model = YOLO(best)
neck = type(model.model.model[9]).__name__
metrics = model.val(data=data, imgsz=64, batch=8, device="cpu", plots=False, workers=0, verbose=False)
results = model.predict(image, imgsz=64, device="cpu", verbose=False, save=False)
print(json.dumps({"neck": neck, "map50_95": float(metrics.box.map), "n_pred": len(results),
                  "plugin_imported_by_user": False}))
"""


@pytest.mark.parametrize("safe_load", ["0", "1"])
def test_reload_val_predict_in_fresh_process(trained, tiny_data, safe_load):
    image = next((tiny_data.parent / "images" / "val").iterdir())
    code = RELOAD.replace("best, data, image = sys.argv[1:4]", f"best, data, image = {str(trained)!r}, {str(tiny_data)!r}, {str(image)!r}")
    r = run_py(code, env={"ULTRALYTICS_SAFE_LOAD": safe_load})
    assert r.returncode == 0, (r.stdout[-3000:], r.stderr[-3000:])
    out = json.loads(r.stdout.strip().splitlines()[-1])
    assert out["neck"] == "FocalModulation"
    assert 0.0 <= out["map50_95"] <= 1.0
    assert out["n_pred"] == 1


def test_safe_load_refuses_without_plugin(trained):
    """The allow-list is what makes safe loading work: with the plugin switched off, ultralytics refuses."""
    r = run_py(
        f"from ultralytics import YOLO\nYOLO({str(trained)!r})",
        env={"ULTRALYTICS_SAFE_LOAD": "1", "YOLO_NECKS_AUTOLOAD": "0"},
    )
    assert r.returncode != 0
    assert "outside the supported Ultralytics checkpoint format" in r.stderr


COMPARE = """
import numpy as np, onnxruntime as ort, torch, sys
from ultralytics import YOLO
best, onnx_path = sys.argv[1:3]
model = YOLO(best).model.float().fuse().eval()
x = torch.rand(1, 3, 64, 64)
with torch.inference_mode():
    ref = model(x)[0].numpy()
out = ort.InferenceSession(onnx_path, providers=["CPUExecutionProvider"]).run(None, {"images": x.numpy()})[0]
print(float(np.abs(out - ref).max()))
"""


def test_stock_cli_exports_onnx_matching_pytorch(trained, tmp_path):
    work = tmp_path / "export"
    work.mkdir()
    pt = work / "best.pt"
    shutil.copy(trained, pt)
    r = run_cmd([shutil.which("yolo"), "export", f"model={pt}", "format=onnx", "imgsz=64", "device=cpu"], cwd=work)
    assert r.returncode == 0, (r.stdout[-3000:], r.stderr[-3000:])
    onnx_path = work / "best.onnx"
    assert onnx_path.is_file()
    code = COMPARE.replace("best, onnx_path = sys.argv[1:3]", f"best, onnx_path = {str(pt)!r}, {str(onnx_path)!r}")
    r = run_py(code)
    assert r.returncode == 0, r.stderr[-3000:]
    assert float(r.stdout.strip().splitlines()[-1]) < ONNX_ATOL


RELOAD_ALL = """
import json, sys, torch
from ultralytics import YOLO
out = {}
for path in sys.argv[1:]:
    model = YOLO(path).model.float().eval()
    torch.manual_seed(0)
    with torch.inference_mode():
        y = model(torch.rand(1, 3, 96, 96))[0]
    out[path] = [type(model.model[9]).__name__, float(y.double().sum())]
print(json.dumps(out))
"""


def test_every_plugin_model_reloads_with_safe_loading(tmp_path):
    """A checkpoint of every model YAML (as ultralytics writes it: fp16 module pickle) reloads in a fresh process
    under ULTRALYTICS_SAFE_LOAD=1 and computes what the original computes."""
    import torch
    from ultralytics import YOLO

    import yolo_necks

    yolo_necks.register()
    paths, expected = [], {}
    for yaml_path in sorted(YAML_DIR.glob("*.yaml")):
        name = yaml_path.name.replace("yolov8-", "yolov8n-").replace("yolo11-", "yolo11n-")
        model = YOLO(str(YAML_DIR / name))
        pt = tmp_path / name.replace(".yaml", ".pt")
        model.save(str(pt))
        ref = YOLO(str(pt)).model.float().eval()  # the same fp16-rounded weights, loaded in this process
        torch.manual_seed(0)
        with torch.inference_mode():
            y = ref(torch.rand(1, 3, 96, 96))[0]
        paths.append(str(pt))
        expected[str(pt)] = [type(ref.model[9]).__name__, float(y.double().sum())]
    code = RELOAD_ALL.replace("sys.argv[1:]", repr(paths))
    r = run_py(code, env={"ULTRALYTICS_SAFE_LOAD": "1"})
    assert r.returncode == 0, r.stderr[-3000:]
    got = json.loads(r.stdout.strip().splitlines()[-1])
    assert set(got) == set(expected)
    for path, (neck, total) in expected.items():
        assert got[path][0] == neck
        assert got[path][1] == pytest.approx(total, rel=1e-5, abs=1e-3)
