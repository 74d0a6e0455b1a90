"""styletx: neural style transfer."""
from ._version import __version__

