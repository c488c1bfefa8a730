"""Test-wide set-up: quiet TF, CPU only, and two logical CPU devices for the multi-replica tests."""
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("CUDA_VISIBLE_DEVICES", "")

import simclr_mura  # noqa: E402,F401  (its CPU defaults, oneDNN among them, apply before TensorFlow loads)
import tensorflow as tf  # noqa: E402

_cpus = tf.config.list_physical_devices("CPU")
try:
  tf.config.set_logical_device_configuration(
      _cpus[0], [tf.config.LogicalDeviceConfiguration(), tf.config.LogicalDeviceConfiguration()])
except RuntimeError:  # already initialised by an earlier import
  pass


import pytest  # noqa: E402

from simclr_mura.training.distribute import mirrored_strategy  # noqa: E402


def two_cpu_strategy() -> tf.distribute.MirroredStrategy:
  """MirroredStrategy on the two logical CPUs set up above, with collective keys of its own (see
  `distribute.mirrored_strategy`: strategies made by different tests would otherwise collide)."""
  return mirrored_strategy(["/cpu:0", "/cpu:1"])


import os as _os  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402

REPO = _os.path.dirname(_os.path.dirname(_os.path.abspath(__file__)))
# A CPU-sized trainer configuration for tests: ResNet-18 at width 0.25 on 32-px images (SimCLR's small-image stem).
TINY_FLAGS = ["--resnet_depth=18", "--width_multiplier=0.25", "--image_size=32", "--train_batch_size=32",
              "--eval_batch_size=64", "--proj_out_dim=16", "--warmup_epochs=0", "--cache_dataset=true"]


def run_trainer(*args: str, env: dict | None = None, timeout: int = 300, check: bool = True
                ) -> subprocess.CompletedProcess:
  """Runs `python run.py ARGS` in a fresh process, as a user would; returns the finished process."""
  full_env = dict(_os.environ, TF_CPP_MIN_LOG_LEVEL="2", CUDA_VISIBLE_DEVICES="", **(env or {}))
  proc = subprocess.run([sys.executable, _os.path.join(REPO, "run.py"), *args], cwd=REPO, env=full_env,
                        capture_output=True, text=True, timeout=timeout)
  if check and proc.returncode != 0:
    raise AssertionError(f"run.py {' '.join(args)} failed ({proc.returncode}):\n{proc.stdout[-3000:]}\n"
                         f"{proc.stderr[-5000:]}")
  return proc


# Tests that use these fixtures build a dataset or train a model: end-to-end, marked `slow` (deselect: -m "not slow").
_END_TO_END_FIXTURES = frozenset({"synthetic_data_dir", "pretrained_dir", "finetuned_dir", "tiny_study", "explored",
                                  "mura_parent"})


@pytest.hookimpl(tryfirst=True)  # before pytest-xdist's own hook, which turns the xdist_group marks into groups
def pytest_collection_modifyitems(items):
  for item in items:
    if _END_TO_END_FIXTURES & set(getattr(item, "fixturenames", ())):
      item.add_marker(pytest.mark.slow)
    # With pytest-xdist (pytest.ini): a module's tests that share a module-scoped fixture run in one process, so the
    # fixture is built once.
    info = getattr(item, "_fixtureinfo", None)
    if info and any(defs[-1].scope == "module" for defs in info.name2fixturedefs.values()):
      item.add_marker(pytest.mark.xdist_group(item.module.__name__))


def _built_once(tmp_path_factory, name: str, build) -> str:
  """The folder `name`, made by `build(folder)` once for the whole run: pytest-xdist's test processes share the run's
  temporary root, and the first to take the lock builds while the others wait (the pattern of pytest-xdist's docs,
  "Making session-scoped fixtures execute only once", with the standard library's flock)."""
  import fcntl
  import shutil
  root = tmp_path_factory.getbasetemp()
  if _os.environ.get("PYTEST_XDIST_WORKER"):
    root = root.parent  # shared by the workers of this run
  folder, done = root / name, root / f"{name}.done"
  with open(root / f"{name}.lock", "w") as lock:
    fcntl.flock(lock, fcntl.LOCK_EX)
    if not done.exists():
      shutil.rmtree(folder, ignore_errors=True)  # a build that failed in another process
      folder.mkdir()
      build(str(folder))
      done.touch()
  return str(folder)


@pytest.fixture(scope="session")
def synthetic_data_dir(tmp_path_factory) -> str:
  """A TFDS data_dir with mura_synthetic/elbow prepared once for the run."""
  import simclr_mura.datasets  # noqa: F401
  from simclr_mura.data.prepare import prepare
  return _built_once(tmp_path_factory, "tfds", lambda folder: prepare("mura_synthetic/elbow", data_dir=folder))


@pytest.fixture(scope="session")
def pretrained_dir(synthetic_data_dir, tmp_path_factory) -> str:
  """A finished (tiny) SimCLR pretraining run on mura_synthetic/elbow, trained once for the run."""
  return _built_once(tmp_path_factory, "pretrain", lambda folder: run_trainer(
      "--train_mode=pretrain", "--dataset=mura_synthetic/elbow", f"--data_dir={synthetic_data_dir}",
      f"--model_dir={folder}", "--train_epochs=2", "--checkpoint_epochs=1", *TINY_FLAGS))
