"""qcslib: a faithful, tested reimplementation of QCS (Wang et al., AAAI 2025) for facial expression recognition."""
from .models import *  # noqa: F403  (the public API is models.__all__)
from .models import __all__

__version__ = "0.1.0"
