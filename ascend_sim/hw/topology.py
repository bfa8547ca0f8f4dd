"""Topologies: which devices talk over which links, at what bandwidth and latency.

What is modelled: the links between NPUs as shared bandwidth resources. A link is either a
point-to-point lane (an HCCS link between two NPUs of an A2 server, the SIO between the two dies of
a 910C) or a port of a switched network (an NPU's RoCE NIC, out and in; an A3 die's HCCS port
into the supernode fabric). A route from one device to another is the list of resources its bytes
cross and the latency they pay; the engine turns each resource into a fluid resource that every
transfer crossing it shares.

Built from the chip preset's ``links`` (HARDWARE.md 1.4):

* :func:`a2_servers` -- servers of ``npus_per_server`` NPUs, HCCS full mesh inside (one direct
  link per pair and direction), one RoCE NIC per NPU between servers (a non-blocking fabric);
* :func:`a3_supernode` -- 910C dies: pairs joined by SIO, every die with an HCCS port of
  ``count x bandwidth`` into the supernode fabric;
* :func:`pcie_host` -- inference cards talking over PCIe through the host;
* :func:`from_description` -- a user's own: devices, and links or ports with GB/s and latency.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from .spec import ChipSpec


@dataclass(frozen=True)
class LinkResource:
    """One shared resource: a directed point-to-point lane or one direction of a port."""

    name: str
    bandwidth_GBps: float
    kind: str


@dataclass
class Topology:
    n_devices: int
    name: str
    resources: dict[str, LinkResource] = field(default_factory=dict)
    routes: dict[tuple[int, int], tuple[tuple[str, ...], float]] = field(default_factory=dict)
    server_of: list[int] = field(default_factory=list)
    mesh: bool = False      # every device of a server reaches every other at once (HCCS mesh, A3 fabric)

    def route(self, src: int, dst: int) -> tuple[tuple[str, ...], float]:
        """(resource names crossed, latency in us) from ``src`` to ``dst``."""
        if src == dst:
            return (), 0.0
        r = self.routes.get((src, dst))
        if r is None:
            raise ValueError(f"topology {self.name}: no route from device {src} to device {dst}")
        return r

    def servers(self) -> list[list[int]]:
        out: dict[int, list[int]] = {}
        for d, s in enumerate(self.server_of):
            out.setdefault(s, []).append(d)
        return [out[k] for k in sorted(out)]

    def peak_GBps(self, src: int, dst: int) -> float:
        names, _ = self.route(src, dst)
        return min(self.resources[n].bandwidth_GBps for n in names) if names else float("inf")

    def add(self, name: str, GBps: float, kind: str) -> str:
        if GBps <= 0:
            raise ValueError(f"topology {self.name}: link {name} needs a positive bandwidth, got {GBps}")
        self.resources[name] = LinkResource(name, float(GBps), kind)
        return name


def _ports(t: Topology, prefix: str, GBps: float, kind: str) -> None:
    """One device's port into a switched network: an out and an in resource."""
    t.add(f"{prefix}_out", GBps, kind)
    t.add(f"{prefix}_in", GBps, kind)


def _via_ports(t: Topology, s: int, d: int, port: str, latency_us: float) -> None:
    """Route s -> d out of s's port and into d's (``port`` is a format string of the device id)."""
    t.routes[(s, d)] = ((f"{port.format(s)}_out", f"{port.format(d)}_in"), latency_us)


def _need(chip: ChipSpec, kind: str):
    link = chip.links.get(kind)
    if link is None:
        raise ValueError(f"{chip.name} has no {kind} links (it has: {', '.join(chip.links) or 'none'})")
    return link


def a2_servers(chip: ChipSpec, n_devices: int) -> Topology:
    """Servers of ``chip.runtime.npus_per_server`` NPUs: HCCS full mesh inside, RoCE between."""
    per = chip.runtime.npus_per_server
    hccs = _need(chip, "hccs")
    t = Topology(n_devices, f"{n_devices} x {chip.name} ({-(-n_devices // per)} server(s), HCCS mesh + RoCE)",
                 mesh=True)
    t.server_of = [d // per for d in range(n_devices)]
    if hccs.count < min(per, n_devices) - 1:
        raise ValueError(f"{chip.name}: {hccs.count} HCCS links per NPU cannot make a full mesh of {per}")
    roce = chip.links.get("roce")
    for d in range(n_devices):
        if roce is not None and n_devices > per:
            _ports(t, f"npu{d}.nic", roce.bandwidth_GBps * roce.count, "roce")
    for s in range(n_devices):
        for d in range(n_devices):
            if s == d:
                continue
            if t.server_of[s] == t.server_of[d]:
                lane = t.add(f"hccs.{s}->{d}", hccs.bandwidth_GBps, "hccs")
                t.routes[(s, d)] = ((lane,), hccs.latency_us)
            else:
                if roce is None:
                    raise ValueError(f"{chip.name} has no RoCE links to join servers")
                _via_ports(t, s, d, "npu{}.nic", roce.latency_us)
    return t


def a3_supernode(chip: ChipSpec, n_devices: int) -> Topology:
    """910C dies: SIO between the two dies of a package, HCCS ports into the supernode fabric."""
    hccs = _need(chip, "hccs")
    sio = chip.links.get("sio")
    t = Topology(n_devices, f"{n_devices} x {chip.name} (A3 supernode: SIO pairs + HCCS fabric)", mesh=True)
    t.server_of = [d // chip.runtime.npus_per_server for d in range(n_devices)]
    for d in range(n_devices):
        _ports(t, f"die{d}.hccs", hccs.bandwidth_GBps * hccs.count, "hccs")
    for s in range(n_devices):
        for d in range(n_devices):
            if s == d:
                continue
            if sio is not None and s // 2 == d // 2:
                lane = t.add(f"sio.{s}->{d}", sio.bandwidth_GBps, "sio")
                t.routes[(s, d)] = ((lane,), sio.latency_us)
            else:
                _via_ports(t, s, d, "die{}.hccs", hccs.latency_us)
    return t


def pcie_host(chip: ChipSpec, n_devices: int) -> Topology:
    pcie = _need(chip, "pcie")
    t = Topology(n_devices, f"{n_devices} x {chip.name} (PCIe through the host)")
    t.server_of = [0] * n_devices
    for d in range(n_devices):
        _ports(t, f"npu{d}.pcie", pcie.bandwidth_GBps * pcie.count, "pcie")
    for s in range(n_devices):
        for d in range(n_devices):
            if s != d:
                _via_ports(t, s, d, "npu{}.pcie", pcie.latency_us)
    return t


def default_topology(chip: ChipSpec, n_devices: int) -> Topology:
    """The usual machine for a chip: A2/910 servers, an A3 supernode, PCIe cards for 310P."""
    if n_devices < 1:
        raise ValueError(f"a topology needs at least one device, got {n_devices}")
    if chip.family == "A3":
        return a3_supernode(chip, n_devices)
    if "hccs" in chip.links:
        return a2_servers(chip, n_devices)
    if "pcie" in chip.links:
        return pcie_host(chip, n_devices)
    raise ValueError(f"{chip.name}: no links to build a topology from")


def from_description(desc: dict) -> Topology:
    """A user topology::

        {"name": "ring4", "devices": 4, "servers": [0, 0, 1, 1],      # servers optional
         "links": [{"src": 0, "dst": 1, "GBps": 50, "latency_us": 2, "kind": "hccs",
                    "bidirectional": true}, ...],
         "ports": {"GBps": 25, "latency_us": 5, "kind": "roce"}}      # optional: a switched
                                                                       # network for every other pair
    ``"mesh": true`` says every device of a server can reach all others at once (picks mesh
    algorithms by default). Pairs with a link use it; other pairs go through the ports (out of the sender, into the
    receiver); a pair with neither is an error when used.
    """
    n = int(desc["devices"])
    if n < 1:
        raise ValueError(f"topology description: 'devices' must be >= 1, got {n}")
    t = Topology(n, desc.get("name", f"custom ({n} devices)"), mesh=bool(desc.get("mesh", False)))
    t.server_of = list(desc.get("servers", [0] * n))
    if len(t.server_of) != n:
        raise ValueError(f"topology description: 'servers' must have {n} entries")
    for i, l in enumerate(desc.get("links", [])):
        s, d = int(l["src"]), int(l["dst"])
        for a, b in ((s, d), (d, s)) if l.get("bidirectional", True) else ((s, d),):
            if not (0 <= a < n and 0 <= b < n) or a == b:
                raise ValueError(f"topology description: link {i} joins {a} and {b}; devices are 0..{n - 1}")
            lane = t.add(f"{l.get('kind', 'link')}.{a}->{b}", float(l["GBps"]), l.get("kind", "link"))
            t.routes[(a, b)] = ((lane,), float(l.get("latency_us", 0.0)))
    ports = desc.get("ports")
    if ports:
        for dev in range(n):
            _ports(t, f"npu{dev}.port", float(ports["GBps"]), ports.get("kind", "port"))
        for a in range(n):
            for b in range(n):
                if a != b and (a, b) not in t.routes:
                    _via_ports(t, a, b, "npu{}.port", float(ports.get("latency_us", 0.0)))
    return t
