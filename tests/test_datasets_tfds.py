"""TFDS's own conformance test (`tfds.testing.DatasetBuilderTestCase`) for the `mura` builder.

It checks registration, serialisation, eager and graph-mode reading, split sizes, that example keys are not local
paths, and that only the declared subsets share examples with `train`. The fake MURA tree is a tiny synthetic one.
"""
import atexit
import shutil
import tempfile

import pytest
import tensorflow_datasets as tfds

from simclr_mura.datasets import layout, mura, splits, synthetic

_TYPES = ("elbow", "hand", "shoulder")
_ROOT = tempfile.mkdtemp(prefix="mura_fake_")
atexit.register(shutil.rmtree, _ROOT, ignore_errors=True)
synthetic.write_mura_tree(_ROOT, seed=4, scale=0.006, study_types=_TYPES, workers=1)


@pytest.mark.slow  # builds the dataset
class MuraTest(tfds.testing.DatasetBuilderTestCase):
  DATASET_CLASS = mura.Mura
  BUILDER_CONFIG_NAMES_TO_TEST = ["elbow_hand_shoulder"]
  EXAMPLE_DIR = _ROOT
  OVERLAPPING_SPLITS = ["train_10pct", "train_1pct"]  # subsets of train
  MOCK_OUT_FORBIDDEN_OS_FUNCTIONS = False  # the reader uses os/open on the manual dir (plain local files)
  SKIP_CHECKSUMS = True  # manual download: nothing is downloaded
  SKIP_TF1_GRAPH_MODE = True
  SPLITS = {}  # filled below from the generator's roster

  def test_session(self, *args, **kwargs):  # tf.test.TestCase's graph-mode helper, used by the base class
    return super().test_session(*args, **kwargs)

  test_session.__test__ = False  # a helper, not a test: keep pytest from collecting (and skipping) it


def _splits_for_test() -> dict[str, int]:
  """Split sizes expected from the roster the fake tree was written from."""
  records = [layout.ImageRecord(i, s.study_id, s.patient, s.study_type, s.label, s.split, "")
             for s in synthetic.roster(seed=4, scale=0.006) if s.study_type in _TYPES for i in s.image_ids()]
  return {name: len(recs) for name, recs in splits.assign_splits(records).items()}


MuraTest.SPLITS = _splits_for_test()
