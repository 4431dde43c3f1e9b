"""The audit log: one JSONL line per supervised request, written as a `Trajectory`.

A line is `types.to_dict(Trajectory)`: `messages` is the conversation the client sent plus the
assistant message that went out; its single `Turn` holds the final action and, in
`proposals`, every proposal the upstream made with the reviewer's verdict and feedback.
`info` holds the request id, the conversation key, the time, the outcome (`status`: ok,
fallback, upstream_error, upstream_timeout, malformed) and latencies. So
`read_jsonl(path, Trajectory)` loads the log and the critic pipeline can mine it like rollouts.

Secrets never reach it: the request's headers (the client's token) are not recorded, and the
upstream key lives only inside the `OpenAIBackend` client. The file is opened for append; each
line is written whole and flushed (optionally fsynced) before the response goes out, so a
crash loses nothing already answered.
"""

from __future__ import annotations

import json
import os
import threading
from pathlib import Path
from typing import Any

from lightning_asym.types import Trajectory, to_dict


class AuditLog:
    """Appends one `Trajectory` line per request; safe to call from many threads.

    Args:
        path: the JSONL file (created with its directory; never truncated).
        fsync: also fsync each line, so a power loss loses nothing either (costs a disk sync
            per request; flushing alone already survives a crash of the process).
    """

    def __init__(self, path: str | os.PathLike, fsync: bool = False) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.fsync = fsync
        self._lock = threading.Lock()
        self._file = self.path.open("a", encoding="utf-8")
        self.written = 0

    def write(self, trajectory: Trajectory) -> None:
        self.write_dict(to_dict(trajectory))

    def write_dict(self, record: dict[str, Any]) -> None:
        line = json.dumps(record, ensure_ascii=False, sort_keys=True) + "\n"
        with self._lock:
            self._file.write(line)
            self._file.flush()
            if self.fsync:
                os.fsync(self._file.fileno())
            self.written += 1

    def close(self) -> None:
        with self._lock:
            if not self._file.closed:
                self._file.close()
