"""Matplotlib figures on the Agg canvas: the helpers every figure uses, and the evaluation figures TensorBoard shows.

Everything uses matplotlib's object-oriented API with the Agg canvas (no pyplot, no global backend switch), so it works
headless and never touches the caller's matplotlib state.
"""
from __future__ import annotations

import io
import os
from typing import Iterable

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from sklearn import metrics as skm


def new_figure(width: float = 6.4, height: float = 4.8) -> Figure:
  """A Figure on an Agg canvas."""
  fig = Figure(figsize=(width, height), dpi=100, layout="constrained")
  FigureCanvasAgg(fig)
  return fig


def figure_to_png(fig: Figure) -> bytes:
  """The figure rendered as PNG bytes."""
  buf = io.BytesIO()
  fig.savefig(buf, format="png")  # the constrained layout already fits the labels (bbox_inches="tight" renders twice)
  return buf.getvalue()


def save_figure(fig: Figure, path: str) -> str:
  """Writes the figure as a PNG file (parent folders are created) and returns the path; through tf.io.gfile, so
  the path may be on any filesystem TensorFlow reaches (gs://...)."""
  import tensorflow as tf  # lazy: plotting alone does not need TensorFlow

  folder = os.path.dirname(path)
  if folder:
    tf.io.gfile.makedirs(folder)
  with tf.io.gfile.GFile(path, "wb") as f:
    f.write(figure_to_png(fig))
  return path


def confusion_matrix_figure(labels: Iterable[int], probabilities: Iterable[float], threshold: float = 0.5,
                            title: str = "Confusion matrix") -> Figure:
  """The 2x2 confusion matrix (rows: true label, columns: predicted; abnormal when probability > threshold)."""
  y = np.asarray(labels, dtype=np.int64).reshape(-1)
  pred = (np.asarray(probabilities, dtype=np.float64).reshape(-1) > threshold).astype(np.int64)
  cm = np.array([[np.sum((y == t) & (pred == q)) for q in (0, 1)] for t in (0, 1)])  # works for empty input too
  fig = new_figure(4.2, 3.8)
  ax = fig.add_subplot(1, 1, 1)
  ax.imshow(cm, cmap="Blues", vmin=0, vmax=max(1, int(cm.max())))
  names = ["normal", "abnormal"]
  ax.set_xticks([0, 1], labels=names)
  ax.set_yticks([0, 1], labels=names)
  ax.set_xlabel(f"predicted (probability > {threshold:g})")
  ax.set_ylabel("true label")
  for i in range(2):
    for j in range(2):
      ax.text(j, i, str(int(cm[i, j])), ha="center", va="center",
              color="white" if cm[i, j] > cm.max() / 2 else "black", fontsize=12)
  ax.set_title(title)
  return fig


def roc_curve_figure(labels: Iterable[int], probabilities: Iterable[float], title: str = "ROC curve") -> Figure:
  """The ROC curve with its AUROC; a note instead of a curve when only one class is present (AUROC undefined)."""
  y = np.asarray(labels, dtype=np.int64).reshape(-1)
  p = np.asarray(probabilities, dtype=np.float64).reshape(-1)
  fig = new_figure(4.6, 4.2)
  ax = fig.add_subplot(1, 1, 1)
  ax.plot([0, 1], [0, 1], color="grey", linestyle=":", label="chance")
  if 0 < y.sum() < y.size:
    fpr, tpr, _ = skm.roc_curve(y, p)
    ax.plot(fpr, tpr, color="tab:blue", label=f"AUROC = {skm.roc_auc_score(y, p):.3f}")
  else:
    ax.text(0.5, 0.5, "AUROC undefined:\nonly one class present", ha="center", va="center")
  ax.set_xlim(0, 1)
  ax.set_ylim(0, 1.01)
  ax.set_xlabel("false positive rate (1 - specificity)")
  ax.set_ylabel("true positive rate (sensitivity)")
  ax.set_title(title)
  ax.legend(loc="lower right")
  return fig
