"""The acceptance tier: the real CLI in subprocesses, real signals, real crashes."""
