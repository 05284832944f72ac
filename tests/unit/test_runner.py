import signal

import pytest

from queuectl.runner import describe_exit


@pytest.mark.parametrize(
    "returncode, expected",
    [
        (0, (0, None)),
        (1, (1, "exit code 1")),
        (3, (3, "exit code 3")),
        (255, (255, "exit code 255")),
        (127, (127, "exit code 127 (command not found?)")),
        (-signal.SIGKILL, (137, "killed by SIGKILL")),
        (-signal.SIGTERM, (143, "killed by SIGTERM")),
        (-signal.SIGSEGV, (139, "killed by SIGSEGV")),
        (-99, (227, "killed by signal 99")),
    ],
)
def test_describe_exit(returncode, expected):
    assert describe_exit(returncode) == expected
