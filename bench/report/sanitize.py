"""User-given text made safe where it leaves stepbench: spreadsheet cells and file names.

Invariants:

- `spreadsheet_safe`: a text cell (or column name) that a spreadsheet would read as a formula -- it starts with
  ``=``, ``+``, ``-``, ``@``, a tab or a carriage return -- is written with a leading single quote (``'=SUM(1,2)``),
  so opening a CSV never runs it (OWASP's CSV-injection advice). Numbers, booleans and missing values are never
  changed; only ``str`` values are. Every CSV stepbench writes (``sweep.csv``, ``bench export --format csv``) goes
  through it (`write_csv`); Parquet keeps the exact strings (it is typed, not read as formulas).
- `file_name`: a name (suite, dataset id) as one path component, safe on every file system: only
  ``[A-Za-z0-9._-]``, at most `MAX_NAME` characters; a name that had to change carries a short hash of the full
  name, so different names never share a file. A name that is already safe and short is kept as it is.
"""

from __future__ import annotations

import hashlib
import re

import pandas as pd

FORMULA_START = ("=", "+", "-", "@", "\t", "\r")
MAX_NAME = 100          # characters of one name; report files add a prefix and an extension (< 255 bytes in all)


def spreadsheet_cell(v):
    """``v`` with a leading ``'`` when it is text a spreadsheet would run as a formula; anything else unchanged."""
    return "'" + v if isinstance(v, str) and v.startswith(FORMULA_START) else v


def spreadsheet_safe(df: pd.DataFrame) -> pd.DataFrame:
    """A copy of ``df`` whose text cells and column names cannot run as spreadsheet formulas (numbers untouched)."""
    out = df.copy()
    for col in out.columns:
        s = out[col]
        if s.dtype == object or isinstance(s.dtype, pd.StringDtype):
            out[col] = s.map(spreadsheet_cell)
    out.columns = [spreadsheet_cell(c) for c in out.columns]
    return out


def write_csv(df: pd.DataFrame, path) -> None:
    """``df`` as a CSV a spreadsheet can open safely: `spreadsheet_safe` cells, RFC 4180 line ends (CRLF, so a
    carriage return inside a cell is quoted and cannot split its row), no index column."""
    spreadsheet_safe(df).to_csv(path, index=False, lineterminator="\r\n")


def file_name(name: str) -> str:
    """``name`` as a safe path component (see the module docstring): kept when safe and short, else cleaned,
    cut to `MAX_NAME` characters and suffixed with a hash of the full name."""
    text = str(name)
    s = re.sub(r"[^A-Za-z0-9._-]+", "_", text).strip("._") or "x"
    if s == text and len(s) <= MAX_NAME:
        return s
    digest = hashlib.sha1(text.encode("utf-8", "surrogatepass")).hexdigest()
    if len(s) + 7 <= MAX_NAME:
        return f"{s}-{digest[:6]}"               # the form short changed names always had
    return f"{s[:MAX_NAME - 13].rstrip('._-')}-{digest[:12]}"
