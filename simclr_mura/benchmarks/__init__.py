"""The benchmark suites behind `python -m simclr_mura.benchmark`.

- `common`: machine description, timing statistics, tf.data threading limits, profiler traces and their summaries.
- `pipeline`: the decode-only rate and the pretraining input pipeline (the trainer's `train_input_fn`), per core.
- `train_step`: the SimCLR train step (`steps.make_train_step`) against `keras.applications.ResNet50`, on CPU
  (overhead ratio) and on a GPU (throughput for each precision/XLA setting).
- `build`: preparing `mura_synthetic` in a subprocess, with its time and peak memory.
"""
