"""queuectl: durable background jobs for shell commands.

`from queuectl import Queue` gives the Python API (see queuectl.api). Importing the package
costs nothing until Queue is used, so the CLI stays fast to start.
"""

__version__ = "0.1.0"


def __getattr__(name: str):
    if name == "Queue":
        from queuectl.api import Queue

        return Queue
    raise AttributeError(name)
