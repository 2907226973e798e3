from bench.serving import WrkResult
from bench.tail import Load, connections_per_process

SS_LINES = """\
0 0 127.0.0.1:41000 127.0.0.1:51000 users:(("backprop",pid=101,fd=12))
0 0 127.0.0.1:41000 127.0.0.1:51001 users:(("backprop",pid=102,fd=13))
0 0 127.0.0.1:41000 127.0.0.1:51002 users:(("backprop",pid=101,fd=14))
0 0 127.0.0.1:41000 127.0.0.1:51003 users:(("backprop",pid=101,fd=15))
"""


def test_connections_are_counted_per_process_most_first():
    assert connections_per_process(SS_LINES) == [3, 1]
    assert connections_per_process("") == []


def test_a_layouts_figures_sum_its_wrk_runs_and_weigh_the_cpu_by_requests():
    load = Load(
        results=[
            WrkResult(1000.0, 5.0, 20.0, requests=8000, errors=0, server_cpu_ms=1.0),
            WrkResult(500.0, 9.0, 40.0, requests=2000, errors=0, server_cpu_ms=2.0),
        ],
        split=[8, 8],
        run_queue_wait_ms=3.0,
    )
    assert load.requests == 10_000
    assert load.requests_per_second == 1500.0
    assert load.server_cpu_ms == (8000 * 1.0 + 2000 * 2.0) / 10_000
