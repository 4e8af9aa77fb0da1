"""`SuiteError`: every problem of a suite file, one line each (`file: key: message`). The CLI prints each line and
exits with code 2."""

from __future__ import annotations


def one_line(msg: str) -> str:
    return str(msg).replace("\r", "\\r").replace("\n", "\\n")      # one line, whatever a key holds


class SuiteError(ValueError):
    """One or more suite problems. ``lines`` holds one line per problem (each already prefixed with the file);
    ``str()`` joins them with newlines."""

    def __init__(self, msg: str | list[str]):
        self.lines = [one_line(m) for m in ([msg] if isinstance(msg, str) else msg)]
        super().__init__("\n".join(self.lines))


class Problems:
    """Collects `file: key: message` lines so a suite's every error is reported at once."""

    def __init__(self, path: str):
        self.path, self.lines = path, []

    def add(self, key: str, msg: str) -> None:
        line = f"{self.path}: {key}: {msg}" if key else f"{self.path}: {msg}"
        if line not in self.lines:
            self.lines.append(line)

    def __bool__(self) -> bool:
        return bool(self.lines)

    def raise_if_any(self) -> None:
        if self.lines:
            raise SuiteError(self.lines)
