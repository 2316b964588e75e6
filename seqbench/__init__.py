"""seqbench: Numba-accelerated benchmarks of recurrent networks.

``import seqbench`` stays light (no numba, no pandas): kernels compile on first use.
"""

from .errors import ConfigError
from .models import CELLS, build_model

__version__ = "0.1.0"
__all__ = ["build_model", "CELLS", "ConfigError", "__version__"]
