"""simclr_mura: SimCLR for MURA radiographs in Keras 3."""
__version__ = "0.1.0"
