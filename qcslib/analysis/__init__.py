"""Analysis: metrics (scikit-learn), and later embeddings (t-SNE) and CAMs."""
from .metrics import classification_metrics

__all__ = ["classification_metrics"]
