"""The CPU time a server's processes spend, read from /proc: the processes that hold the socket
listening on a port (Granian's or gunicorn's main process and its workers, uWSGI's master and
workers, MLflow's gunicorn), summed over user and system time.

A request's latency on a shared 2-core machine moves with whatever else runs; the CPU time the
server itself spends per request moves far less, so the benchmarks report it beside wrk's
figures: what a change of the request path saves shows there first.
"""

import os
from pathlib import Path

PROC = Path("/proc")
LISTEN = "0A"  # the TCP state column of /proc/net/tcp{,6}
TICKS_PER_SECOND = os.sysconf("SC_CLK_TCK")


def listening_inodes(port: int) -> set[str]:
    """The socket inodes listening on ``port`` (IPv4 or IPv6, any address)."""
    inodes = set()
    for table in ("tcp", "tcp6"):
        path = PROC / "net" / table
        if not path.exists():
            continue
        for line in path.read_text().splitlines()[1:]:
            fields = line.split()
            local_port = int(fields[1].rpartition(":")[2], 16)
            if local_port == port and fields[3] == LISTEN:
                inodes.add(fields[9])
    return inodes


def processes_holding(inodes: set[str]) -> list[int]:
    """The ids of the processes with a descriptor on one of ``inodes`` (sockets)."""
    wanted = {f"socket:[{inode}]" for inode in inodes}
    pids = []
    for entry in PROC.iterdir():
        if not entry.name.isdigit():
            continue
        try:
            links = {os.readlink(fd) for fd in (entry / "fd").iterdir()}
        except (FileNotFoundError, PermissionError, ProcessLookupError):
            continue  # gone meanwhile, or not ours to read
        if links & wanted:
            pids.append(int(entry.name))
    return pids


def server_processes(port: int) -> list[int]:
    """The processes serving ``port``: every holder of its listening socket."""
    return processes_holding(listening_inodes(port))


def cpu_seconds(pids: list[int]) -> float:
    """User plus system CPU seconds of ``pids`` so far (a process gone meanwhile counts 0)."""
    ticks = 0
    for pid in pids:
        try:
            stat = (PROC / str(pid) / "stat").read_text()
        except FileNotFoundError:
            continue
        fields = stat.rpartition(")")[2].split()  # after the command, which may hold spaces
        ticks += int(fields[11]) + int(fields[12])  # utime, stime (fields 14 and 15 of stat)
    return ticks / TICKS_PER_SECOND
