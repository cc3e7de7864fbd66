"""Herald: a replicated message queue for Python that is honest about delivery."""

from herald.errors import HeraldError

__version__ = "0.1.0"

__all__ = ["HeraldError", "__version__"]
