"""The trainer: SimCLR pretraining, fine-tuning, linear evaluation, supervised baselines and SimCLRv2 distillation in
one loop.

The loop has SimCLR's tf2/run.py shape and works under every `tf.distribute` strategy (Keras 3's `Model.fit` fails
under MultiWorkerMirroredStrategy, keras-team/keras#20585): a `tf.function` runs `steps_per_loop` steps of
`strategy.run(step)` over a `distribute_datasets_from_function` iterator, then the host logs, validates and
checkpoints.
"""
from __future__ import annotations

import dataclasses
import math
import os

import keras
import numpy as np
import tensorflow as tf

from simclr_mura.training import checkpoints, distribute, evaluation, results, steps, summaries
from simclr_mura.data import input_pipeline
from simclr_mura.models import optim
from simclr_mura import config as config_lib
from simclr_mura.config import Config
from simclr_mura.errors import UserError
from simclr_mura.layout import RunDir
from simclr_mura.training.export import export_model
from simclr_mura.training.metrics import class_weights_by_study_type
from simclr_mura.training.metrics import evaluate_predictions
from simclr_mura.training.teacher import load_teacher
from simclr_mura.models.model import build_model, freeze_batch_norm, zero_supervised_head
from simclr_mura.models.schedule import step_counts


class NonFiniteLoss(RuntimeError):
  """Training produced a NaN or infinite loss; the latest good checkpoint was kept."""


class SelectionState(tf.Module):
  """What model selection and the plateau schedule remember between validations, saved in every checkpoint so that a
  resumed run continues them: the best validation score and its step, and the plateau's best loss and patience count
  (the learning rate it lowered is the optimizer's own variable, checkpointed with the optimizer)."""

  def __init__(self):
    super().__init__(name="selection")
    only_first = dict(trainable=False, aggregation=tf.VariableAggregation.ONLY_FIRST_REPLICA)
    self.best_score = tf.Variable(-math.inf, dtype=tf.float64, name="best_score", **only_first)
    self.best_step = tf.Variable(-1, dtype=tf.int64, name="best_step", **only_first)
    self.plateau_best_loss = tf.Variable(math.inf, dtype=tf.float64, name="plateau_best_loss", **only_first)
    self.plateau_wait = tf.Variable(0, dtype=tf.int64, name="plateau_wait", **only_first)


@dataclasses.dataclass
class Run:
  """Everything one training or evaluation job holds."""
  config: Config
  strategy: tf.distribute.Strategy
  builder: object
  model: keras.Model
  optimizer: keras.optimizers.Optimizer
  global_step: tf.Variable
  selection: SelectionState
  checkpointer: checkpoints.Checkpointer
  chief: bool
  num_train_examples: int
  total_steps: int
  epoch_steps: int
  checkpoint_steps: int
  predict_step: object  # evaluation.make_predict_step(model)
  patients: frozenset[str] | None = None  # the label draw's patients (--label_fraction), None: all of train_split
  teacher: keras.Model | None = None  # --train_mode=distill: the frozen teacher


def run(config: Config) -> dict | None:
  """Runs `config.mode` (train, eval, train_then_eval); returns the last evaluation result, if any."""
  config_lib.validate(config)
  strategy = distribute.make_strategy(config)
  distribute.set_up_runtime(config)
  builder = input_pipeline.load_builder(config)
  job = _set_up(config, strategy, builder)
  result = None
  if config.mode in ("train", "train_then_eval"):
    final = {f"train/{k}": v for k, v in train(job).items()}
    if config.mode == "train_then_eval":
      result = evaluate_selected(job)  # leaves the selected checkpoint's weights in the model
      final.update(_final_metrics(result) if result else {})
    if job.chief and final:  # the HParams dashboard compares runs (the arms of a study) side by side
      summaries.log_hparams(config.model_dir, _hparams(config), final)
    # (a pretraining run without a probe has no classifier to export)
    if job.chief and config.export and job.model.supervised_head is not None:
      export_model(job.model, config, RunDir(config.model_dir).export_dir, int(job.global_step.numpy()))
  elif config.mode == "eval":
    result = continuous_eval(job)
  job.checkpointer.cleanup()
  return result


def _set_up(config: Config, strategy: tf.distribute.Strategy, builder) -> Run:
  """Validates the splits and --checkpoint, builds model and optimizer, restores state. No training yet."""
  num_train = input_pipeline.validate_split(builder, config.train_split)
  patients = None
  if config.label_fraction is not None:
    patients, drawn = label_draw(builder, config)
    if config.train_mode != "distill":  # a distillation learns from all of train_split; the draw is its labelled part
      num_train = drawn
  for split in {config.eval_split, config.validation_split} if config.mode != "train" or \
      config.classifies else {config.eval_split}:
    input_pipeline.validate_split(builder, split)
  pretrained = checkpoints.resolve(config.checkpoint) if config.checkpoint else None
  if config.global_bn is False and config.train_mode == "pretrain" and strategy.num_replicas_in_sync > 1:
    print("note: --global_bn=false with several replicas: batch norm statistics stay per replica")
  counts = step_counts(num_train, config.train_batch_size, config.train_epochs, train_steps=config.train_steps,
                       checkpoint_epochs=config.checkpoint_epochs, checkpoint_steps=config.checkpoint_steps)
  chief = distribute.is_chief(strategy)
  with strategy.scope():
    model = build_model(config)  # variables created, fine_tune_after_block applied
    if config.classifies and num_train < config.freeze_bn_below:
      print(f"Batch norm in inference mode ({freeze_batch_norm(model)} layers): {num_train} training images < "
            f"--freeze_bn_below={config.freeze_bn_below}")
    # (--mode=eval scores the student only)
    teacher = load_teacher(config) if config.train_mode == "distill" and config.mode != "eval" else None
    optimizer = optim.build_optimizer(config, optim.learning_rate(config, num_train, counts.total_steps))
    optimizer.build(model.trainable_variables)
    global_step = tf.Variable(0, dtype=tf.int64, trainable=False, name="global_step",
                              aggregation=tf.VariableAggregation.ONLY_FIRST_REPLICA)
    selection = SelectionState()
    checkpointer = checkpoints.Checkpointer(model, optimizer, global_step, config.model_dir,
                                            config.keep_checkpoint_max, chief=chief,
                                            task_id=distribute.task_id(strategy), selection=selection)
    latest = checkpointer.restore_latest()
    if latest:
      print(f"Resuming from {latest} (global step {int(global_step.numpy())}).")
    elif pretrained:
      checkpoints.restore_pretrained(model, pretrained, config)
      print(f"Fine-tuning from {pretrained}.")
      if config.zero_init_logits_layer:
        zero_supervised_head(model)
  return Run(config=config, strategy=strategy, builder=builder, model=model, optimizer=optimizer,
             global_step=global_step, selection=selection, checkpointer=checkpointer, chief=chief,
             num_train_examples=num_train,
             total_steps=counts.total_steps, epoch_steps=counts.epoch_steps,
             checkpoint_steps=counts.checkpoint_steps, predict_step=evaluation.make_predict_step(model),
             patients=patients, teacher=teacher)


def label_draw(builder, config: Config) -> tuple[frozenset[str], int]:
  """The patients of draw `--label_draw` of `--label_fraction` of `--train_split` (`splits.draw_patients`: whole
  patients, stratified by study type x label, with a floor) and their number of images, printed."""
  from simclr_mura.datasets import splits  # the one definition the builders' train_1pct / train_10pct use too

  meta = input_pipeline.metadata(builder, config.train_split)
  rows = zip(meta["patient_id"], meta["study_id"], meta["study_type"], meta["label"])
  patients = splits.draw_patients(rows, config.label_fraction, config.label_draw)
  chosen = meta[meta["patient_id"].isin(patients)]
  studies = chosen.drop_duplicates("study_id")
  print(f"Label draw {config.label_draw} of {config.label_fraction:g} of {config.train_split}: {len(patients)} "
        f"patients, {studies['study_id'].size} studies ({int(studies['label'].sum())} abnormal), {len(chosen)} images")
  return patients, len(chosen)


def _writer(job: Run, name: str) -> tf.summary.SummaryWriter:
  if job.chief:
    return tf.summary.create_file_writer(os.path.join(job.config.model_dir, name))
  return tf.summary.create_noop_writer()


def train(job: Run) -> dict:
  """Trains until `total_steps`, resuming from the latest checkpoint; checkpoints every `checkpoint_steps`.

  Returns the last logged training metrics (empty when the run had already finished).
  """
  config, strategy, model = job.config, job.strategy, job.model
  pretrain = config.train_mode == "pretrain"
  tf.io.gfile.makedirs(config.model_dir)
  if job.chief:
    results.write_flags_json(config.model_dir, config.to_dict())
  start = int(job.global_step.numpy())
  if start >= job.total_steps:
    print(f"Already trained to step {start} of {job.total_steps}; nothing to do.")
    return {}

  weights = class_weight_table(job.builder, config.train_split, job.patients) if (
      not pretrain and config.class_weight == "balanced") else None
  distill = config.train_mode == "distill"
  # A distillation reads all of train_split (the teacher labels every image); the label draw marks its labelled part.
  labeled = job.patients if distill and config.distill_labeled_weight > 0 else None
  input_fn = input_pipeline.train_input_fn(job.builder, config, config.train_split, pretrain,
                                           config.train_batch_size, seed=config.seed + start, class_weights=weights,
                                           patients=None if distill else job.patients, labeled_patients=labeled)
  iterator = iter(strategy.distribute_datasets_from_function(input_fn))
  step_fn = steps.make_train_step(model, job.optimizer, config, strategy, teacher=job.teacher)
  names = steps.metric_names(config)

  train_loop = steps.make_train_loop(strategy, step_fn, names, job.global_step)

  writer = _writer(job, RunDir.TRAIN)
  if job.chief and start == 0:
    _log_views(job, writer)
  validation = None
  if not pretrain:
    validation = input_pipeline.eval_data(job.builder, config, config.validation_split, config.eval_batch_size)
    state, plateau = job.selection, _Plateau(config, job.optimizer, job.selection)
    best_dir = RunDir(job.checkpointer.write_dir).best_dir
    best_prefix = tf.train.latest_checkpoint(best_dir)
    if start > 0 and best_prefix:
      # best/ is written the moment the score improves, the full checkpoint only every --checkpoint_steps: the best
      # score and step come from best/ itself (it may be newer than the checkpoint the run resumes from).
      tf.train.Checkpoint(selection=tf.train.Checkpoint(best_score=state.best_score, best_step=state.best_step)
                          ).restore(best_prefix).expect_partial()
    best = tf.train.CheckpointManager(tf.train.Checkpoint(model=model, global_step=job.global_step, selection=state),
                                      best_dir, max_to_keep=1, checkpoint_name=RunDir.CHECKPOINT_PREFIX)
    if start > 0 and state.best_step.numpy() >= 0:
      print(f"Resumed model selection: best {config.validation_split} score {state.best_score.numpy():.4f} at step "
            f"{state.best_step.numpy()}")
    val_writer = _writer(job, RunDir.VALIDATION)

  # Validation after every epoch (the MURA paper's cadence), but not more often than every checkpoint when checkpoints
  # are counted in steps: a 1% subset's epoch is a single step, and validating after each would cost more than training.
  validate_every = max(job.epoch_steps, config.checkpoint_steps) if config.checkpoint_steps else job.epoch_steps
  replicas = strategy.num_replicas_in_sync
  pairs = " (MICLe: positive pairs of two images of one study)" if (
      config.train_mode == "pretrain" and config.positive_pairs == "study") else ""
  if distill:
    pairs = (f" (from {config.teacher} at temperature {config.distill_temperature:g}, labelled weight "
             f"{config.distill_labeled_weight:g})")
  print(f"{config.train_mode}{pairs} on {config.dataset} {config.train_split}: {job.num_train_examples} images, "
        f"global batch {config.train_batch_size} on {replicas} replica(s) ({distribute.describe(strategy)}), "
        f"steps {start}->{job.total_steps} ({job.epoch_steps} per epoch)")
  progress = keras.utils.Progbar(job.total_steps, stateful_metrics=list(names) + ["learning_rate"],
                                 verbose=1 if job.chief else 0)
  progress.update(start)
  step = start
  while step < job.total_steps:
    # Run to the next epoch end (progress, validation), checkpoint (SimCLR's loop length) or the final step.
    num = min(job.epoch_steps - step % job.epoch_steps, job.checkpoint_steps - step % job.checkpoint_steps,
              validate_every - step % validate_every, job.total_steps - step)
    values = {k: float(v) for k, v in train_loop(iterator, tf.constant(num)).items()}
    step = int(job.global_step.numpy())
    values["learning_rate"] = float(keras.ops.convert_to_numpy(job.optimizer.learning_rate))
    if not all(math.isfinite(v) for v in values.values()):
      latest = tf.train.latest_checkpoint(config.model_dir)
      raise NonFiniteLoss(f"non-finite loss at step {step} ({values}); stopped without saving. The latest good "
                          f"checkpoint is {latest}. Lower --learning_rate or check the data.")
    summaries.write_scalars(writer, values, step)
    progress.update(step, values=list(values.items()))
    if not pretrain and (step % validate_every == 0 or step == job.total_steps):
      predictions = evaluation.predict(job.predict_step, strategy, validation)
      metrics = evaluate_predictions(predictions, config.threshold)
      loss = evaluation.log_loss(predictions)
      summaries.write_scalars(val_writer, {"loss": loss, **_final_metrics(metrics)}, step)
      score = _selection_score(metrics, loss)
      if score > state.best_score.numpy():
        state.best_score.assign(score)
        state.best_step.assign(step)
        best.save(checkpoint_number=step)
      plateau.update(loss)
    if step % job.checkpoint_steps == 0 or step == job.total_steps:
      job.checkpointer.save(step)
  writer.flush()
  print(f"Trained to step {step}; checkpoints in {config.model_dir}")
  return values


def class_weight_table(builder, split: str, patients: frozenset[str] | None = None) -> np.ndarray:
  """The MURA paper's class weights per study type of `split` (of its `patients` only, when given) as a
  [study types, 2] table (types absent: 1), printed; a study type without both classes is a `UserError`."""
  names = builder.info.features["study_type"].names
  meta = input_pipeline.metadata(builder, split)
  if patients is not None:
    meta = meta[meta["patient_id"].isin(patients)]
  try:
    weights = class_weights_by_study_type(meta["study_type"].to_numpy(), meta["label"].to_numpy())
  except ValueError as e:
    raise UserError(f"--class_weight=balanced on {split}: {e}") from e
  table = np.ones((len(names), 2), np.float32)
  for name, w in weights.items():
    table[names.index(name)] = (w[0], w[1])
    print(f"Class weights (MURA paper) for {name}: normal {w[0]:.3f}, abnormal {w[1]:.3f}")
  return table


def _selection_score(metrics: dict, loss: float) -> float:
  """Validation study-level AUROC (the MURA paper's level); minus the loss when AUROC is undefined."""
  auroc = metrics["study"]["auroc"]
  return auroc if auroc is not None else -loss - 10.0


class _Plateau:
  """MURA paper: learning rate divided by 10 when the validation loss stops improving (only for --lr_schedule=plateau)."""

  def __init__(self, config: Config, optimizer: keras.optimizers.Optimizer, state: SelectionState):
    self.enabled = config.lr_schedule == "plateau"
    self.patience = config.plateau_patience
    self.optimizer = optimizer
    self.state = state  # best loss and patience count, checkpointed

  def update(self, loss: float) -> None:
    if not self.enabled:
      return
    if loss < self.state.plateau_best_loss.numpy() - 1e-4:
      self.state.plateau_best_loss.assign(loss)
      self.state.plateau_wait.assign(0)
      return
    self.state.plateau_wait.assign_add(1)
    if self.state.plateau_wait.numpy() >= self.patience:
      self.optimizer.learning_rate.assign(self.optimizer.learning_rate * 0.1)
      self.state.plateau_wait.assign(0)
      print(f"\nValidation loss plateaued: learning rate -> {float(self.optimizer.learning_rate):.3g}")


def _log_views(job: Run, writer: tf.summary.SummaryWriter) -> None:
  """A grid of training images as the model sees them for TensorBoard: when pretraining, its positive pairs side by
  side (two views of one image, or of two images of one study with --positive_pairs=study)."""
  pretrain = job.config.train_mode == "pretrain"
  images = input_pipeline.sample_views(job.builder, job.config, job.config.train_split, pretrain)
  if pretrain:
    images = np.concatenate([images[:, 0], images[:, 1]], axis=2)  # view 1 | view 2 side by side
  summaries.image_grid_summary(writer, "augmented_views", images, 0)


def _eval_split_data(job: Run) -> input_pipeline.EvalData:
  return input_pipeline.eval_data(job.builder, job.config, job.config.eval_split, job.config.eval_batch_size)


def evaluate_checkpoint(job: Run, prefix: str | None, data: input_pipeline.EvalData) -> dict:
  """Restores `prefix` (weights only) and writes the evaluation of `eval_split` (`data`)."""
  if prefix:
    tf.train.Checkpoint(model=job.model, global_step=job.global_step).restore(prefix).expect_partial()
  predictions = evaluation.predict(job.predict_step, job.strategy, data)
  step = int(job.global_step.numpy())
  if not job.chief:
    return {}
  result = evaluation.write_evaluation(predictions, job.config, job.config.eval_split, step, _writer(job, RunDir.EVAL))
  _print_result(result)
  return result


def evaluate_selected(job: Run) -> dict:
  """train_then_eval: the best validation checkpoint (or the last) on `eval_split`."""
  prefix = checkpoints.selected_checkpoint(job.config)
  if prefix and os.path.dirname(prefix) == RunDir(job.config.model_dir).best_dir:
    print(f"Model selection on {job.config.validation_split}: evaluating {prefix}")
  return evaluate_checkpoint(job, prefix, _eval_split_data(job))


def continuous_eval(job: Run, poll_seconds: float = 15.0, timeout: float | None = None) -> dict | None:
  """SimCLR's `--mode=eval`: evaluates each new checkpoint of model_dir until the final step."""
  result = None
  data = _eval_split_data(job)  # read once: its metadata and (with --cache_dataset) its images serve every checkpoint
  for prefix in tf.train.checkpoints_iterator(job.config.model_dir, min_interval_secs=poll_seconds, timeout=timeout):
    result = evaluate_checkpoint(job, prefix, data)
    if job.chief and result:
      summaries.log_hparams(job.config.model_dir, _hparams(job.config), _final_metrics(result))
    if int(job.global_step.numpy()) >= job.total_steps:
      break
  if result is None:
    raise UserError(f"no checkpoint appeared in {job.config.model_dir}")
  return result


def _hparams(config: Config) -> dict:
  keys = ("train_mode", "dataset", "train_split", "backbone", "resnet_depth", "width_multiplier", "image_size",
          "optimizer", "learning_rate", "learning_rate_scaling", "train_batch_size", "train_epochs", "temperature",
          "fine_tune_after_block", "class_weight", "positive_pairs", "distill_temperature", "distill_labeled_weight",
          "seed")
  return {k: getattr(config, k) for k in keys} | {
      "checkpoint": config.checkpoint or "", "teacher": config.teacher or "", "label_draw": config.label_draw,
      "label_fraction": config.label_fraction or 1.0}


def _final_metrics(result: dict) -> dict:
  return {f"{level}/{k}": v for level in ("image", "study") for k, v in result[level].items()
          if k not in ("n", "n_abnormal") and v is not None}


def _print_result(result: dict) -> None:
  print(f"\nEvaluation of step {result['global_step']} on {result['eval_split']}:")
  for level in ("image", "study"):
    m = result[level]
    cells = ", ".join(f"{k} {v:.3f}" if isinstance(v, float) else f"{k} {v}" for k, v in m.items())
    print(f"  {level:5s}: {cells}")
