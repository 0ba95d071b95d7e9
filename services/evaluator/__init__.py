"""The evaluator service: threshold rules over metric events, alerts out to JetStream."""
