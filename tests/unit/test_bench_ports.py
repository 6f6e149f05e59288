"""The benchmarks' servers get distinct ports, outside the range the kernel hands out itself.

A port probed with bind(0) and let go may come back from the next probe: over a thousand probes
one after another, Linux here gave about thirty twice. bench.welcome's simulator and server
once got one port between them; the server could not listen, and the health check meant for
it was answered by the simulator (tests/integration/test_bench_welcome.py failed on a table
the server had not yet made). Later, with three test workers, the benchmark's first request to
its simulator was reset, most likely by another test's server (those bind port 0) that took the
port between the probe and the simulator's bind."""

from __future__ import annotations

from pathlib import Path

from bench.callbacks import free_ports


def _ephemeral() -> range:
    low, high = Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()
    return range(int(low), int(high) + 1)


def test_the_ports_handed_out_together_are_all_different():
    ports = free_ports(1000)
    assert len(set(ports)) == 1000
    assert all(1024 < port < 65536 for port in ports)


def test_no_port_is_one_the_kernel_could_give_a_socket_of_its_own_choosing():
    ephemeral = _ephemeral()
    assert not [port for port in free_ports(200) if port in ephemeral]
