"""otseg: micro-segmentation for industrial networks on OpenFlow 1.3 switches."""

__version__ = "0.1.0"
