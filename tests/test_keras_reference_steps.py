"""`python -m simclr_mura.benchmarks.keras_reference_steps`: the backend-agnostic reference-model timing for GPU
machines without TensorFlow."""
import json

import pytest

from simclr_mura.benchmarks import keras_reference_steps


def _module():
  return keras_reference_steps


@pytest.mark.slow  # trains a model
def test_times_a_scaled_setting_and_writes_json(tmp_path):
  out = tmp_path / "ref.json"
  assert _module().main([f"--out={out}", "--settings=resnet50_b64_224", "--precisions=float32", "--scale=0.15",
                         "--steps=2", "--warmup=1"]) == 0
  result = json.loads(out.read_text())
  assert result["machine"]["backend"] == "tensorflow"
  (run,) = result["runs"]
  assert (run["setting"], run["model"], run["precision"]) == ("resnet50_b64_224", "ResNet50", "float32")
  assert (run["image_size"], run["batch"], run["steps"]) == (33, 9, 2)
  assert run["images_per_sec"] == pytest.approx(run["batch"] / run["median_step_s"])
  low, high = run["spread_images_per_sec"]
  assert 0 < low <= run["images_per_sec"] <= high


def test_out_of_memory_is_recorded_and_the_run_goes_on(tmp_path, monkeypatch):
  module = _module()
  calls = []

  def fake(model_name, size, batch, precision, *_):
    calls.append((model_name, batch, precision))
    if batch == 512:
      raise RuntimeError("RESOURCE_EXHAUSTED: Out of memory while trying to allocate 38.21GiB")
    return {"model": model_name, "image_size": size, "batch": batch, "precision": precision, "warmup_s": 1.0,
            "median_step_s": 0.5, "images_per_sec": batch / 0.5, "spread_images_per_sec": [1, 2], "steps": 1}

  monkeypatch.setattr(module, "time_setting", fake)
  out = tmp_path / "ref.json"
  module.main([f"--out={out}", "--settings=resnet50_b512_224,resnet50_b256_224", "--precisions=float32"])
  runs = json.loads(out.read_text())["runs"]
  assert [r["setting"] for r in runs] == ["resnet50_b512_224", "resnet50_b256_224"]
  assert runs[0]["error"].startswith("out of memory: RESOURCE_EXHAUSTED")
  assert runs[1]["images_per_sec"] == 512.0
  # an out-of-memory last setting is on disk too
  module.main([f"--out={out}", "--settings=resnet50_b512_224", "--precisions=float32"])
  (only,) = json.loads(out.read_text())["runs"]
  assert only["setting"] == "resnet50_b512_224" and "error" in only


def test_other_errors_are_not_swallowed(tmp_path, monkeypatch):
  module = _module()

  def broken(*_):
    raise ValueError("shape mismatch")

  monkeypatch.setattr(module, "time_setting", broken)
  with pytest.raises(ValueError, match="shape mismatch"):
    module.main([f"--out={tmp_path / 'x.json'}", "--settings=resnet50_b64_224", "--precisions=float32"])


def test_unknown_setting_is_refused(tmp_path, capsys):
  with pytest.raises(SystemExit):
    _module().main([f"--out={tmp_path / 'x.json'}", "--settings=vgg16"])
  assert "unknown --settings ['vgg16']" in capsys.readouterr().err
