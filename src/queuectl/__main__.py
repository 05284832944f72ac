from queuectl.cli import run

run()
