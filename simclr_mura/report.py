"""The study report from a study folder (console script `simclr-mura-report`); `./run.sh` writes it at the end.

  python -m simclr_mura.report --study=runs/quick [--out=DIR]
"""
from __future__ import annotations

import importlib
import sys
from typing import Callable, Dict, Optional, Sequence, Tuple

from simclr_mura.errors import ArgumentParser
from simclr_mura.layout import draw_folder
from simclr_mura.study import collect
from simclr_mura.study.report import build_report


def _load_hook(module: str, attr: str) -> Tuple[Optional[Callable], Optional[str]]:
  """`module.attr`, or None and why (a missing or broken optional part must not stop the report)."""
  try:
    mod = importlib.import_module(module)
  except ModuleNotFoundError as e:
    if e.name == module:
      return None, f"`{module}` is not available"
    return None, f"importing `{module}` failed: {e}"
  except Exception as e:  # pylint: disable=broad-except  (a broken hook must not stop the report)
    return None, f"importing `{module}` failed: {type(e).__name__}: {e}"
  fn = getattr(mod, attr, None)
  if not callable(fn):
    return None, f"`{module}` has no `{attr}`"
  return fn, None


def run(argv: Optional[Sequence[str]] = None) -> int:
  """`python -m simclr_mura.report --study=DIR [--out=DIR]`: builds the report and prints the primary endpoint and
  the summary table."""
  parser = ArgumentParser(prog="simclr-mura-report", description=__doc__.split("\n\n")[0])
  parser.add_argument("--study", required=True, help="the study folder (<study>/<part>/<arm>/[draw<k>/])")
  parser.add_argument("--out", default=None, help="where to write the report (default <study>/report)")
  parser.add_argument("--skip_explore", action="store_true", help="skip the data-exploration section")
  parser.add_argument("--skip_gradcam", action="store_true", help="skip the Grad-CAM section")
  args = parser.parse_args(argv)
  import tensorflow as tf  # tf.io.gfile: the study may be on gs://

  if not tf.io.gfile.isdir(args.study):
    parser.error(f"--study={args.study}: no such folder; accepted: a study folder (<study>/<part>/<arm>/)")
  reasons: Dict[str, str] = {}
  explore_fn = gradcam_fn = None
  if args.skip_explore:
    reasons["explore"] = "--skip_explore"
  else:
    explore_fn, reasons["explore"] = _load_hook("simclr_mura.data.explore", "explore")
    options = collect.study_data_options(args.study)  # the size and place the runs prepared their data at
    if explore_fn is not None and options:
      raw = explore_fn
      explore_fn = lambda dataset, out: raw(dataset, out, **options)  # noqa: E731
  if args.skip_gradcam:
    reasons["gradcam"] = "--skip_gradcam"
  else:
    gradcam_fn, reasons["gradcam"] = _load_hook("simclr_mura.study.gradcam", "gradcam_grid")
  reasons = {k: v for k, v in reasons.items() if v}
  report = build_report(args.study, args.out, explore_fn=explore_fn, gradcam_fn=gradcam_fn, skip_reasons=reasons)
  print(report["table"])
  for m in report["missing"]:
    draw = f"/{draw_folder(m['draw'])}" if m.get("draw") is not None else ""
    print(f"missing: {m['body_part']}/{m['arm']}{draw}: {m['reason']}")
  for w in report["warnings"]:
    print(f"warning: {w}", file=sys.stderr)
  for name, why in reasons.items():
    print(f"note: {name} skipped: {why}", file=sys.stderr)
  print(f"report: {report['results_md']}")
  return 0


if __name__ == "__main__":
  sys.exit(run())
