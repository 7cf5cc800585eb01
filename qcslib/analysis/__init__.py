"""Analysis: metrics (scikit-learn) and SynthFER's AU ceiling, paired comparisons with intervals, base-branch
embeddings and t-SNE, Grad-CAM, CSA maps and mask energy shares."""
from .cam import csa_maps, gradcam, mask_energy_share, mask_energy_shares, read_masks, token_grid
from .embedding import embedding_scores, extract_features, tsne_2d
from .metrics import PAPER_ACCURACY, au_oracle, classification_metrics
from .stats import compare, verdict

__all__ = ["PAPER_ACCURACY", "au_oracle", "classification_metrics", "compare", "verdict", "extract_features",
           "tsne_2d", "embedding_scores", "gradcam", "token_grid", "csa_maps", "mask_energy_share",
           "mask_energy_shares", "read_masks"]
