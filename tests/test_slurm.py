"""The cluster path against a real Slurm: `snakemake --profile slurm` runs the tiny pipeline.

A single-node Slurm (tests/slurm_cluster.py) is started on localhost; the repository's own
slurm/config.yaml is copied into the run directory as `slurm/` with tiny resources (1 CPU,
1 GB, no GPU: the test node has none) and the workflow is run exactly as a user types it.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from conftest import ROOT, tiny_config
from slurm_cluster import CLUSTER, LocalSlurm, _left_by_a_killed_run, install


def test_only_a_killed_runs_link_is_taken_for_stale(tmp_path):
    """A link our killed run left (dangling, or to our conf whose slurmctld is gone) is removed
    before a new cluster starts; a site's own conf, as a file or a link, never is."""
    dead = subprocess.Popen([sys.executable, "-c", ""])
    dead.wait()  # a PID that no longer runs
    ours, theirs = tmp_path / "ours", tmp_path / "theirs"
    for d, name in ((ours, CLUSTER), (theirs, "site")):
        d.mkdir()
        (d / "slurm.conf").write_text(f"ClusterName={name}\nSlurmctldPort=6817\n")
        (d / "slurmctld.pid").write_text(f"{dead.pid}\n")
    link = tmp_path / "slurm.conf"
    link.symlink_to(ours / "slurm.conf")
    assert _left_by_a_killed_run(link)
    (ours / "slurmctld.pid").write_text(f"{os.getpid()}\n")  # its slurmctld still runs
    assert not _left_by_a_killed_run(link)
    link.unlink()
    link.symlink_to(theirs / "slurm.conf")
    assert not _left_by_a_killed_run(link)
    link.unlink()
    link.symlink_to(tmp_path / "gone.conf")
    assert _left_by_a_killed_run(link)
    link.unlink()
    link.write_text(f"ClusterName={CLUSTER}\n")
    assert not _left_by_a_killed_run(link)


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    why = install()
    if why:
        pytest.skip(f"no Slurm on this machine: {why}")
    with LocalSlurm(tmp_path_factory.mktemp("slurm_cluster")) as c:
        yield c


def rule_blocks() -> dict[str, str]:
    """rule name -> its text in rules/*.smk."""
    blocks = {}
    for f in sorted((ROOT / "rules").glob("*.smk")):
        for block in re.split(r"(?m)^(?=(?:rule|checkpoint) \w+:)", f.read_text()):
            m = re.match(r"(?:rule|checkpoint) (\w+):", block)
            if m:
                blocks[m.group(1)] = block
    return blocks


def rule_resources(block: str) -> tuple[int | None, dict[str, str]]:
    """(threads, resources) a rule's text declares."""
    threads = re.search(r"(?m)^    threads: (\d+)", block)
    res = re.search(r"(?m)^    resources:\n((?:        .*\n)+)", block)
    items = dict(re.findall(r"(\w+)=([^,\n]+)", res.group(1))) if res else {}
    return (int(threads.group(1)) if threads else None), items


def tiny_slurm_profile(dest: Path) -> None:
    """The repository's slurm profile with every rule's resources cut to what the test node has (a test's
    own profile: the repository's holds no per-rule keys)."""
    profile = yaml.safe_load((ROOT / "slurm" / "config.yaml").read_text())
    tiny = {"runtime": 10, "mem_mb": 1000, "cpus_per_task": 1}
    profile["default-resources"] = {**profile["default-resources"], **tiny}
    # the rules' threads (8 for training) are capped to the 1-CPU allocation inside the job
    # (Snakemake runs there with --cores all)
    profile["set-resources"] = {rule: {**tiny, "gpu": 0} for rule in rule_blocks()}
    # the plugin waits this long before its first look and 10 s more after each look that finds no job
    # done: on a test node of seconds-long jobs a short start is most of the wall clock
    profile["slurm-init-seconds-before-status-checks"] = 1
    dest.mkdir(parents=True)
    (dest / "config.yaml").write_text(yaml.safe_dump(profile, sort_keys=False))


def slurm_jobs(env: dict) -> dict[int, dict[str, str]]:
    """Job id -> its fields, from `scontrol show job --oneliner` (finished jobs included: the test
    cluster keeps them, MinJobAge in slurm_cluster.py)."""
    p = subprocess.run(["scontrol", "show", "job", "--oneliner"], env=env, stdout=subprocess.PIPE,
                       stderr=subprocess.STDOUT, text=True, timeout=60, check=True)  # fmt: skip
    jobs = {}
    for line in p.stdout.splitlines():
        fields = dict(kv.split("=", 1) for kv in line.split() if "=" in kv)
        if "JobId" in fields:
            jobs[int(fields["JobId"])] = fields
    return jobs


@pytest.mark.slow
def test_profile_is_found_and_complete():
    """`--profile slurm` resolves to ./slurm from the repository root; the profiles hold machine and site keys
    only, and every rule declares its threads and resources, a GPU for the rules that train or roll out."""
    profile = yaml.safe_load((ROOT / "slurm" / "config.yaml").read_text())
    assert profile["executor"] == "slurm"
    assert profile["slurm-status-command"] == "squeue"
    assert "slurm_account" not in profile["default-resources"]  # validated with sacctmgr
    assert "cpus_per_task" not in profile["default-resources"]  # it would override every rule's threads
    workstation = yaml.safe_load((ROOT / "profiles" / "default" / "config.yaml").read_text())
    for keys in (profile, workstation):
        assert not {"set-threads", "set-resources"} & set(keys)
    blocks = rule_blocks()
    assert {"train_tokenizer", "train_lam", "encode_actions", "train_dynamics", "train_refiner", "evaluate_rollouts"} <= set(blocks)
    for rule, block in blocks.items():
        threads, res = rule_resources(block)
        assert threads and {"runtime", "mem_mb"} <= set(res), rule
        assert (res.get("gpu") == "1") == (rule.startswith("train_") or rule == "evaluate_rollouts"), rule
    p = subprocess.run(
        [sys.executable, "-m", "snakemake", "--profile", "slurm", "-n", "--quiet", "rules"],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=300,
    )
    assert p.returncode == 0, p.stdout[-3000:]
    assert "slurm and workflow specific profile profiles/default" in p.stdout


@pytest.mark.slow
def test_tiny_pipeline_runs_as_slurm_jobs(cluster, tmp_path):
    workdir = tmp_path / "run"
    workdir.mkdir()
    (workdir / "config.yaml").write_text(yaml.safe_dump(tiny_config(), sort_keys=False))
    tiny_slurm_profile(workdir / "slurm")
    cmd = [
        "timeout", "-s", "INT", "-k", "30", "600",
        sys.executable, "-m", "snakemake", "--profile", "slurm",
        "--snakefile", str(ROOT / "Snakefile"), "--configfile", "config.yaml",
    ]  # fmt: skip
    t0 = time.perf_counter()
    p = subprocess.run(cmd, cwd=workdir, env=cluster.env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    wall = time.perf_counter() - t0
    (tmp_path / "snakemake.out").write_text(p.stdout)
    assert p.returncode == 0, f"snakemake --profile slurm failed ({p.returncode}) after {wall:.0f} s:\n{p.stdout[-6000:]}"
    print(f"tiny pipeline through Slurm: {wall:.1f} s wall")

    for out in ("results/dynamics/dynamics.pt", "results/eval/default/metrics.csv", "results/eval/default/summary.json"):
        assert (workdir / out).exists(), out

    # every non-local job was submitted: Snakemake names its Slurm job id ...
    ids = [int(i) for i in re.findall(r"SLURM jobid (\d+)", p.stdout)]
    assert len(ids) >= 10, p.stdout[-3000:]
    # ... Slurm itself ran each of them to completion on the node (asked, not read from a log:
    # the log line differs between the main and the backfill scheduler) ...
    jobs = slurm_jobs(cluster.env)
    for i in ids:
        assert i in jobs, (i, sorted(jobs))
        assert (jobs[i]["JobState"], jobs[i]["NodeList"]) == ("COMPLETED", "localhost"), jobs[i]
    # ... and the plugin kept one log per job, named by its id, under the rule's folder
    logs = {int(f.stem): f for f in (workdir / ".snakemake" / "slurm_logs").rglob("*.log")}
    assert set(ids) <= set(logs), (sorted(ids), sorted(logs))
    rules_run = {f.relative_to(workdir / ".snakemake" / "slurm_logs").parts[0] for f in logs.values()}
    for rule in ("extract_frames", "train_tokenizer", "encode_latents", "train_dynamics", "evaluate_rollouts"):
        assert f"rule_{rule}" in rules_run, rules_run
    # download rules stay local: compute nodes may have no internet
    assert not any(r.startswith(("rule_download", "rule_resolve_source")) for r in rules_run), rules_run
