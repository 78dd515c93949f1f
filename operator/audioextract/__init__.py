"""audio-extract-operator: turn video into audio at scale on Kubernetes."""

__version__ = "0.1.0"
