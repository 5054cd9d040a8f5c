"""A throw-away, real, single-node Slurm cluster on localhost for tests.

Stdlib only. tests/test_slurm.py loads it by path and wraps it in the
module-scoped ``slurm_cluster`` fixture; running the real workflow is one call::

    proc = slurm_cluster.run_snakemake(tmp_path, snakefile=REPO / "Snakefile",
                                       targets=[...], configfiles=[tiny_yaml], timeout=600)
    assert proc.returncode == 0, _fail_msg(proc, slurm_cluster, tmp_path)

Standalone: ``CI=true python tests/slurm/cluster.py`` starts it, prints sinfo, stops.

What it does (facts from DESIGN.md section 8):

* writes ``/etc/slurm/slurm.conf`` and ``/etc/slurm/gres.conf`` (the slurm-jobstep
  executor plugin strips ``SLURM_CONF``, so the config must be at the default path);
  pre-existing files are backed up beside themselves and restored on stop;
* one node ``localhost`` with ``CPUs=$(nproc)``, ``RealMemory`` a bit below the
  machine's memory and one fake GPU (``Gres=gpu:1``, ``File=/dev/null``);
  ``TaskPlugin=task/affinity``, ``ProctrackType=proctrack/linuxproc``, no cgroups,
  no accounting (no slurmdbd), ``MinJobAge`` >= 3x the executor plugin's
  ``init-seconds-before-status-checks`` so that ``squeue`` status polling is accepted;
  a ``TaskProlog`` that writes each job's ``CUDA_VISIBLE_DEVICES`` / ``SLURM_JOB_GPUS``
  into the job's own log (``hideseek-task-prolog: job=N cuda=0 gpus=0``), so a test sees
  the GPU binding from inside the job; :meth:`SlurmCluster.jobs` reads slurmctld's job
  records (``scontrol show job -d``: ``JOB_GRES``, ``TresPerJob``, ``CpusPerTres``);
* runs its own ``munged`` (own key and socket in the temp dir, so a system munged is
  neither needed nor touched), ``slurmctld`` and ``slurmd``, all in the foreground
  (``-F``/``-D``) as children of this process, logs in the temp dir;
* stops them by PID on every exit path: context manager, ``atexit``,
  ``KeyboardInterrupt`` and SIGTERM (turned into ``SystemExit`` while the cluster
  runs, if nobody else handles it); ``stop()`` cancels leftover jobs first and is
  idempotent. The daemons share the caller's process group, so a group-wide kill
  (``timeout``, CI cancel) reaches them too.

Must run as root; :func:`skip_reason` also demands ``CI=true`` or
``HIDESEEK_SLURM_TESTS=1`` because it rewrites files under /etc.
"""

from __future__ import annotations

import atexit
import fcntl
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

SLURM_DIR = Path("/etc/slurm")
MARKER = "# written by cxr-hideseek tests/slurm/cluster.py - safe to delete"
BACKUP_SUFFIX = ".hideseek-backup"
NODE = "localhost"
PARTITION = "debug"
# The executor plugin's default --slurm-init-seconds-before-status-checks is 40 s
# and it only trusts squeue when MinJobAge >= 3 x that value (else it falls back
# to sacct, which has no slurmdbd here and hangs). 300 s leaves room for 100 s.
MIN_JOB_AGE = 300
LOCK_FILE = Path(tempfile.gettempdir()) / "hideseek-slurm-cluster.lock"
REQUIRED_BINARIES = ("munged", "slurmctld", "slurmd", "sinfo", "squeue", "sbatch", "scontrol")


class SlurmClusterError(RuntimeError):
    """The cluster could not be started (message carries the daemon logs)."""


def skip_reason() -> str | None:
    """Why the Slurm tests must not run here, or None when they may."""
    allowed = os.environ.get("CI", "").lower() == "true" or os.environ.get(
        "HIDESEEK_SLURM_TESTS", ""
    ) == "1"
    if not allowed:
        return (
            "Slurm tests rewrite /etc/slurm and start daemons: set CI=true or "
            "HIDESEEK_SLURM_TESTS=1 to run them"
        )
    if os.geteuid() != 0:
        return "Slurm tests need root (they write /etc/slurm and run slurmd)"
    missing = [b for b in REQUIRED_BINARIES if shutil.which(b) is None]
    if missing:
        return (
            f"Slurm binaries not installed ({', '.join(missing)}); "
            "run .ci/install_slurm.sh"
        )
    return None


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _real_memory_mb() -> int:
    """Machine memory in MB, minus a margin, so slurmd never drains the node."""
    with open("/proc/meminfo") as fh:
        for line in fh:
            if line.startswith("MemTotal:"):
                total_mb = int(line.split()[1]) // 1024
                break
        else:  # pragma: no cover - every Linux has MemTotal
            total_mb = 2048
    return max(512, min(int(total_mb * 0.9), total_mb - 1024))


def _tail(path: Path, n: int = 40) -> str:
    try:
        lines = path.read_text(errors="replace").splitlines()
    except OSError:
        return "(missing)"
    return "\n".join(lines[-n:]) or "(empty)"


class SlurmCluster:
    """A single-node Slurm cluster; use as a context manager or start()/stop()."""

    def __init__(
        self,
        min_job_age: int = MIN_JOB_AGE,
        cpus: int | None = None,
        start_timeout: float = 60.0,
        keep_tmp: bool = False,
    ):
        self.min_job_age = min_job_age
        self.cpus = cpus or len(os.sched_getaffinity(0))  # = nproc
        self.real_memory = _real_memory_mb()
        self.start_timeout = start_timeout
        self.keep_tmp = keep_tmp
        self.tmp: Path | None = None
        self.procs: dict[str, subprocess.Popen] = {}
        self._written: list[Path] = []
        self._backups: dict[Path, Path] = {}
        self._started = False
        self._old_sigterm = None
        self._lock = None

    # ------------------------------------------------------------------ config
    def _slurm_conf(self) -> str:
        t = self.tmp
        return f"""{MARKER}
ClusterName=hideseek
SlurmctldHost={NODE}
SlurmctldPort={self.ctld_port}
SlurmdPort={self.slurmd_port}
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket={t}/munge/munge.socket
StateSaveLocation={t}/state
SlurmdSpoolDir={t}/spool
SlurmctldPidFile={t}/slurmctld.pid
SlurmdPidFile={t}/slurmd.pid
SlurmctldLogFile={t}/slurmctld.log
SlurmdLogFile={t}/slurmd.log
SlurmctldDebug=info
SlurmdDebug=info
ProctrackType=proctrack/linuxproc
TaskPlugin=task/affinity
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/none
MpiDefault=none
SwitchType=switch/none
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
GresTypes=gpu
# writes each job's GPU binding into its own log (see _task_prolog)
TaskProlog={t}/task_prolog.sh
MailProg=/bin/true
ReturnToService=2
# trust the CPUs/RealMemory written here over what slurmd detects (no drain on
# topology mismatches in containers)
SlurmdParameters=config_overrides
MinJobAge={self.min_job_age}
SlurmctldTimeout=30
SlurmdTimeout=30
InactiveLimit=0
KillWait=5
NodeName={NODE} NodeAddr=127.0.0.1 CPUs={self.cpus} RealMemory={self.real_memory} Gres=gpu:1 State=UNKNOWN
PartitionName={PARTITION} Nodes={NODE} Default=YES MaxTime=INFINITE State=UP
"""

    @staticmethod
    def _task_prolog() -> str:
        # slurmstepd runs this before each task (the batch step too); a `print` line goes to
        # the task's stdout, i.e. the job log. Slurm sets CUDA_VISIBLE_DEVICES and
        # SLURM_JOB_GPUS from the GPU it bound to the job (gres.conf's File=).
        return (
            "#!/bin/sh\n"
            'echo "print hideseek-task-prolog: job=$SLURM_JOB_ID'
            ' cuda=${CUDA_VISIBLE_DEVICES:-unset} gpus=${SLURM_JOB_GPUS:-unset}"\n'
        )

    def _gres_conf(self) -> str:
        return f"{MARKER}\nNodeName={NODE} Name=gpu File=/dev/null\n"

    def _write_etc(self, name: str, text: str) -> None:
        path = SLURM_DIR / name
        backup = path.with_name(path.name + BACKUP_SUFFIX)
        SLURM_DIR.mkdir(parents=True, exist_ok=True)
        if path.exists() and not backup.exists():
            if MARKER not in path.read_text(errors="replace"):
                # a real, pre-existing config: keep it to restore on stop
                shutil.copy2(path, backup)
        if backup.exists():
            self._backups[path] = backup
        path.write_text(text)
        self._written.append(path)

    def _restore_etc(self) -> None:
        for path in self._written:
            backup = self._backups.get(path)
            try:
                if backup is not None and backup.exists():
                    os.replace(backup, path)
                elif path.exists() and MARKER in path.read_text(errors="replace"):
                    path.unlink()
            except OSError as exc:  # pragma: no cover - best effort
                print(f"slurm cluster: could not restore {path}: {exc}", file=sys.stderr)
        self._written.clear()
        self._backups.clear()

    # ---------------------------------------------------------------- daemons
    def _spawn(self, name: str, argv: list[str]) -> None:
        out = open(self.tmp / f"{name}.out", "wb")
        try:
            self.procs[name] = subprocess.Popen(
                argv, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT
            )
        finally:
            out.close()

    def env(self) -> dict[str, str]:
        """Environment for Slurm clients: no stray SLURM_* (e.g. SLURM_CONF), so
        they read /etc/slurm/slurm.conf like the jobstep plugin does."""
        return {k: v for k, v in os.environ.items() if not k.startswith("SLURM_")}

    def _run(self, *argv: str, timeout: float = 15) -> subprocess.CompletedProcess:
        return subprocess.run(
            list(argv), capture_output=True, text=True, timeout=timeout, env=self.env()
        )

    def logs(self) -> str:
        parts = []
        for name in ("munged.log", "munged.out", "slurmctld.log", "slurmctld.out",
                     "slurmd.log", "slurmd.out"):
            parts.append(f"--- {name} (tail) ---\n{_tail(self.tmp / name)}")
        return "\n".join(parts)

    def _fail(self, what: str) -> None:
        msg = f"Slurm test cluster: {what}\n{self.logs()}"
        self.stop()
        raise SlurmClusterError(msg)

    def _wait(self, what: str, ok, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for name, proc in list(self.procs.items()):
                if proc.poll() is not None:
                    self._fail(f"{name} exited with code {proc.returncode} while waiting for {what}")
            if ok():
                return
            time.sleep(0.25)
        self._fail(f"timed out after {timeout:.0f} s waiting for {what}")

    def start(self) -> "SlurmCluster":
        if self._started:
            return self
        # one cluster per machine: they would share /etc/slurm
        self._lock = open(LOCK_FILE, "a")
        try:
            fcntl.flock(self._lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            self._lock.close()
            self._lock = None
            raise SlurmClusterError(
                f"another test cluster holds {LOCK_FILE}; only one can run at a time"
            ) from None
        self._started = True
        atexit.register(self.stop)
        self._install_sigterm()
        self.tmp = Path(tempfile.mkdtemp(prefix="hideseek-slurm-"))
        try:
            self._start()
        except BaseException:
            self.stop()
            raise
        return self

    def _install_sigterm(self) -> None:
        """Turn SIGTERM (CI timeouts) into SystemExit so that stop() still runs."""
        self._old_sigterm = None
        if threading.current_thread() is not threading.main_thread():
            return
        if signal.getsignal(signal.SIGTERM) != signal.SIG_DFL:
            return

        def _on_sigterm(signum, frame):
            raise SystemExit(128 + signum)

        self._old_sigterm = signal.signal(signal.SIGTERM, _on_sigterm)

    def _restore_sigterm(self) -> None:
        if self._old_sigterm is not None and (
            threading.current_thread() is threading.main_thread()
        ):
            signal.signal(signal.SIGTERM, self._old_sigterm)
        self._old_sigterm = None

    def _start(self) -> None:
        t = self.tmp
        t.chmod(0o755)  # munged wants its socket's directories world-executable
        for sub in ("munge", "state", "spool"):
            (t / sub).mkdir(mode=0o755 if sub == "munge" else 0o700)
        self.ctld_port = _free_port()
        self.slurmd_port = _free_port()
        while self.slurmd_port == self.ctld_port:
            self.slurmd_port = _free_port()

        # munge: private key and socket, so nothing system-wide is touched
        key = t / "munge" / "munge.key"
        fd = os.open(key, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o400)
        with os.fdopen(fd, "wb") as fh:
            fh.write(os.urandom(1024))
        sock = t / "munge" / "munge.socket"
        self._spawn("munged", [
            "munged", "--foreground", "--force",
            f"--socket={sock}", f"--key-file={key}",
            f"--log-file={t / 'munged.log'}", f"--pid-file={t / 'munged.pid'}",
            f"--seed-file={t / 'munge' / 'munged.seed'}",
        ])
        self._wait("munged socket", sock.exists, 15)

        prolog = t / "task_prolog.sh"
        prolog.write_text(self._task_prolog())
        prolog.chmod(0o755)
        self._write_etc("gres.conf", self._gres_conf())
        self._write_etc("slurm.conf", self._slurm_conf())

        self._spawn("slurmctld", ["slurmctld", "-D", "-c"])
        def ctld_up() -> bool:
            r = self._run("scontrol", "ping")
            return r.returncode == 0 and "UP" in r.stdout

        self._wait("slurmctld to answer `scontrol ping`", ctld_up, self.start_timeout)
        self._spawn("slurmd", ["slurmd", "-D", "-N", NODE])

        def node_idle() -> bool:
            r = self._run("sinfo", "--noheader", "--nodes", NODE, "--format=%T")
            return r.returncode == 0 and r.stdout.strip().rstrip("*") == "idle"

        self._wait(f"node {NODE} to become idle in sinfo", node_idle, self.start_timeout)

    def stop(self) -> None:
        """Cancel jobs, stop daemons by PID, restore /etc/slurm; idempotent."""
        if not self._started:
            return
        self._started = False
        try:
            atexit.unregister(self.stop)
        except Exception:  # pragma: no cover
            pass
        ctld = self.procs.get("slurmctld")
        if ctld is not None and ctld.poll() is None:
            self._cancel_jobs()
        # reverse start order: slurmd, slurmctld, munged
        for name in ("slurmd", "slurmctld", "munged"):
            proc = self.procs.get(name)
            if proc is None:
                continue
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
                try:
                    proc.wait(timeout=15)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait(timeout=5)
        self.procs.clear()
        self._restore_etc()
        self._restore_sigterm()
        if self._lock is not None:
            self._lock.close()  # releases the flock
            self._lock = None
        if self.tmp is not None and not self.keep_tmp:
            shutil.rmtree(self.tmp, ignore_errors=True)

    def _cancel_jobs(self) -> None:
        try:
            r = self._run("squeue", "--noheader", "--format=%i", "--states=PD,R,CG,S,CF")
            if r.returncode != 0 or not r.stdout.strip():
                return
            self._run("scancel", *r.stdout.split())
            deadline = time.monotonic() + 20
            while time.monotonic() < deadline:
                r = self._run("squeue", "--noheader", "--format=%i",
                              "--states=PD,R,CG,S,CF")
                if r.returncode != 0 or not r.stdout.strip():
                    return
                time.sleep(0.5)
        except (OSError, subprocess.SubprocessError):  # pragma: no cover
            pass

    def __enter__(self) -> "SlurmCluster":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    # ----------------------------------------------------------------- helpers
    @staticmethod
    def job_logs(workdir: Path | str, n: int = 30) -> str:
        """Tails of the Slurm job logs the executor kept (failed jobs' logs stay)."""
        root = Path(workdir) / ".snakemake" / "slurm_logs"
        logs = sorted(root.rglob("*.log")) if root.is_dir() else []
        return "\n".join(f"--- {p} (tail) ---\n{_tail(p, n)}" for p in logs)

    def show_job(self, job_id: str) -> str:
        """`scontrol show job -o` text (kept MinJobAge seconds after the end)."""
        return self._run("scontrol", "show", "job", "-o", str(job_id)).stdout

    def jobs(self) -> list[dict[str, str]]:
        """Every job slurmctld still remembers (MinJobAge), as `scontrol show job -d -o`
        key=value fields, plus `_text` (the whole line) and `_detail` (the -d lines,
        e.g. `GRES=gpu:1(IDX:0)`). No accounting needed (sacct has no slurmdbd here)."""
        out = self._run("scontrol", "show", "job", "-d", "-o").stdout
        jobs = []
        for line in out.splitlines():
            if not line.startswith("JobId="):
                if jobs:  # -d adds node-detail lines after a job's line
                    jobs[-1]["_detail"] += line.strip() + " "
                continue
            fields = dict(tok.split("=", 1) for tok in line.split() if "=" in tok)
            fields["_text"], fields["_detail"] = line, ""
            jobs.append(fields)
        return jobs

    def run_snakemake(
        self,
        workdir: Path | str,
        *,
        snakefile: Path | str | None = None,
        targets: tuple[str, ...] | list[str] = (),
        profile: Path | str | None = None,
        extra_args: tuple[str, ...] | list[str] = (),
        configfiles: tuple[str, ...] | list[str] = (),
        init_seconds: int = 1,
        timeout: float = 300,
    ) -> subprocess.CompletedProcess:
        """Run Snakemake from this interpreter's environment through the slurm profile.

        ``init_seconds`` overrides the profile's first-status-check delay to keep
        tests fast (MinJobAge stays >= 3x it, so squeue polling is still used).
        The plugin then polls after init, init+10, init+20... seconds, resetting to
        init whenever a job finished. A timeout returns returncode 124 with the
        output so far instead of raising; stop() cancels the orphaned jobs.
        """
        repo = Path(__file__).resolve().parents[2]
        profile = Path(profile) if profile else repo / "profiles" / "slurm"
        cmd = [sys.executable, "-m", "snakemake", "--profile", str(profile),
               "--directory", str(workdir)]
        if snakefile is not None:
            cmd += ["--snakefile", str(snakefile)]
        cmd += ["--slurm-init-seconds-before-status-checks", str(init_seconds)]
        cmd += [*extra_args, *targets]
        if configfiles:  # last: --configfile takes every value after it
            cmd += ["--configfile", *map(str, configfiles)]
        env = self.env()
        # the jobs run `python -m snakemake` via sbatch --export=ALL: same venv
        env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
        try:
            return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout,
                                  env=env, cwd=str(workdir))
        except subprocess.TimeoutExpired as exc:
            def text(v):
                return v.decode(errors="replace") if isinstance(v, bytes) else (v or "")
            return subprocess.CompletedProcess(
                cmd, 124, text(exc.stdout),
                text(exc.stderr) + f"\n[killed: snakemake ran past {timeout} s]\n",
            )


if __name__ == "__main__":  # manual smoke test: python tests/slurm/cluster.py
    why = skip_reason()
    if why:
        sys.exit(why)
    with SlurmCluster() as c:
        print(c._run("sinfo").stdout)
        print(c._run("scontrol", "show", "node", NODE).stdout)
