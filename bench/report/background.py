"""Report work run in a second process beside the rest: a large suite's figures drawn while this process computes the
rank statistics and writes the tables.

Drawing is single-threaded matplotlib work (about a third of the default suite's report on a 2-core CPU) that shares
nothing with the statistics but the frame it is given, so a second interpreter draws them while this one goes on.
`call` starts ``fn(*args)`` there when it pays: this process may use more than one core and ``big`` (the caller's
judgement that the work outweighs a process start, ~1.5 s of imports); otherwise it runs ``fn`` at once, here.

The second process is a fresh interpreter that imports this module and runs `_main` (`CHILD`, ``python -c``: ``-m``
would load this module twice, as ``__main__`` after the package's import of it, and print runpy's RuntimeWarning
into every large report); it reads the pickled call from IN and writes the pickled value or exception to OUT. Not
multiprocessing: its ``spawn`` runs the caller's main module again in the child (a user's unguarded script would run
twice) and ``fork`` copies whatever threads hold.

Invariant: ``call(fn, *args).result()`` is ``fn(*args)``, and the files ``fn`` writes are the same bytes, either way
(tests/test_report_background.py). An exception ``fn`` raises is raised by ``result()``; a process that could not
start, import ``fn`` or finish (killed, out of memory) is not an error: ``fn`` then runs here (what that process
wrote to stderr is shown only when it finished: the warnings of a run that failed come again from the run here).
"""

from __future__ import annotations

import importlib
import pickle
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any, Callable

from bench.cores import usable_cores

CHILD = "import sys; from bench.report.background import _main; _main(sys.argv[1], sys.argv[2])"


class _Job:
    def __init__(self, fn: Callable[..., Any], args: tuple, big: bool):
        self.fn, self.args = fn, args
        self.proc: subprocess.Popen | None = None
        self.folder: Path | None = None
        self.done, self.value, self.error = False, None, None
        if big and usable_cores() > 1:
            try:
                self.folder = Path(tempfile.mkdtemp(prefix="stepbench-background-"))
                (self.folder / "in").write_bytes(pickle.dumps((fn.__module__, fn.__qualname__, args)))
                with open(self.folder / "err", "wb") as err:     # shown after it, only when it finished
                    self.proc = subprocess.Popen([sys.executable, "-c", CHILD, str(self.folder / "in"),
                                                  str(self.folder / "out")], stdin=subprocess.DEVNULL, stderr=err)
            except (OSError, pickle.PicklingError, AttributeError, TypeError):   # no process to be had: run here
                self._close()
        if self.proc is None:
            self._run_here()

    @property
    def in_background(self) -> bool:
        return self.proc is not None

    def _run_here(self) -> None:
        try:
            self.value = self.fn(*self.args)
        except Exception as e:            # raised by result(), where the background one would be
            self.error = e
        self.done = True

    def result(self) -> Any:
        if not self.done:
            out = None
            try:
                self.proc.wait()
                out = pickle.loads((self.folder / "out").read_bytes())
                sys.stderr.write((self.folder / "err").read_text(errors="replace"))   # its warnings, if any
            except (OSError, EOFError, pickle.UnpicklingError, AttributeError, ImportError):
                out = None                # it died or could not import fn: draw here instead
            finally:
                self._close()
            if out is None:
                self._run_here()
            else:
                self.done = True
                self.value, self.error = (out[1], None) if out[0] == "value" else (None, out[1])
        if self.error is not None:
            raise self.error
        return self.value

    def _close(self, stop: bool = False) -> None:
        if self.proc is not None:
            if stop and self.proc.poll() is None:   # the caller failed: the work is not wanted, do not wait for it
                self.proc.terminate()
            self.proc.wait()
        if self.folder is not None:
            shutil.rmtree(self.folder, ignore_errors=True)
            self.folder = None

    def __enter__(self) -> "_Job":
        return self

    def __exit__(self, exc_type, *exc) -> None:
        """Leaving the ``with`` block: the process is gone (stopped at once when the block raised)."""
        self._close(stop=exc_type is not None)


def call(fn: Callable[..., Any], *args: Any, big: bool = True) -> _Job:
    """``fn(*args)`` in a second process when ``big`` and a second core is usable, else here and now; the value
    (or ``fn``'s exception) comes from ``.result()``. ``fn`` must be importable by name (a module-level function)
    and its arguments picklable. Use it as a context manager (``with call(...) as job:``) so that a failure before
    ``result()`` stops the process instead of leaving it to finish."""
    return _Job(fn, args, big)


def _main(src: str, dst: str) -> None:
    module, name, args = pickle.loads(Path(src).read_bytes())
    fn: Any = importlib.import_module(module)
    for part in name.split("."):
        fn = getattr(fn, part)
    try:
        out: tuple = ("value", fn(*args))
    except Exception as e:                # the caller raises it, as if fn had run there
        out = ("error", e)
    try:
        data = pickle.dumps(out)
    except Exception:                     # an exception that does not pickle: its type and text
        data = pickle.dumps(("error", RuntimeError(f"{type(out[1]).__name__}: {out[1]}")))
    tmp = Path(dst + ".part")
    tmp.write_bytes(data)
    tmp.replace(dst)

