"""Debian packages the tests need (Slurm, Chromium), installed with apt when missing and allowed."""

from __future__ import annotations

import os
import shutil
import subprocess
from typing import Callable


def apt_install(packages: list[str], missing: Callable[[], list[str]], what: str) -> str | None:
    """Install `packages` when `missing()` names absent binaries; None once none is missing, else why not."""
    if not missing():
        return None
    if os.geteuid() != 0:
        return f"{what} is not installed ({', '.join(missing())} missing) and installing needs root"
    if shutil.which("apt-get") is None:
        return f"{what} is not installed and this machine has no apt-get to install Debian's packages"
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    for cmd in (["apt-get", "update"], ["apt-get", "install", "-y", "--no-install-recommends", *packages]):
        p = subprocess.run(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=900)
        if p.returncode != 0:
            return f"`{' '.join(cmd)}` failed ({p.returncode}): {p.stdout.strip().splitlines()[-1:]}"
    return f"apt installed {packages} but {missing()} are still missing" if missing() else None
