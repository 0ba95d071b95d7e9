"""goalwatch: metric events in, rule-driven alerts out to the channels managers read."""

__version__ = "0.1.0"
