"""Process-wide CPU defaults that TensorFlow reads once, when it is imported.

TensorFlow turns its oneDNN CPU kernels on by default only on some x86 CPUs (those with AVX-512 and newer ISA
extensions); elsewhere, AMD EPYC among them, they stay off although they train this project's models 2-3× faster
(docs/benchmarks.md has the measurement). So every entry point of this package asks for them on x86-64 unless the
user chose: `TF_ENABLE_ONEDNN_OPTS=0` in the environment keeps them off.
"""
from __future__ import annotations

import os
import platform

ONEDNN_ENV = "TF_ENABLE_ONEDNN_OPTS"
_X86_64 = ("x86_64", "amd64")


def onednn_default() -> str | None:
  """The value this project gives `TF_ENABLE_ONEDNN_OPTS` when the user has not set it: "1" on x86-64, where the
  kernels were measured faster; None (TensorFlow's own default) on other processors."""
  return "1" if platform.machine().lower() in _X86_64 else None


def apply() -> None:
  """Sets the defaults above unless the environment already has them. TensorFlow reads them when it is imported:
  a process that imported it first keeps the setting it started with (its subprocesses get this one)."""
  value = onednn_default()
  if value is not None:
    os.environ.setdefault(ONEDNN_ENV, value)


def onednn_enabled() -> bool:
  """Whether TensorFlow's oneDNN kernels are on in this process (imports TensorFlow)."""
  from tensorflow.python.util import _pywrap_util_port  # pylint: disable=g-import-not-at-top
  return bool(_pywrap_util_port.IsMklEnabled())
