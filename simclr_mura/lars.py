"""Public import path of SimCLR's LARS optimizer (`simclr_mura.lars.LARS`)."""
from simclr_mura.models.lars import LARS  # noqa: F401
