"""An explorer for JupyterLab (ipywidgets): pick a class, then one of its test images, and see the image, each
model's Grad-CAM over it and each model's class probabilities (``plots.cam_grid``). Reports rendered without a
kernel show ``view`` of a sample of images in the widget's place."""
from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
from IPython.display import clear_output, display
from ipywidgets import Dropdown, HBox, IntSlider, Output, VBox
from torch import nn

from ..data.sources import Split
from . import cam, plots


class CamExplorer:
    """``models`` ({name: QCSNet or BaseNet}) on ``split``, each image read with ``recipe``'s test transform.
    ``members[c]`` are the indices of class ``c``'s images (classes without images are left out); ``shown`` is
    the index last drawn."""

    def __init__(self, models: dict[str, nn.Module], split: Split, recipe: str = "rafdb"):
        if not models or not len(split):
            raise ValueError("the explorer needs at least one model and one image")
        self.models, self.split, self.recipe = models, split, recipe
        labels = np.asarray(split.labels)
        self.members = {c: np.flatnonzero(labels == k) for k, c in enumerate(split.classes) if (labels == k).any()}
        self.shown: int | None = None

    def view(self, images: Split) -> plt.Figure:
        """``cam_grid`` of ``images`` (the explorer's one, or a sample for a report): each model's CAM (of its
        predicted class) and class probabilities."""
        return plots.cam_grid(images, cam.gradcams(self.models, images, self.recipe),
                              cam.probabilities(self.models, images, self.recipe))

    def widget(self) -> VBox:
        """A class menu and an image slider over that class's images; each change redraws the view below them."""
        classes = Dropdown(options=list(self.members), description="class")
        image = IntSlider(value=0, min=0, max=len(self.members[classes.value]) - 1, description="image")
        out = Output()

        def redraw(_=None):
            with out:
                clear_output(wait=True)
                self.shown = int(self.members[classes.value][image.value])
                fig = self.view(self.split.subset([self.shown]))
                display(fig)
                plt.close(fig)

        def new_class(change):
            if image.value:
                image.value = 0  # redraws, through image's observer
            else:
                redraw()
            image.max = len(self.members[change.new]) - 1

        classes.observe(new_class, names="value")
        image.observe(redraw, names="value")
        redraw()
        return VBox([HBox([classes, image]), out])
