"""What only developers and ``make run`` use: the local stack, demo data, the benchmark and a
demo webhook receiver. No service imports this package."""
