"""The benchmark CLI in its tiny --quick configuration: JSON keys and types, not speed."""
import json
import os
import subprocess
import sys

import pytest

from simclr_mura import benchmark, cpu_defaults
from simclr_mura.benchmarks import common
from simclr_mura.benchmarks.train_step import GPU_SETTINGS, parse_setting

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MACHINE_KEYS = {"cpu_model": str, "cpu_count": int, "tensorflow": str, "keras": str}


def _number(x) -> bool:
  return isinstance(x, (int, float)) and not isinstance(x, bool) and x == x and x >= 0


def _start(out_dir, *args) -> tuple[subprocess.Popen, str]:
  os.makedirs(out_dir, exist_ok=True)
  out = os.path.join(out_dir, "bench.json")
  env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", CUDA_VISIBLE_DEVICES="")
  proc = subprocess.Popen([sys.executable, "-m", "simclr_mura.benchmark", *args, f"--out={out}",
                           f"--work_dir={os.path.join(out_dir, 'work')}"],
                          cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
  return proc, out


def _finish(proc: subprocess.Popen, out: str) -> dict:
  stdout, stderr = proc.communicate(timeout=900)
  assert proc.returncode == 0, stderr[-3000:]
  assert "figure" in stdout and "holds" in stdout  # the printed table
  with open(out, encoding="utf-8") as f:
    return json.load(f)


def _check_machine(result: dict) -> None:
  machine = result["machine"]
  for key, kind in MACHINE_KEYS.items():
    assert isinstance(machine[key], kind), key
  assert "gpu" in machine and (machine["gpu"] is None or isinstance(machine["gpu"], str))


def _check_cpu(result: dict, work_dir: str) -> None:
  assert result["suite"] == "cpu"
  _check_machine(result)
  for key in benchmark.CPU_KEYS:
    assert _number(result[key]), (key, result[key])
  assert result["step_overhead_ratio"] > 0 and result["build_peak_rss_mib"] > 0
  for key in benchmark.GPU_KEYS:
    assert key not in result
  details = result["details"]
  assert details["build"]["images"] > 0 and details["build"]["examples_written"] >= details["build"]["images"]
  assert details["build"]["dataset"] == "mura_synthetic/elbow"  # --quick: one body part
  assert _number(details["build"]["tree_peak_pss_mib"]) and _number(details["build"]["generate_seconds"])
  assert details["pipeline"]["cores"] == common.cores_available()
  assert details["step"]["views_per_step"] == 2 * details["step"]["batch_size"]
  assert set(details["step"]["profile"]["by_component_ms"]) == {"simclr", "supervised"}
  assert set(result["goals"]) == {"input_views_per_sec_per_core", "views_over_decode", "input_over_plain",
                                  "study_pairs_over_image", "step_overhead_ratio", "build_peak_memory_mib"}
  pipe = details["pipeline"]
  assert result["input_over_plain"] == pytest.approx(
      pipe["input_views_per_sec"]["median"] / pipe["plain_views_per_sec"]["median"])
  assert result["study_pairs_over_image"] == pytest.approx(
      pipe["study_pairs_views_per_sec"]["median"] / pipe["input_views_per_sec"]["median"])
  machine = result["machine"]
  assert machine["cpu_vendor"] and set(machine["isa_flags"]) == set(common.ISA_FLAGS)
  assert machine["onednn"]["enabled"] is cpu_defaults.onednn_enabled()
  assert isinstance(result["onednn_kernels_ran"], bool)
  for goal in result["goals"].values():
    assert set(goal) >= {"value", "target", "holds"} and isinstance(goal["holds"], bool)
  assert not os.listdir(work_dir)  # the built dataset is removed without --keep


def _check_gpu(result: dict) -> None:
  assert result["suite"] == "gpu"
  _check_machine(result)
  for key in benchmark.GPU_KEYS:
    assert _number(result[key]) and result[key] > 0, key
  for key in benchmark.CPU_KEYS:
    assert key not in result
  assert result["pretrain_setting"] == {"name": "float32", "mixed_precision": "none", "jit_compile": False}
  assert "not a GPU figure" in result["device"]
  assert isinstance(result["goals"]["pretrain_views_per_sec"]["holds"], bool)
  setting = result["details"]["gpu"]["settings"]["float32"]
  assert _number(setting["pretrain_compute_only_views_per_sec"]) and _number(setting["supervised_images_per_sec"])


@pytest.mark.slow  # builds a dataset and trains
@pytest.mark.timeout(1200)
def test_both_suites_quick(tmp_path):
  """Both suites at once (two processes: their start-up and graph tracing overlap on a 2-core machine), then the cpu
  suite with --no_build on the dataset the gpu suite prepared and kept in --data_dir (no second rendering)."""
  data_dir = tmp_path / "data"
  cpu = _start(str(tmp_path / "cpu"), "--suite=cpu", "--quick")
  gpu = _start(str(tmp_path / "gpu"), "--suite=gpu", "--quick", "--allow_cpu", "--data_scale=0.01",
               f"--data_dir={data_dir}")
  cpu_result, gpu_result = _finish(*cpu), _finish(*gpu)
  _check_cpu(cpu_result, str(tmp_path / "cpu" / "work"))
  _check_gpu(gpu_result)
  prepared = sorted(os.listdir(data_dir / "mura_synthetic"))
  assert prepared

  no_build = _finish(*_start(str(tmp_path / "no_build"), "--suite=cpu", "--quick", "--no_build",
                             "--data_scale=0.01", f"--data_dir={data_dir}", "--no_profile"))
  assert no_build["details"]["build"] is None
  assert no_build["build_images_per_sec"] is None and no_build["build_peak_rss_mib"] is None
  assert "build_peak_memory_mib" not in no_build["goals"]
  assert _number(no_build["input_over_plain"]) and _number(no_build["step_overhead_ratio"])
  assert no_build["onednn_kernels_ran"] is None  # nothing profiled
  assert sorted(os.listdir(data_dir / "mura_synthetic")) == prepared  # read where it was, and kept
  assert "elbow-scale0.01-seed0" in prepared  # --quick: one body part


def test_gpu_suite_refuses_to_run_without_a_gpu(tmp_path):
  # conftest hides the GPUs (CUDA_VISIBLE_DEVICES=""): the gpu suite stops before measuring anything.
  with pytest.raises(SystemExit, match="no GPU"):
    benchmark.run(["--suite=gpu", "--quick", f"--out={tmp_path / 'b.json'}", f"--work_dir={tmp_path}"])
  assert not (tmp_path / "b.json").exists()


def test_settings_and_table_helpers():
  assert parse_setting("float32") == ("none", False)
  assert parse_setting("mixed_bfloat16+xla") == ("mixed_bfloat16", True)
  assert {parse_setting(s) for s in GPU_SETTINGS} == {(p, x) for p in ("none", "mixed_bfloat16", "mixed_float16")
                                                       for x in (False, True)}
  with pytest.raises(ValueError, match="accepted"):
    parse_setting("fp8")
  text = common.format_table([("a", 1.5, None, True)], ("name", "value", "x", "holds"))
  assert "yes" in text and "1.500" in text


@pytest.mark.parametrize("name, value, holds", [
    ("input_views_per_sec_per_core", 400.0, True), ("input_views_per_sec_per_core", 399.9, False),
    ("views_over_decode", 0.99, False), ("views_over_decode", 1.0, True), ("input_over_plain", 0.99, False),
    ("input_over_plain", 1.2, True), ("study_pairs_over_image", 0.79, False), ("study_pairs_over_image", 0.8, True),
    ("step_overhead_ratio", 1.10, True), ("step_overhead_ratio", 1.11, False),
    ("build_peak_memory_mib", 2100.0, False), ("pretrain_views_per_sec", 4000.0, True),
    ("pretrain_views_per_sec", None, None)])
def test_goals_compare_the_right_way(name, value, holds):
  goal = benchmark._goal(name, value)
  assert goal["holds"] is holds and goal["value"] == value
