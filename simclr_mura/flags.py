"""absl flags of the trainer (`python run.py`, console script `simclr-mura`), turned into a frozen `Config`.

Flag names, meanings and defaults follow Google SimCLR's tf2/run.py (google-research/simclr) wherever SimCLR has the
flag; the MURA-specific ones (data, backbone, class weights, strategy, ...) are this package's. Defaults are those of a
real MURA run on one GPU; the presets (`simclr_mura/presets/*.cfg`) hold the study's recipes. This is the only module
that reads `FLAGS`.
"""
from __future__ import annotations

import dataclasses

from absl import flags

from simclr_mura.config import CHOICES, Config

_D = Config()  # defaults live in one place: the Config dataclass

# --- what to run ----------------------------------------------------------------------------------------------------
flags.DEFINE_enum("mode", _D.mode, CHOICES["mode"],
                  "Whether to train, evaluate the latest checkpoint (waiting for new ones), or both.")
flags.DEFINE_enum("train_mode", _D.train_mode, CHOICES["train_mode"],
                  "pretrain: SimCLR contrastive pretraining; finetune: supervised training of the head "
                  "(and encoder, see fine_tune_after_block), from --checkpoint or from scratch; distill: SimCLRv2's "
                  "self-distillation, a fresh student learns --teacher's softened predictions on --train_split.")
flags.DEFINE_string("model_dir", None, "Where checkpoints, summaries, results and the export go (required).")
flags.DEFINE_string("checkpoint", None, "A pretrain model_dir or checkpoint path to start fine-tuning from.")
flags.DEFINE_string("teacher", None, "--train_mode=distill: a fine-tuned run's model_dir; its selected checkpoint "
                    "(best on validation) teaches, its flags.json gives its architecture.")
flags.DEFINE_enum("model_selection", _D.model_selection, CHOICES["model_selection"],
                  "train_then_eval evaluates the checkpoint with the best validation study-level AUROC, or the last.")

# --- data -----------------------------------------------------------------------------------------------------------
flags.DEFINE_string("dataset", _D.dataset, "A mura/<config> or mura_synthetic/<config> TFDS dataset.")
flags.DEFINE_string("train_split", _D.train_split, "TFDS split expression to train on, e.g. train, train_10pct, "
                    "train[:10%].")
flags.DEFINE_string("eval_split", _D.eval_split, "TFDS split expression to evaluate on.")
flags.DEFINE_string("validation_split", _D.validation_split,
                    "Split evaluated every epoch while fine-tuning (every --checkpoint_steps when an epoch is "
                    "shorter): model selection; never the test split.")
flags.DEFINE_string("data_dir", _D.data_dir, "TFDS data_dir (prepared datasets); TFDS's default when unset.")
flags.DEFINE_string("mura_dir", _D.mura_dir, "Folder holding MURA-v1.1/ (or MURA-v1.1/ itself): the manual download.")
flags.DEFINE_float("synthetic_scale", _D.synthetic_scale,
                   "mura_synthetic only: the size of its training data as a fraction of MURA v1.1's counts (unset: "
                   "the default 0.1; 1.0: about 40,000 images); its test split has MURA's size at every scale. "
                   "Another size is prepared in its own folder.", lower_bound=0.001)
flags.DEFINE_float("label_fraction", _D.label_fraction,
                   "Train on this fraction of --train_split's images, drawn by whole patients, stratified by study "
                   "type x label, with at least one normal and one abnormal study per study type (unset: all). Draw 0 "
                   "with 0.01 / 0.1 on train is train_1pct / train_10pct.")
flags.DEFINE_integer("label_draw", _D.label_draw,
                     "Which draw of --label_fraction (k >= 0): fixed by k alone, the same patients on every machine.")
flags.DEFINE_bool("cache_dataset", _D.cache_dataset, "Cache the decoded dataset in memory (small datasets only).")
flags.DEFINE_integer("image_size", _D.image_size, "Input image side in pixels.")

# --- augmentation ---------------------------------------------------------------------------------------------------
flags.DEFINE_float("color_jitter_strength", _D.color_jitter_strength, "Strength of colour (brightness/contrast) jitter.")
flags.DEFINE_bool("use_blur", _D.use_blur, "Gaussian blur augmentation while pretraining.")
flags.DEFINE_enum("train_crop", _D.train_crop, CHOICES["train_crop"],
                  "Training views: SimCLR's random resized crop, or none (whole image resized, as the MURA paper).")
flags.DEFINE_float("crop_min_area", _D.crop_min_area,
                   "Smallest area of --train_crop=random's crop, as a fraction of the image (SimCLR: 0.08).",
                   lower_bound=0.01, upper_bound=1.0)
flags.DEFINE_enum("eval_crop", _D.eval_crop, CHOICES["eval_crop"],
                  "Evaluation views: SimCLR's centre crop of 0.875 (aspect preserving; skipped at <= 32 px), or none "
                  "(whole image resized: the geometry --train_crop=none trains on, as the MURA paper).")
flags.DEFINE_float("rotation_degrees", _D.rotation_degrees, "Random rotation up to this many degrees (0: off).")
flags.DEFINE_float("translate_fraction", _D.translate_fraction, "Random translation up to this fraction (0: off).")
flags.DEFINE_enum("positive_pairs", _D.positive_pairs, CHOICES["positive_pairs"],
                  "Pretraining's positive pairs: two views of one image (SimCLR), or views of two different images of "
                  "one study (MICLe; a one-image study pairs two views of its image).")

# --- model ----------------------------------------------------------------------------------------------------------
flags.DEFINE_enum("backbone", _D.backbone, CHOICES["backbone"], "Encoder architecture.")
flags.DEFINE_string("backbone_weights", _D.backbone_weights,
                    "none, imagenet (downloaded by Keras; needs internet) or a path to a local weights file.")
flags.DEFINE_integer("resnet_depth", _D.resnet_depth, "Depth of ResNet: 18, 34, 50, 101, 152 or 200.")
flags.DEFINE_float("width_multiplier", _D.width_multiplier, "Multiplier of the ResNet's channel widths.")
flags.DEFINE_float("sk_ratio", _D.sk_ratio, "If it is bigger than 0, it will enable SK (SimCLRv2's selective kernels "
                   "and ResNet-D stem and shortcuts). Recommendation: 0.0625.")
flags.DEFINE_float("se_ratio", _D.se_ratio, "If it is bigger than 0, it will enable SE (squeeze-excitation).")
flags.DEFINE_float("batch_norm_decay", _D.batch_norm_decay, "Batch norm decay (momentum) parameter.")
flags.DEFINE_integer("freeze_bn_below", _D.freeze_bn_below,
                     "Fine-tuning on fewer training images than this (a small label draw) keeps every batch-norm layer "
                     "in inference mode: its moving statistics (learnt in pretraining) and its scale and offset stay "
                     "as they are. 0: never.")
flags.DEFINE_bool("global_bn", _D.global_bn, "Aggregate batch norm statistics across replicas.")
flags.DEFINE_enum("proj_head_mode", _D.proj_head_mode, CHOICES["proj_head_mode"], "Projection head mode.")
flags.DEFINE_integer("proj_out_dim", _D.proj_out_dim, "Number of head projection dimensions.")
flags.DEFINE_integer("num_proj_layers", _D.num_proj_layers, "Number of non-linear head layers.")
flags.DEFINE_integer("ft_proj_selector", _D.ft_proj_selector,
                     "Which projection layer to fine-tune from (0: the encoder output).")
flags.DEFINE_integer("fine_tune_after_block", _D.fine_tune_after_block,
                     "Layers after this block are fine-tuned: -1 all, 0 stem frozen, 1-3 block groups frozen, "
                     "4 only the head (linear evaluation).")
flags.DEFINE_bool("zero_init_logits_layer", _D.zero_init_logits_layer, "Zero-initialise the supervised head.")
flags.DEFINE_bool("lineareval_while_pretraining", _D.lineareval_while_pretraining,
                  "Train a linear head on stop-gradient features while pretraining.")

# --- objective ------------------------------------------------------------------------------------------------------
flags.DEFINE_float("temperature", _D.temperature, "Temperature of the contrastive loss.")
flags.DEFINE_float("distill_temperature", _D.distill_temperature,
                   "--train_mode=distill: temperature τ of the teacher's and the student's softmax (SimCLRv2 eq. 2; it "
                   "uses 0.1 for self-distillation, 1.0 from a bigger teacher).")
flags.DEFINE_float("distill_labeled_weight", _D.distill_labeled_weight,
                   "--train_mode=distill: weight of the labelled cross-entropy on the label draw's images (all of "
                   "--train_split without --label_fraction); the distillation loss gets 1 minus it (SimCLRv2 eq. 3). "
                   "0: distillation alone.")
flags.DEFINE_bool("hidden_norm", _D.hidden_norm, "L2-normalise the projections in the contrastive loss.")
flags.DEFINE_enum("class_weight", _D.class_weight, CHOICES["class_weight"],
                  "balanced: the MURA paper's w_abnormal = N/(A+N), w_normal = A/(A+N) per study type of the training "
                  "split.")

# --- optimisation ---------------------------------------------------------------------------------------------------
flags.DEFINE_enum("optimizer", _D.optimizer, CHOICES["optimizer"], "Optimizer.")
flags.DEFINE_float("learning_rate", _D.learning_rate, "Initial learning rate per batch size of 256.")
flags.DEFINE_enum("learning_rate_scaling", _D.learning_rate_scaling, CHOICES["learning_rate_scaling"],
                  "How to scale the learning rate with the batch size.")
flags.DEFINE_enum("lr_schedule", _D.lr_schedule, CHOICES["lr_schedule"],
                  "cosine: SimCLR's warm-up + cosine decay; plateau: the MURA paper's lr/10 when the validation "
                  "loss stops improving (fine-tuning).")
flags.DEFINE_integer("plateau_patience", _D.plateau_patience, "Epochs without validation improvement before lr/10.")
flags.DEFINE_float("warmup_epochs", _D.warmup_epochs, "Number of epochs of warm-up.")
flags.DEFINE_float("weight_decay", _D.weight_decay, "Amount of weight decay.")
flags.DEFINE_float("momentum", _D.momentum, "Momentum parameter.")
flags.DEFINE_integer("train_batch_size", _D.train_batch_size, "Global batch size for training.")
flags.DEFINE_integer("eval_batch_size", _D.eval_batch_size, "Global batch size for evaluation.")
flags.DEFINE_integer("train_epochs", _D.train_epochs, "Number of epochs to train for.")
flags.DEFINE_integer("train_steps", _D.train_steps, "Number of steps to train for; overrides train_epochs if > 0.")
flags.DEFINE_integer("eval_steps", _D.eval_steps, "Number of steps to evaluate for; 0: the whole split.")
flags.DEFINE_integer("checkpoint_epochs", _D.checkpoint_epochs, "Epochs between checkpoints and summaries.")
flags.DEFINE_integer("checkpoint_steps", _D.checkpoint_steps, "Steps between checkpoints; overrides "
                     "checkpoint_epochs if > 0.")
flags.DEFINE_integer("keep_checkpoint_max", _D.keep_checkpoint_max, "Maximum number of checkpoints to keep.")
flags.DEFINE_bool("export", _D.export, "Write the model for inference (export/, read by simclr-mura-predict) when "
                  "training ends.")
flags.DEFINE_float("threshold", _D.threshold, "A study/image is abnormal when its (mean) probability is above it.")

# --- hardware -------------------------------------------------------------------------------------------------------
flags.DEFINE_enum("strategy", _D.strategy, CHOICES["strategy"],
                  "tf.distribute strategy; auto: TPU if --use_tpu, else mirrored over all GPUs, else one device.")
flags.DEFINE_integer("cpu_replicas", _D.cpu_replicas, "> 1 splits the CPU into this many logical devices.")
flags.DEFINE_bool("use_tpu", _D.use_tpu, "Whether to run on TPU.")
flags.DEFINE_string("tpu_name", _D.tpu_name, "The Cloud TPU to use (name or grpc:// address).")
flags.DEFINE_string("tpu_zone", _D.tpu_zone, "[Optional] GCE zone of the Cloud TPU (SimCLR's flag; detected from the "
                    "GCE metadata when unset).")
flags.DEFINE_string("gcp_project", _D.gcp_project, "[Optional] Project of the Cloud TPU (SimCLR's flag; detected from "
                    "the GCE metadata when unset).")
flags.DEFINE_string("master", _D.master, "Address/name of the TensorFlow master (SimCLR's flag): the TPU to use when "
                    "--tpu_name is unset.")
flags.DEFINE_enum("mixed_precision", _D.mixed_precision, CHOICES["mixed_precision"],
                  "Keras mixed-precision policy.")
flags.DEFINE_bool("jit_compile", _D.jit_compile, "Compile the train step with XLA.")
flags.DEFINE_bool("graph_optimization", _D.graph_optimization,
                  "TensorFlow's graph optimizations (Grappler) of the traced steps. Off: no optimization pass, which on "
                  "a model of hundreds of layers trained for a few steps saves more start-up time than the steps lose.")
flags.DEFINE_integer("seed", _D.seed, "Random seed (initialisation, shuffling, augmentation).")
flags.DEFINE_bool("deterministic", _D.deterministic, "Deterministic ops: a run repeats bit for bit on one machine.")

flags.mark_flag_as_required("model_dir")

FLAGS = flags.FLAGS


def config_from_flags() -> Config:
  """The parsed flags as a frozen `Config` (the only place flags are read)."""
  return Config(**{f.name: FLAGS[f.name].value for f in dataclasses.fields(Config) if f.name in FLAGS})


def config_from_argv(argv: list[str]) -> Config:
  """Parses a trainer command line (flags and --flagfile=...) into a `Config`, as `python run.py ARGV` would.

  Used by the study runner to run each arm in-process with exactly the configuration its printed command gives.
  """
  FLAGS.unparse_flags()
  FLAGS(["simclr_mura"] + list(argv))
  if FLAGS.model_dir is None:
    raise ValueError("--model_dir is required")
  return config_from_flags()
