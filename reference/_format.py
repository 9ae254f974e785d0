"""``repr(tensor)`` as torch prints it (a transcription of torch/_tensor_str.py's defaults)."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

import numpy as np

from reference._dtypes import DEFAULT_FLOAT, dtype_repr, int64

if TYPE_CHECKING:
    from reference._tensor import Tensor

PRECISION = 4
THRESHOLD = 1000
EDGE_ITEMS = 3
LINE_WIDTH = 80


class _Formatter:
    """Chooses integer, fixed or scientific notation and a common width, like torch's."""

    def __init__(self, values: np.ndarray) -> None:
        self.floating = values.dtype.kind == "f"
        self.int_mode = True
        self.sci_mode = False
        self.max_width = 1
        flat = values.reshape(-1)
        if not self.floating:
            for value in flat.tolist():
                self.max_width = max(self.max_width, len(f"{value}"))
            return
        finite = flat[np.isfinite(flat) & (flat != 0)]
        if finite.size == 0:
            return
        magnitudes = np.abs(finite).astype(np.float64)
        smallest, largest = float(magnitudes.min()), float(magnitudes.max())
        self.int_mode = bool(np.all(finite == np.ceil(finite)))
        self.sci_mode = largest / smallest > 1000.0 or largest > 1.0e8 or smallest < 1.0e-4
        for value in finite.tolist():
            if self.sci_mode:
                width = len(f"{value:.{PRECISION}e}")
            elif self.int_mode:
                width = len(f"{value:.0f}") + 1
            else:
                width = len(f"{value:.{PRECISION}f}")
            self.max_width = max(self.max_width, width)

    def format(self, value: Any) -> str:
        if not self.floating:
            text = f"{value}"
        elif self.sci_mode:
            text = f"{value:{self.max_width}.{PRECISION}e}"
        elif self.int_mode:
            text = f"{value:.0f}"
            if not (math.isinf(value) or math.isnan(value)):
                text += "."
        else:
            text = f"{value:.{PRECISION}f}"
        return (self.max_width - len(text)) * " " + text


def _summarized(values: np.ndarray) -> np.ndarray:
    if values.ndim == 0:
        return values
    if values.ndim == 1:
        if values.shape[0] > 2 * EDGE_ITEMS:
            return np.concatenate((values[:EDGE_ITEMS], values[-EDGE_ITEMS:]))
        return values
    rows = list(range(values.shape[0]))
    if values.shape[0] > 2 * EDGE_ITEMS:
        rows = rows[:EDGE_ITEMS] + rows[-EDGE_ITEMS:]
    return np.stack([_summarized(values[i]) for i in rows])


def _vector(values: np.ndarray, indent: int, summarize: bool, formatter: _Formatter) -> str:
    per_line = max(1, math.floor((LINE_WIDTH - indent) / (formatter.max_width + 2)))
    if summarize and values.shape[0] > 2 * EDGE_ITEMS:
        items = (
            [formatter.format(v) for v in values[:EDGE_ITEMS].tolist()]
            + [" ..."]
            + [formatter.format(v) for v in values[-EDGE_ITEMS:].tolist()]
        )
    else:
        items = [formatter.format(v) for v in values.tolist()]
    lines = [", ".join(items[i : i + per_line]) for i in range(0, len(items), per_line)]
    return "[" + (",\n" + " " * (indent + 1)).join(lines) + "]"


def _nested(values: np.ndarray, indent: int, summarize: bool, formatter: _Formatter) -> str:
    if values.ndim == 0:
        return formatter.format(values.item())
    if values.ndim == 1:
        return _vector(values, indent, summarize, formatter)
    rows: list[str] = []
    count = values.shape[0]
    if summarize and count > 2 * EDGE_ITEMS:
        rows = [_nested(values[i], indent + 1, summarize, formatter) for i in range(EDGE_ITEMS)]
        rows.append("...")
        rows += [
            _nested(values[i], indent + 1, summarize, formatter) for i in range(count - EDGE_ITEMS, count)
        ]
    else:
        rows = [_nested(values[i], indent + 1, summarize, formatter) for i in range(count)]
    return "[" + ("," + "\n" * (values.ndim - 1) + " " * (indent + 1)).join(rows) + "]"


def _add_suffixes(text: str, suffixes: list[str], indent: int) -> str:
    parts = [text]
    last_line_length = len(text) - text.rfind("\n") + 1
    for suffix in suffixes:
        if last_line_length + len(suffix) + 2 > LINE_WIDTH:
            parts.append(",\n" + " " * indent + suffix)
            last_line_length = indent + len(suffix)
        else:
            parts.append(", " + suffix)
            last_line_length += len(suffix) + 2
    parts.append(")")
    return "".join(parts)


def tensor_repr(tensor: Tensor) -> str:
    prefix = "tensor("
    indent = len(prefix)
    values = tensor._data
    suffixes: list[str] = []
    if values.size == 0:
        if values.ndim != 1:
            suffixes.append(f"size={values.shape}")
        if values.dtype != DEFAULT_FLOAT:
            suffixes.append(f"dtype={dtype_repr(values.dtype)}")
        body = "[]"
    else:
        if values.dtype not in (DEFAULT_FLOAT, int64, np.dtype(bool)):
            suffixes.append(f"dtype={dtype_repr(values.dtype)}")
        summarize = values.size > THRESHOLD
        formatter = _Formatter(_summarized(values) if summarize else values)
        body = _nested(values, indent, summarize, formatter)
    if tensor.grad_fn is not None:
        suffixes.append(f"grad_fn=<{tensor.grad_fn.name()}>")
    elif tensor._requires_grad:
        suffixes.append("requires_grad=True")
    return _add_suffixes(prefix + body, suffixes, indent)
