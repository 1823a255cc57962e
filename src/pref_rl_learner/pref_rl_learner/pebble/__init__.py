"""PEBBLE training runs: config, loop, feedback sessions, evaluation, checkpoints."""
