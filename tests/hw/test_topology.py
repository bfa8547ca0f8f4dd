"""Topologies built from the presets' links, and from a user's description."""
import pytest

from ascend_sim.hw import get_chip
from ascend_sim.hw.topology import a2_servers, default_topology, from_description


def test_a2_server_is_a_full_hccs_mesh():
    chip = get_chip("Ascend910B2")
    t = a2_servers(chip, 8)
    assert t.servers() == [list(range(8))]
    hccs = chip.links["hccs"]
    for s in range(8):
        for d in range(8):
            if s != d:
                names, lat = t.route(s, d)
                assert names == (f"hccs.{s}->{d}",) and lat == hccs.latency_us
                assert t.peak_GBps(s, d) == hccs.bandwidth_GBps
    assert len([r for r in t.resources.values() if r.kind == "hccs"]) == 8 * 7


def test_two_servers_talk_over_roce_nics():
    chip = get_chip("Ascend910B2")
    t = a2_servers(chip, 16)
    assert t.servers() == [list(range(8)), list(range(8, 16))]
    names, lat = t.route(3, 11)
    assert names == ("npu3.nic_out", "npu11.nic_in") and lat == chip.links["roce"].latency_us
    assert t.peak_GBps(3, 11) == chip.links["roce"].bandwidth_GBps
    assert t.route(3, 5)[0] == ("hccs.3->5",)


def test_a3_supernode_pairs_dies_over_sio():
    chip = get_chip("Ascend910_9391")
    t = default_topology(chip, 4)
    assert t.route(0, 1)[0] == ("sio.0->1",)
    assert t.route(0, 2)[0] == ("die0.hccs_out", "die2.hccs_in")
    assert t.peak_GBps(0, 1) == chip.links["sio"].bandwidth_GBps


def test_310p_cards_use_pcie():
    t = default_topology(get_chip("Ascend310P3"), 2)
    assert t.route(0, 1)[0] == ("npu0.pcie_out", "npu1.pcie_in")


def test_user_description():
    t = from_description({"name": "ring4", "devices": 4,
                          "links": [{"src": i, "dst": (i + 1) % 4, "GBps": 50, "latency_us": 1.5} for i in range(4)],
                          "ports": {"GBps": 10, "latency_us": 8}})
    assert t.route(0, 1) == (("link.0->1",), 1.5)
    assert t.route(1, 0) == (("link.1->0",), 1.5)          # bidirectional by default
    assert t.route(0, 2) == (("npu0.port_out", "npu2.port_in"), 8.0)


def test_bad_descriptions_are_errors():
    with pytest.raises(ValueError, match="devices are 0..1"):
        from_description({"devices": 2, "links": [{"src": 0, "dst": 5, "GBps": 1}]})
    with pytest.raises(ValueError, match="positive bandwidth"):
        from_description({"devices": 2, "links": [{"src": 0, "dst": 1, "GBps": 0}]})
    t = from_description({"devices": 3, "links": [{"src": 0, "dst": 1, "GBps": 5}]})
    with pytest.raises(ValueError, match="no route from device 0 to device 2"):
        t.route(0, 2)
