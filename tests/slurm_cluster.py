"""A real single-node Slurm cluster on localhost, for the cluster-path tests.

    python tests/slurm_cluster.py DIR      # install if missing, start, print the env to use, wait
                                           # for Ctrl-C, then stop the daemons

`LocalSlurm(dir)` installs Debian's slurmctld, slurmd, slurm-client and munge when they are
missing (apt, as root), writes a slurm.conf under `dir` (no cgroups, no systemd, no slurmdbd),
starts munged (if none runs), slurmctld and slurmd, waits for the node to be idle, and on exit
stops exactly the daemons it started, by PID.

Clients find the cluster through SLURM_CONF. Jobs need one more thing: the Slurm executor's job
step drops every SLURM_* variable but the job's identity before its nested `srun`, so srun reads
the default /etc/slurm/slurm.conf. While the cluster runs, that path is a symlink to our
slurm.conf; it is created only where no file is there (a site's own Slurm is never touched) or
where a killed run of ours left its link, and removed on stop.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

from apt import apt_install

SYSTEM_CONF = Path("/etc/slurm/slurm.conf")
CLUSTER = "latentwm"
PACKAGES = ["slurmctld", "slurmd", "slurm-client", "munge"]
BINARIES = ["slurmctld", "slurmd", "sbatch", "squeue", "sinfo", "munged"]


def missing_binaries() -> list[str]:
    return [b for b in BINARIES if shutil.which(b) is None and not Path("/usr/sbin", b).exists()]


def install() -> str | None:
    """Install the Slurm packages with apt when missing; None on success, else why not."""
    return apt_install(PACKAGES, missing_binaries, "Slurm")


def _sbin(name: str) -> str:
    return shutil.which(name) or str(Path("/usr/sbin", name))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _node_hardware() -> dict[str, int]:
    """CPUs and RealMemory (MB) as slurmd itself measures them (`slurmd -C`)."""
    out = subprocess.run([_sbin("slurmd"), "-C"], stdout=subprocess.PIPE, text=True, check=True).stdout
    fields = dict(kv.split("=", 1) for kv in out.split() if "=" in kv)
    return {"cpus": int(fields["CPUs"]), "mem_mb": int(fields["RealMemory"])}


def _left_by_a_killed_run(link: Path) -> bool:
    """True when `link` is a symlink a LocalSlurm made and did not remove (its run was killed):
    it dangles, or it points at a slurm.conf of ours whose slurmctld no longer runs. A site's own
    slurm.conf (a file, or a link to a conf of another cluster) is never ours."""
    if not link.is_symlink():
        return False
    if not link.exists():
        return True
    conf = link.read_text()
    if not conf.startswith(f"ClusterName={CLUSTER}\n"):
        return False
    pidfile = Path(link.resolve().parent, "slurmctld.pid")
    try:
        os.kill(int(pidfile.read_text().strip()), 0)
    except (FileNotFoundError, ValueError, ProcessLookupError):
        return True
    except PermissionError:
        return False
    return False


class LocalSlurm:
    """Context manager: a started single-node cluster; `.env` is the environment for its clients."""

    def __init__(self, root: str | Path, timeout: float = 60):
        self.root = Path(root).resolve()
        self.timeout = timeout
        self.pids: dict[str, int] = {}
        self.hw = _node_hardware()
        self.env = {**os.environ, "SLURM_CONF": str(self.root / "slurm.conf")}
        self.linked_conf = False

    def _write_conf(self):
        r = self.root
        for d in ("state", "spool"):
            (r / d).mkdir(parents=True, exist_ok=True)
        host = socket.gethostname().split(".")[0]
        conf = f"""\
ClusterName={CLUSTER}
SlurmctldHost={host}(127.0.0.1)
SlurmctldPort={_free_port()}
SlurmdPort={_free_port()}
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
StateSaveLocation={r}/state
SlurmdSpoolDir={r}/spool
SlurmctldPidFile={r}/slurmctld.pid
SlurmdPidFile={r}/slurmd.pid
SlurmctldLogFile={r}/slurmctld.log
SlurmdLogFile={r}/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/affinity
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
AccountingStorageType=accounting_storage/none
JobAcctGatherType=jobacct_gather/none
JobCompType=jobcomp/none
# finished jobs stay in slurmctld for a day, so `scontrol show job` can account for every job of
# a test run (there is no slurmdbd for sacct; the default of 300 s forgets the first jobs)
MinJobAge=86400
MpiDefault=none
ReturnToService=2
SchedulerType=sched/backfill
SlurmdTimeout=60
NodeName=localhost NodeAddr=127.0.0.1 CPUs={self.hw['cpus']} RealMemory={self.hw['mem_mb']} State=UNKNOWN
PartitionName=main Nodes=localhost Default=YES MaxTime=INFINITE State=UP
"""
        (r / "slurm.conf").write_text(conf)

    def _munge_running(self) -> bool:
        return subprocess.run(["munge", "-n"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL).returncode == 0

    def _start(self, name: str, cmd: list[str], user: str | None = None):
        log = open(self.root / f"{name}.out", "w")
        p = subprocess.Popen(
            cmd, env=self.env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True, user=user, group=user
        )
        self.pids[name] = p.pid  # the daemons run in the foreground (-D, -F), so this is their PID
        time.sleep(0.2)
        if p.poll() is not None:
            raise RuntimeError(f"{name} exited at once ({p.returncode}): {(self.root / f'{name}.out').read_text()[-2000:]}")

    def start(self):
        self._write_conf()
        if _left_by_a_killed_run(SYSTEM_CONF):
            SYSTEM_CONF.unlink()
        if SYSTEM_CONF.exists() or SYSTEM_CONF.is_symlink():
            raise RuntimeError(f"{SYSTEM_CONF} exists (a Slurm is configured here); not starting a test cluster over it")
        SYSTEM_CONF.parent.mkdir(parents=True, exist_ok=True)
        SYSTEM_CONF.symlink_to(self.root / "slurm.conf")
        self.linked_conf = True
        if not self._munge_running():
            Path("/run/munge").mkdir(parents=True, exist_ok=True)
            shutil.chown("/run/munge", "munge", "munge")
            self._start("munged", [_sbin("munged"), "-F"], user="munge")
            deadline = time.time() + 10
            while not self._munge_running():
                if time.time() > deadline:
                    raise RuntimeError("munged did not answer within 10 s")
                time.sleep(0.2)
        self._start("slurmctld", [_sbin("slurmctld"), "-D", "-i"])
        self._start("slurmd", [_sbin("slurmd"), "-D", "-N", "localhost"])
        deadline = time.time() + self.timeout
        while True:
            p = subprocess.run(["sinfo", "-h", "-o", "%t"], env=self.env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
            if p.returncode == 0 and p.stdout.strip() == "idle":
                return self
            if time.time() > deadline:
                raise RuntimeError(f"the node did not become idle in {self.timeout} s (sinfo: {p.stdout.strip()!r}); "
                                   f"see {self.root}/slurmctld.log and slurmd.log")
            time.sleep(0.3)

    def stop(self):
        """Cancel this cluster's jobs, then stop the daemons this object started, newest first,
        by PID (SIGTERM, then SIGKILL after 10 s)."""
        if "slurmctld" in self.pids:
            subprocess.run(["scancel", "--full", "--user", str(os.getuid())], env=self.env,
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=30)
        for name in reversed(list(self.pids)):
            pid = self.pids.pop(name)
            try:
                os.kill(pid, signal.SIGTERM)
            except ProcessLookupError:
                continue
            deadline = time.time() + 10
            while time.time() < deadline:
                try:
                    if os.waitpid(pid, os.WNOHANG)[0]:
                        break
                except ChildProcessError:
                    break
                time.sleep(0.1)
            else:
                os.kill(pid, signal.SIGKILL)
                os.waitpid(pid, 0)
        if self.linked_conf and SYSTEM_CONF.is_symlink():
            SYSTEM_CONF.unlink()
            self.linked_conf = False

    def __enter__(self):
        try:
            return self.start()
        except BaseException:
            self.stop()
            raise

    def __exit__(self, *exc):
        self.stop()


if __name__ == "__main__":
    root = Path(sys.argv[1] if len(sys.argv) > 1 else "slurm-local")
    why = install()
    if why:
        sys.exit(f"cannot set up Slurm: {why}")

    def interrupt(signum, frame):
        raise KeyboardInterrupt

    # a background process of a non-interactive shell ignores SIGINT: SIGTERM stops it too
    signal.signal(signal.SIGINT, interrupt)
    signal.signal(signal.SIGTERM, interrupt)
    with LocalSlurm(root) as cluster:
        print(f"cluster up; in another shell: export SLURM_CONF={cluster.env['SLURM_CONF']}; Ctrl-C stops it", flush=True)
        try:
            signal.pause()
        except KeyboardInterrupt:
            pass
