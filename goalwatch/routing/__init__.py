"""The routing file: which receivers hear about which alerts, shared by the notifier and
the ``goalwatch routes`` commands (which check and try a file without a running notifier)."""
