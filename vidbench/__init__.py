"""vidbench: a reproducibility benchmark harness for efficient video action recognition."""

__version__ = "0.1.0"
