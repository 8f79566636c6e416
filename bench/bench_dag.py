"""DAG scale: the dry run of the default config with the generator set to --videos clips.

    python bench/bench_dag.py [--videos 1000] [--repeat 3] [--actions none|latent|given]

Copies the workflow (Snakefile, rules, schemas, scripts, config, profile) into a temporary
folder, so the repository's .snakemake is untouched, writes an overlay that changes only the
generator's clip count (and `dynamics.actions`), and times
`snakemake -n --quiet rules --configfile config.yaml overlay.yaml` --repeat times, beside
`snakemake --version` (Snakemake's own start). Prints a markdown table: run, seconds, jobs.
Target: the 1,000-video dry run under 5 s.
"""

import argparse
import os
import re
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
COPY = ["Snakefile", "config.yaml", "rules", "schemas", "workflow_scripts", "envs", "report", "profiles"]


def timed(cmd, cwd) -> tuple[float, str]:
    t0 = time.perf_counter()
    env = {**os.environ, "PYTHONPATH": str(ROOT)}  # this repository's package, installed or not
    p = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, env=env)
    if p.returncode:
        raise SystemExit(f"ERROR: {' '.join(cmd)} failed in {cwd}:\n{p.stdout[-3000:]}{p.stderr[-3000:]}")
    return time.perf_counter() - t0, p.stdout


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--videos", type=int, default=1000)
    p.add_argument("--repeat", type=int, default=3)
    p.add_argument("--actions", default="none", choices=["none", "latent", "given"])
    a = p.parse_args()

    work = Path(tempfile.mkdtemp(prefix="bench_dag_"))
    for name in COPY:
        (shutil.copytree if (ROOT / name).is_dir() else shutil.copy)(ROOT / name, work / name)
    source = yaml.safe_load((ROOT / "config.yaml").read_text())["sources"][0]
    source["generator"]["clips"] = a.videos
    (work / "overlay.yaml").write_text(yaml.safe_dump({"sources": [source], "dynamics": {"actions": a.actions}}))
    cmd = ["snakemake", "-n", "--quiet", "rules", "--configfile", "config.yaml", "overlay.yaml"]

    start, _ = timed(["snakemake", "--version"], work)
    rows = []
    for run in range(a.repeat):
        seconds, out = timed(cmd, work)
        jobs = sum(int(n) for n in re.findall(r"^\w+\s+(\d+)$", out.split("total")[0], re.M))
        rows.append((run + 1, seconds, jobs))
    shutil.rmtree(work)
    print(f"\n{a.videos} generated videos, dynamics.actions {a.actions}; `snakemake --version` {start:.2f} s\n")
    print("| run | seconds | jobs |\n|---:|---:|---:|")
    for run, seconds, jobs in rows:
        print(f"| {run} | {seconds:.2f} | {jobs} |")
    print(f"\nbest {min(r[1] for r in rows):.2f} s (target: under 5 s for 1,000 videos)")


if __name__ == "__main__":
    main()
