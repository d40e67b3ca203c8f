"""cellzoo: search for recurrent-cell architectures written in a small tree DSL."""

__version__ = "0.1.0"
