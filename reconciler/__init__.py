"""regsync: keep a Replicated team's external registries as a YAML file says."""

__version__ = "0.1.0"
