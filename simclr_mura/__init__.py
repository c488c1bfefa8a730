"""simclr_mura: SimCLR for MURA radiographs in Keras 3."""
from simclr_mura import cpu_defaults as _cpu_defaults

_cpu_defaults.apply()  # before any module of the package imports TensorFlow

__version__ = "0.1.0"
