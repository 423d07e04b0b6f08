"""Preprocessing operations: each a pure tensor function and a registered Transform node.

Importing this package registers every built-in op. Modules:

* :mod:`~neurocrane.preprocessing.rereferencing` — CAR, Laplacian, bipolar
* :mod:`~neurocrane.preprocessing.filtering` — band/high/low-pass, notch, resample
* :mod:`~neurocrane.preprocessing.spectral` — spectrogram, Morlet, Hilbert envelope, band power
* :mod:`~neurocrane.preprocessing.normalization` — z-score, min-max, robust scaling
* :mod:`~neurocrane.preprocessing.spatial` — electrode selection, spatial filters
* :mod:`~neurocrane.preprocessing.layout` — trim, NaN → number, axis reordering
"""

from neurocrane.preprocessing import filtering, layout, normalization, rereferencing, spatial, spectral
from neurocrane.preprocessing.filtering import *  # noqa: F403
from neurocrane.preprocessing.layout import *  # noqa: F403
from neurocrane.preprocessing.normalization import *  # noqa: F403
from neurocrane.preprocessing.rereferencing import *  # noqa: F403
from neurocrane.preprocessing.spatial import *  # noqa: F403
from neurocrane.preprocessing.spectral import *  # noqa: F403

__all__ = [
    *filtering.__all__,
    *layout.__all__,
    *normalization.__all__,
    *rereferencing.__all__,
    *spatial.__all__,
    *spectral.__all__,
]
