"""The training curve: running means between log steps, the CSV, the log line, the plateau check.

Each logged step is one row of the curve CSV (results/*/train_curve.csv): step, loss, grad_norm,
the objective's own logs (1-d logs become name_0, name_1, ...), lr, batches/s, memory and the
probe's figures. The CSV is rewritten atomically at every log step, so a kill leaves the last
complete curve, never half a row.
"""

from __future__ import annotations

import csv
import math
import resource
import time
from pathlib import Path
from typing import Any, Callable

import torch

from latentwm.core import files


def memory_mb(device: torch.device) -> float:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux reports KiB


class Mean:
    """Running means of the logs between two log lines; 1-d values are averaged per index."""

    def __init__(self):
        self.sums: dict[str, Any] = {}
        self.counts: dict[str, Any] = {}

    def add(self, logs: dict[str, Any]):
        for k, v in logs.items():
            if torch.is_tensor(v) and v.ndim == 1:
                for i, x in enumerate(v.detach().float().cpu().tolist()):
                    if math.isnan(x):  # no value at this position in this batch
                        continue
                    key = f"{k}_{i}"
                    self.sums[key] = self.sums.get(key, 0.0) + x
                    self.counts[key] = self.counts.get(key, 0) + 1
            elif k.endswith("_min") or k.endswith("_max"):
                x = float(v)
                prev = self.sums.get(k)
                self.sums[k] = x if prev is None else (min(prev, x) if k.endswith("_min") else max(prev, x))
                self.counts[k] = 1
            else:
                self.sums[k] = self.sums.get(k, 0.0) + float(v)
                self.counts[k] = self.counts.get(k, 0) + 1

    def pop(self) -> dict[str, float]:
        out = {k: self.sums[k] / self.counts[k] for k in self.sums}
        self.sums, self.counts = {}, {}
        return out


def write_csv(path: Path, rows: list[dict[str, float]], then: str = ""):
    cols: list[str] = []
    for r in rows:
        cols += [k for k in r if k not in cols]

    def fill(tmp: Path) -> None:
        with open(tmp, "w", newline="") as f:
            w = csv.DictWriter(f, fieldnames=cols)
            w.writeheader()
            w.writerows(rows)

    files.write(path, fill, then)


def fmt_eta(seconds: float) -> str:
    m, s = divmod(int(seconds), 60)
    h, m = divmod(m, 60)
    return f"{h}h{m:02d}m" if h else f"{m}m{s:02d}s"


def plateau_check(rows: list[dict[str, float]], key: str = "loss") -> dict[str, Any]:
    """Compare the mean loss of the first and last tenth of the logged rows: a loss that has not
    fallen by half is flagged."""
    vals = [r[key] for r in rows if key in r]
    if len(vals) < 4:
        return {"flagged": False, "reason": "too few log rows to judge"}
    k = max(1, len(vals) // 10)
    first, last = sum(vals[:k]) / k, sum(vals[-k:]) / k
    drop = 1 - last / first if first > 0 else 0.0
    return {"first": first, "last": last, "drop_fraction": drop, "flagged": drop < 0.5}


class Curve:
    """Rows of one run (restored ones first), their CSV at `path` (rank 0 only) and the log lines."""

    def __init__(self, name: str, path: Path, steps: int, every: int, rows: list, step: int, log: Callable, write: bool):
        self.name, self.path, self.steps, self.every, self.log, self.write = name, path, steps, every, log, write
        if write:
            path.parent.mkdir(parents=True, exist_ok=True)
        self.rows, self.acc = rows, Mean()
        self.t_last = self.t_start = time.perf_counter()
        self.step_start = step

    def due(self, step: int) -> bool:
        return step % self.every == 0 or step == self.steps

    def add(self, logs: dict[str, Any]) -> None:
        self.acc.add(logs)

    def row(self, step: int, lr: float, device: torch.device, probe: dict[str, Any] | None, then: str) -> None:
        """Close the rows since the last log step into one: CSV rewritten, one log line."""
        now = time.perf_counter()
        row = {"step": step, **self.acc.pop()}
        row["lr"] = lr
        row["batches_per_s"] = (self.every if step % self.every == 0 else step % self.every) / (now - self.t_last)
        row["memory_mb"] = memory_mb(device)
        row.update({f"probe_{k}": float(v) for k, v in (probe or {}).items() if isinstance(v, (int, float))})
        self.rows.append(row)
        if self.write:
            write_csv(self.path, self.rows, then)
        eta = (now - self.t_start) / (step - self.step_start) * (self.steps - step)
        parts = " ".join(
            f"{k} {row[k]:.4g}" for k in row if k not in ("step", "loss", "lr", "batches_per_s", "memory_mb")
            and not k[-1].isdigit()
        )
        self.log(
            f"[{self.name}] step {step}/{self.steps} ({100 * step / self.steps:.0f}%) loss {row['loss']:.5f} {parts} "
            f"lr {row['lr']:.2e} {row['batches_per_s']:.1f} b/s mem {row['memory_mb']:.0f}MB eta {fmt_eta(eta)}"
        )
        self.t_last = now

    def finish(self, step: int, then: str) -> None:
        if not self.rows and self.write:  # resumed at the very end: nothing new was logged
            write_csv(self.path, [{"step": step}], then)
