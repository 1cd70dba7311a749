"""The kernel's progress, heard while papermill runs a notebook: its progress bars (tqdm widgets, which
reach the runner as widget updates) become terminal lines, what cells with a bar print follows them,
and a cell silent too long is reported as still working. `RelayEngine` is papermill's own engine with
a notebook client that feeds a `ProgressRelay`."""

from __future__ import annotations

import html
import re
import sys
import threading
import time
from collections.abc import Callable

from papermill.clientwrap import PapermillNotebookClient
from papermill.engines import NBClientEngine, papermill_engines
from papermill.log import logger
from papermill.utils import merge_kwargs, remove_args
from traitlets import Any

ENGINE = "icalign-relay"  # the engine's name in papermill's registry
PROGRESS_RIGHT = re.compile(r"^\s*(\d+)/(\d+|\?)\s*\[(.*)\]\s*$")  # tqdm's "3/8 [00:40<01:20, 2.1 tok/s]"
PROGRESS_LEFT = re.compile(r"^(.*?)[:\s]*\d+%\s*$")  # tqdm's "generate:  37%"


class ProgressRelay:
    """Turns a kernel's progress bars (tqdm widgets, seen as widget updates) into terminal lines, relays
    what cells with a progress bar print, and says a silent cell is still working every `heartbeat` s."""

    def __init__(self, write: Callable[[str], None], heartbeat: float = 60.0, indent: str = "    ") -> None:
        self.write, self.heartbeat, self.indent = write, heartbeat, indent
        self.lock = threading.Lock()
        self.label = ""  # the description of the bar updated last
        self.shown: dict[str, tuple[str, float]] = {}  # comm id -> (count shown, when)
        self.cell, self.cells, self.cell_start = 0, 0, time.monotonic()
        self.cell_has_bar = False
        self.last = time.monotonic()
        self.latest = ""  # the last progress line, repeated by the heartbeat
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._beat, daemon=True) if heartbeat > 0 else None
        if self.thread is not None:
            self.thread.start()

    def cell_started(self, index: int, total: int) -> None:
        """A code cell began executing."""
        with self.lock:
            self.cell, self.cells, self.cell_start = index, total, time.monotonic()
            self.cell_has_bar, self.latest = False, ""

    def widget(self, comm_id: str, state: dict) -> None:
        """A widget's state changed: if it is a tqdm bar's text, relay its count (at most every 2 s)."""
        value = state.get("value")
        if not isinstance(value, str):
            return
        text = html.unescape(value).replace("\u2007", " ").strip()
        if left := PROGRESS_LEFT.match(text):
            self.label = left.group(1).strip()
            return
        right = PROGRESS_RIGHT.match(text)
        if right is None:
            return
        done, total, inside = right.groups()
        now = time.monotonic()
        count, when = self.shown.get(comm_id, ("", 0.0))
        if f"{done}/{total}" == count or (now - when < 2 and done != total):
            return
        self.shown[comm_id] = (f"{done}/{total}", now)
        line = f"{self.label or 'progress'}: {done}/{total} [{' '.join(inside.split())}]"
        with self.lock:
            self.cell_has_bar, self.latest = True, line
        self._say(line)

    def stream(self, name: str, text: str) -> None:
        """A cell printed: relay its lines when the cell shows a progress bar (the package's reports)."""
        if name != "stdout" or not self.cell_has_bar:
            return
        for line in text.splitlines():
            if line.strip():
                self._say(line.rstrip()[:200])

    def close(self) -> None:
        """Stop the heartbeat."""
        self.stop.set()
        if self.thread is not None:
            self.thread.join(timeout=5)

    def _say(self, line: str) -> None:
        with self.lock:
            self.last = time.monotonic()
        self.write(self.indent + line)

    def _beat(self) -> None:
        while not self.stop.wait(min(5.0, self.heartbeat)):
            now = time.monotonic()
            if self.cell and now - self.last >= self.heartbeat:
                with self.lock:
                    running = now - self.cell_start
                    where = f"cell {self.cell}/{self.cells}" if self.cells else f"cell {self.cell}"
                    latest = f"; last: {self.latest}" if self.latest else ""
                self._say(f"still working on {where} ({running:.0f} s){latest}")


def relay_writer() -> Callable[[str], None]:
    """Write a line to stdout without tearing papermill's progress bar."""
    from tqdm import tqdm

    return lambda line: tqdm.write(line, file=sys.stdout)


class RelayClient(PapermillNotebookClient):
    """papermill's notebook client, telling a `ProgressRelay` about widget updates and printed lines."""

    relay = Any(None)

    def handle_comm_msg(self, outs: list, msg: dict, cell_index: int) -> None:
        super().handle_comm_msg(outs, msg, cell_index)
        state = msg["content"].get("data", {}).get("state")
        if self.relay is not None and isinstance(state, dict):
            self.relay.widget(msg["content"].get("comm_id", ""), state)

    def output(self, outs: list, msg: dict, display_id: str | None, cell_index: int) -> object:
        if self.relay is not None and msg["msg_type"] == "stream":
            self.relay.stream(msg["content"].get("name", ""), msg["content"].get("text", ""))
        return super().output(outs, msg, display_id, cell_index)


class RelayEngine(NBClientEngine):
    """papermill's nbclient engine, run with a `RelayClient`."""

    @classmethod
    def execute_managed_notebook(  # papermill's own, with the client above
        cls,
        nb_man: object,
        kernel_name: str,
        log_output: bool = False,
        stdout_file: object = None,
        stderr_file: object = None,
        start_timeout: int = 60,
        execution_timeout: int | None = None,
        relay: ProgressRelay | None = None,
        **kwargs: object,
    ) -> object:
        code = [i for i, c in enumerate(nb_man.nb.cells) if c.cell_type == "code"]

        def started(cell: object, cell_index: int) -> None:
            if relay is not None and cell_index in code:
                relay.cell_started(code.index(cell_index) + 1, len(code))

        kwargs = remove_args(["input_path"], **kwargs)
        final = merge_kwargs(
            remove_args(["timeout", "startup_timeout"], **kwargs),
            timeout=execution_timeout or kwargs.get("timeout"),
            startup_timeout=start_timeout,
            kernel_name=kernel_name,
            log=logger,
            log_output=log_output,
            stdout_file=stdout_file,
            stderr_file=stderr_file,
            relay=relay,
            on_cell_execute=started,
        )
        return RelayClient(nb_man, **final).execute()


def relay_engine() -> str:
    """The name of the relaying engine, registered with papermill (again is harmless)."""
    papermill_engines.register(ENGINE, RelayEngine)
    return ENGINE
