"""ratscore: score rat seizure videos on the Racine scale."""

__version__ = "0.1.0"  # the one place: pyproject.toml reads it from here
