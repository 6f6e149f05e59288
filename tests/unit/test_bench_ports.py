"""The benchmarks' servers get distinct ports.

A port probed with bind(0) and let go may come back from the next probe: over a thousand probes
one after another, Linux here gave about thirty twice. bench.welcome's simulator and server
once got one port between them; the server could not listen, and the health check meant for
it was answered by the simulator (tests/integration/test_bench_welcome.py failed on a table
the server had not yet made)."""

from __future__ import annotations

from bench.callbacks import free_ports


def test_the_ports_handed_out_together_are_all_different():
    ports = free_ports(1000)
    assert len(set(ports)) == 1000
    assert all(1024 < port < 65536 for port in ports)
