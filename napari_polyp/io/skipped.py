"""How a batch command (``predict``, ``evaluate``, ``export``) reports the inputs it could not read.

Here, low beside the readers, so that the commands share it without
importing one another.
"""
from __future__ import annotations

import sys
from typing import List


def report_skipped(command: str, problems: List[str], what: str = "file(s)") -> int:
    """Name every skipped file (or dataset item) on stderr; returns the exit status: 1 when any
    was skipped, else 0."""
    if not problems:
        return 0
    print(f"napari-polyp {command}: skipped {len(problems)} {what} that could not be read:", file=sys.stderr)
    for problem in problems:
        print(f"  {problem}", file=sys.stderr)
    return 1
