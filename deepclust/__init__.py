"""deepclust: cluster images — frozen encoders, classic and deep clustering, honest metrics."""

__version__ = "0.1.0"
