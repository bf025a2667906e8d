"""The package version, in a module of its own so that any part can name it
without importing the package's lazy entry points."""
__version__ = "0.1.0"
