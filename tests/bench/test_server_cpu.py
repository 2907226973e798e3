import subprocess
import sys

from bench.server_cpu import cpu_seconds, server_processes
from bench.serving import free_port

# Listens on the port given, then spends about 0.3 s of CPU, then waits to be killed.
LISTENER = """
import socket, sys, time
server = socket.socket()
server.bind(("127.0.0.1", int(sys.argv[1])))
server.listen()
print("listening", flush=True)
sys.stdin.readline()
end = time.process_time() + 0.3
while time.process_time() < end:
    pass
print("spent", flush=True)
time.sleep(60)
"""


def test_the_processes_holding_a_listening_socket_and_their_cpu_time_are_read():
    port = free_port()
    child = subprocess.Popen(
        [sys.executable, "-c", LISTENER, str(port)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert child.stdout.readline() == "listening\n"
        assert server_processes(port) == [child.pid]
        before = cpu_seconds([child.pid])
        child.stdin.write("go\n")
        child.stdin.flush()
        assert child.stdout.readline() == "spent\n"
        assert 0.25 <= cpu_seconds([child.pid]) - before < 5
    finally:
        child.kill()
        child.wait()
    assert server_processes(port) == []
    assert cpu_seconds([child.pid]) == 0  # a process gone counts nothing
