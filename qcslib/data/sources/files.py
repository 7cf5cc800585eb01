"""Readers shared by the loaders: files and folders that must exist, UTF-8 text, comma-separated tables and
"name label" lines, and columns of numbers. Each failure is one line naming the file (and line) and the `layout`
expected there."""
from __future__ import annotations

import csv
from collections import Counter
from pathlib import Path

import numpy as np
import pandas as pd

from .split import DataError


def require_file(path: Path, layout: str) -> Path:
    """`path`, if it is a file."""
    if not path.is_file():
        raise FileNotFoundError(f"{path}: file not found; expected {layout}")
    return path


def require_dir(path: Path, layout: str) -> Path:
    """`path`, if it is a folder."""
    if not path.is_dir():
        raise FileNotFoundError(f"{path}: folder not found; expected {layout}")
    return path


def read_text(path: Path, layout: str) -> str:
    """The file's text (UTF-8, a byte-order mark dropped)."""
    try:
        return path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as error:
        raise DataError(f"{path}: not UTF-8 text ({error.reason} at byte {error.start}); expected {layout}") from None


def read_table(path: Path, columns: tuple[str, ...], layout: str, header: bool = True):
    """A comma-separated file as strings -> (DataFrame with `columns`, 1-based line number of each row).

    With `header` the first line must name `columns` exactly. Blank lines are skipped (their line numbers are not
    reused). A row with the wrong number of fields is an error naming its line.
    """
    try:
        table = pd.read_csv(path, header=None, dtype=str, keep_default_na=False, skip_blank_lines=False,
                            encoding="utf-8-sig")
    except pd.errors.EmptyDataError:
        raise DataError(f"{path}: file is empty; expected {layout}") from None
    except pd.errors.ParserError:
        table = None
    except UnicodeDecodeError as error:
        raise DataError(f"{path}: not UTF-8 text ({error.reason} at byte {error.start}); expected {layout}") from None
    if table is None or table.shape[1] != len(columns):
        line, found = _first_wrong_width(path, len(columns))
        raise DataError(f"{path}:{line}: {found} comma-separated fields; expected {len(columns)} "
                        f"({','.join(columns)}) as in {layout}")
    lines = np.arange(1, len(table) + 1)
    if header:
        found = [c.strip() for c in table.iloc[0]]
        if found != list(columns):
            raise DataError(f"{path}:1: header is {','.join(found)}; expected {','.join(columns)} as in {layout}")
        table, lines = table.iloc[1:], lines[1:]
    blank = (table == "").all(axis=1).to_numpy()
    table = table.iloc[~blank].reset_index(drop=True)
    table.columns = list(columns)
    return table, lines[~blank]


def _first_wrong_width(path: Path, width: int) -> tuple[int, int]:
    """Error path of `read_table`: the first non-blank line whose field count is not `width`."""
    with open(path, newline="", encoding="utf-8-sig") as f:
        reader = csv.reader(f)
        for row in reader:
            if row and len(row) != width:
                return reader.line_num, len(row)
    return 1, width  # not reached for files pandas rejects; keeps the message well formed


def read_pairs(path: Path, layout: str) -> tuple[pd.Series, pd.Series, np.ndarray]:
    """A text file of "name label" lines -> (names, label strings, 1-based line numbers); blank lines skipped,
    anything but exactly two whitespace-separated fields is an error naming the line."""
    text = read_text(path, layout).split("\n")
    fields = pd.Series(text, dtype=object).str.split()
    width = fields.str.len().to_numpy()
    bad = (width != 0) & (width != 2)
    if bad.any():
        i = int(np.argmax(bad))
        raise DataError(f"{path}:{i + 1}: {width[i]} fields in {text[i].strip()[:80]!r}; expected 2 as in {layout}")
    keep = width == 2
    fields = fields[keep]
    return fields.str[0].reset_index(drop=True), fields.str[1].reset_index(drop=True), np.flatnonzero(keep) + 1


def int_values(values: pd.Series, path: Path, lines: np.ndarray, what: str, layout: str,
               low: int | None, high: int | None) -> np.ndarray:
    """Strings -> int64, each an integer within [low, high]; otherwise an error naming the first bad line."""
    text = values.reset_index(drop=True)
    number = pd.to_numeric(text, errors="coerce").to_numpy(dtype=float)
    bad = ~np.isfinite(number) | (number != np.round(number))
    if bad.any():
        i = int(np.argmax(bad))
        raise DataError(f"{path}:{lines[i]}: {what} is {text.iloc[i]!r}, not an integer; expected {layout}")
    number = number.astype(np.int64)
    out = np.zeros(len(number), dtype=bool)
    if low is not None:
        out |= number < low
    if high is not None:
        out |= number > high
    if out.any():
        i = int(np.argmax(out))
        span = f"{low}..{high}" if high is not None else f">= {low}"
        raise DataError(f"{path}:{lines[i]}: {what} {number[i]} is out of range {span}; expected {layout}")
    return number


def float_values(values: pd.Series, path: Path, lines: np.ndarray, what: str, layout: str) -> np.ndarray:
    """Strings -> float64, each a finite number; otherwise an error naming the first bad line."""
    text = values.reset_index(drop=True)
    number = pd.to_numeric(text, errors="coerce").to_numpy(dtype=float)
    bad = ~np.isfinite(number)
    if bad.any():
        i = int(np.argmax(bad))
        raise DataError(f"{path}:{lines[i]}: {what} is {text.iloc[i]!r}, not a number; expected {layout}")
    return number


def repeated(names: list[str]) -> list[str]:
    """The names that occur more than once, sorted."""
    return sorted(name for name, n in Counter(names).items() if n > 1)
