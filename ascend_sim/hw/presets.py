"""Chip presets, built from ../shared/HARDWARE.md. Each number names its source.

Source tags (HARDWARE.md, "Abbreviations"): INI = CANN 8.1.RC1 platform config <SoC>.ini;
SIMCFG = CANN's own Ascend910B1 simulator config; ASC-PERF = Ascend C per-instruction perf tests
(CANN cycle simulator); MSKPP = MindStudio kernel perf predictor (arch_info theoretical table,
resource910b measured curves); PYPTO = pypto cost model; HCOMM = HCCL source; CATLASS = CATLASS
docs; HWConf = another simulator's hardware table; CSET = cset.georgetown.edu report.

Where sources disagree (HARDWARE.md section 6) the choice and its reason are in the source text.
The A2 family (910B1-B4) and the A3 die share one micro-architecture (dav-2201); they differ in
core count, clock, L2 and HBM, so they are derived from one base with those fields replaced.
"""
from __future__ import annotations

import dataclasses

from .spec import AICpu, Buffers, ChipSpec, Cores, Cube, Link, Memory, Path, Runtime, Vector

KiB = 1024
MiB = 1024 * KiB
GiB = 1024 * MiB

# ---------------------------------------------------------------------------------------------
# dav-2201 (Atlas A2 / A3): the base of 910B1-B4 and the A3 die
# ---------------------------------------------------------------------------------------------

_VECTOR_DAV2201 = Vector(
    repeat_bytes=256,
    max_repeat=255,
    # op class -> elements per cycle per AIV at large repeat counts (b16 = 16-bit types, b32 = 32-bit).
    elems_per_cycle={
        "binary": {"b16": 64, "b32": 32},
        "unary": {"b16": 128, "b32": 64},
        "exp": {"b16": 33, "b32": 32},
        "div": {"b16": 31, "b32": 16},
        "sqrt": {"b16": 32, "b32": 32},
        "fma": {"b16": 21.3, "b32": 10.7},
        "reduce_sum": {"b16": 18.3, "b32": 21.3},
        "reduce_max": {"b16": 9.1, "b32": 9.1},
        "gather": {"b16": 5.3, "b32": 5.3},
        "sort": {"b16": 7.8, "b32": 3.9},
    },
    latency_cycles={
        "binary": 7, "unary": 5, "exp": 12, "div": 13, "sqrt": 13, "fma": 7,
        "reduce_sum": 23, "reduce_max": 9, "gather": 7, "sort": 7,
    },
    scalar_cycles_per_instr=1,
    # HARDWARE.md 8.1 per-instruction costs: head / cycles per repeat by width / tail
    instrs={
        "vgather": {"head_latency": 24, "b16": round(128 / 5.3, 2), "b32": round(64 / 5.3, 2), "tail_latency": 14},
        "vcmp": {"head_latency": 10, "b16": 2, "b32": 2, "tail_latency": 14},
        "vsel": {"head_latency": 13, "b16": 2, "b32": 2, "tail_latency": 14},
        "sort32": {"head_latency": 20, "b16": round(32 / 7.8, 2), "b32": round(32 / 3.9, 2), "tail_latency": 14},
        "mrgsort4": {"head_latency": 20, "b16": round(32 / 7.8, 2), "b32": round(32 / 3.9, 2), "tail_latency": 14},
    },
    sort_region_elems=32,
    merge_ways=4,
    sort_pair_bytes=8,
)

# The AI CPU: no per-element figure is published (HARDWARE.md 7); first-principles estimates for
# one in-order ARM core, every one marked "assumed" in its source and meant to be changed.
_AICPU = AICpu(
    cycles_per_elem={"copy": 1.0, "arith": 1.0, "compare": 2.0, "hash": 20.0, "sort": 4.0},
    bytes_per_cycle=8.0,
)
_AICPU_KEYS = tuple(f"aicpu.cycles_per_elem.{k}" for k in _AICPU.cycles_per_elem) + ("aicpu.bytes_per_cycle",)

_PATHS_DAV2201 = {
    # GM-sourced paths: rate per core; the memory latency is added by the L2/HBM model.
    "gm_to_l1": Path(256, 0),
    "gm_to_l1_nd2nz": Path(193, 0),
    "gm_to_ub": Path(128, 0),
    "gm_to_l0a": Path(128, 0),
    "gm_to_l0b": Path(128, 0),
    "l1_to_l0a": Path(256, 28),
    "l1_to_l0b": Path(128, 28),
    "l1_to_l0a_load3d": Path(256, 50),
    "l1_to_l0b_load3d": Path(128, 50),
    "l1_to_bt": Path(32, 20),
    "l1_to_fb": Path(32, 20),
    "l0c_to_l1": Path(128, 20),
    "l0c_to_gm": Path(128, 20),
    "ub_to_gm": Path(64, 0),
    "ub_to_ub": Path(256, 0),
    "ub_to_l1": Path(128, 0),
    "l1_to_ub": Path(128, 0),
}

_SOURCES_DAV2201 = {
    "cores": "INI [SoCInfo] ai_core_cnt / vector_core_cnt / ai_cpu_cnt, [SoCInfo] frequency (HARDWARE.md 1.1)",
    "cores.coupled": "ASCDOC atlas_ascendc_10_0008/0011: 910B is split, 1 AIC : 2 AIV (HARDWARE.md 1.1 notes)",
    "cores.aicpu_mhz": "not published; assumed equal to the AI Core clock (only used for AI CPU task cycles)",
    "cube.macs_per_cycle.float16": "ASC-PERF mmad_perf: b16 16x16x16 = 4096 MAC/cycle (HARDWARE.md 2.2)",
    "cube.macs_per_cycle.bfloat16": "ASC-PERF mmad_perf: b16 4096 MAC/cycle",
    "cube.macs_per_cycle.float32": "ASC-PERF mmad_perf: b32 16x16x4 = 1024 MAC/cycle",
    "cube.macs_per_cycle.int8": "ASC-PERF mmad_perf: b8 16x16x32 = 8192 MAC/cycle",
    "cube.macs_per_cycle.int4": "INI DtypeMKN int4 fractal 16x64x16; issue rate not published: assumed one fractal per cycle like b8/b16 (16384 MAC/cycle)",
    "cube.m0": "ASCDOC atlasascendc_api_07_0249: C fractal 16 x 16",
    "cube.n0": "ASCDOC atlasascendc_api_07_0249: C fractal 16 x 16",
    "cube.issue_latency_cycles": "ASC-PERF mmad_perf: first-instruction overhead taken as 0",
    "cube.fixpipe_elems_per_cycle": "ASC-PERF fixpipe_perf: L0C->L1 64 elements/cycle",
    "cube.fixpipe_latency_cycles": "ASC-PERF fixpipe_perf: latency 20 cycles",
    "vector.repeat_bytes": "ASCDOC atlas_ascendc_10_0022: one repeat = 8 datablocks x 32 B",
    "vector.max_repeat": "ASCDOC atlas_ascendc_10_0022: repeatTimes <= 255",
    "vector.elems_per_cycle": "MSKPP resource910b.cpp measured curves at large repeat counts (HARDWARE.md 2.5); "
                              "reduce_max b16, gather b32: not measured, the other width's figure is used",
    "vector.latency_cycles": "PYPTO INHERENT_LATENCY_IN_OP (add 6, mul 7 -> binary 7; rsqrt 5 -> unary; exp 12; "
                             "div 13; sqrt 13; row-sum 23; row-max 9); fma, gather, sort not published: binary's 7",
    "vector.scalar_cycles_per_instr": "scalar latencies not published (HARDWARE.md 7): one cycle per instruction assumed",
    "vector.instrs.vgather": "PTO-CM (HARDWARE.md 8.1): head 24 cycles; per 256-B repeat of output MSKPP's measured "
                             "5.3 elem/cycle (2.5): 128/5.3 cycles b16, 64/5.3 b32 (b32 rate not measured: b16's "
                             "element rate assumed); PTO-CM's 2 cycles/repeat is its contiguous-offset profile only; "
                             "tail not published: assumed 14 as vsel",
    "vector.instrs.vcmp": "HARDWARE.md 2.5: cmp is in MSKPP's binary class (64 b16 / 32 b32 elem/cycle = 2 cycles per "
                          "256-B repeat); head and tail not published for vcmp: assumed as vadd (8.1: 10 / 14)",
    "vector.instrs.vsel": "PTO-CM (HARDWARE.md 8.1): vsel head 13, 2 cycles per repeat, tail 14 (2.5: select is in "
                          "the binary class, 2 cycles per 256-B repeat at either width)",
    "vector.instrs.sort32": "assumed: no VBS (sort32) figure in HARDWARE.md; the nearest documented class is vmrgsort: "
                            "MSKPP's 7.8 b16 / 3.9 b32 elem/cycle (2.5) over one 32-element region = 32/7.8, 32/3.9 "
                            "cycles per repeat; head 20 as vmrgsort4 (8.1); tail assumed 14 as vsel",
    "vector.instrs.mrgsort4": "MSKPP measured vmrgsort 7.8 b16 / 3.9 b32 elem/cycle (HARDWARE.md 2.5), per repeat of "
                              "32 merged elements = 32/7.8, 32/3.9 cycles; head 20 (PTO-CM, 8.1); PTO-CM's 78 cycles "
                              "per merged region [low] not used; tail assumed 14 as vsel",
    "vector.sort_region_elems": "Ascend C Sort32 (VBS): one repeat sorts 32 elements with their indices (ASCDOC Sort32 "
                                "API; not in HARDWARE.md)",
    "vector.merge_ways": "vmrgsort4 (HARDWARE.md 8.1) / Ascend C MrgSort: up to 4 sorted lists per instruction",
    "vector.sort_pair_bytes": "ASCDOC Sort32/MrgSort: a sorted element is an 8-byte (value, uint32 index) structure "
                              "for half and float (not in HARDWARE.md)",
    "memory.atomic_rmw_factor": "assumed: an atomic-add store (SetAtomicAdd) is a read-modify-write in L2, each line "
                                "read and written: 2x the L2 traffic of a plain store; not published",
    "aicpu.cycles_per_elem.copy": "assumed: one load + one store per element on an in-order ARM core, 1 cycle; no "
                                  "published AI CPU figure (HARDWARE.md 7)",
    "aicpu.cycles_per_elem.arith": "assumed: one ALU op per element with its load/store, 1 cycle; not published",
    "aicpu.cycles_per_elem.compare": "assumed: compare + conditional store/branch, 2 cycles per element; not published",
    "aicpu.cycles_per_elem.hash": "assumed: hash + table probe (a likely cache miss amortised), 20 cycles per element; "
                                  "not published",
    "aicpu.cycles_per_elem.sort": "assumed: comparison sort, n log2 n compares at 4 cycles each (branch misses); not "
                                  "published",
    "aicpu.bytes_per_cycle": "assumed: one 64-bit load per cycle per ARM core, 8 B/cycle; not published",
    "buffers": "INI [AICoreSpec] l1_size, l0_a_size, l0_b_size, l0_c_size, ub_size, bt_size, fb sizes (HARDWARE.md 2.1)",
    "buffers.fb": "INI FB0..FB3 = 2048 + 1024 + 2048 + 2048 B",
    "buffers.align": "ASCDOC atlas_ascendc_10_0011 / B1DOC: L1 32 B, L0A/L0B 512 B, L0C 64 B, UB 32 B, BT/FB 64 B",
    "paths.gm_to_l1": "MSKPP arch_info theoretical 256 B/cycle; latency from the memory model (SIMCFG/PYPTO)",
    "paths.gm_to_l1_nd2nz": "MSKPP measured GM->L1 ~204 GB/s with ND2NZ vs ~270 GB/s plain: 256 x 204/270 = 193 B/cycle",
    "paths.gm_to_ub": "MSKPP arch_info theoretical 128 B/cycle; latency from the memory model",
    "paths.gm_to_l0a": "MSKPP arch_info theoretical 128 B/cycle",
    "paths.gm_to_l0b": "MSKPP arch_info theoretical 128 B/cycle",
    "paths.l1_to_l0a": "ASC-PERF load_data_perf: 256 B/cycle, latency 28 (INI's 512 rejected, HARDWARE.md 6.2)",
    "paths.l1_to_l0b": "ASC-PERF load_data_perf: 128 B/cycle, latency 28",
    "paths.l1_to_l0a_load3d": "ASC-PERF load_data_perf Load3Dv2: up to 256 B/cycle, latency 50",
    "paths.l1_to_l0b_load3d": "ASC-PERF load_data_perf Load3Dv2: up to 128 B/cycle, latency 50",
    "paths.l1_to_bt": "ASC-PERF: L1->BT 32 B/cycle, latency 20",
    "paths.l1_to_fb": "ASC-PERF: L1->FB 32 B/cycle, latency 20",
    "paths.l0c_to_l1": "ASC-PERF fixpipe_perf: 64 elem/cycle = 128 B/cycle fp16 out, latency 20",
    "paths.l0c_to_gm": "MSKPP arch_info theoretical 128 B/cycle (measured ~211 GB/s); latency ASC-PERF fixpipe 20",
    "paths.ub_to_gm": "INI [AICoreMemoryRates] ub->ddr 64 B/cycle (MSKPP measured ~111 GB/s single core agrees)",
    "paths.ub_to_ub": "MSKPP measured ~441 GB/s single core = ~256 B/cycle (arch_info's 128 is below the measurement)",
    "paths.ub_to_l1": "INI ub->l1 128 B/cycle",
    "paths.l1_to_ub": "INI l1->ub 128 B/cycle",
    "memory.l2_line_bytes": "SIMCFG 512-B lines; PYPTO CacheConfig L2 line 512 B",
    "memory.l2_read_latency_cycles": "SIMCFG (CANN's 910B1 simulator): 241-cycle L2 read",
    "memory.l2_write_latency_cycles": "SIMCFG: 96-cycle L2 write",
    "memory.hbm_extra_latency_cycles": "PYPTO CacheConfig: L2 miss +150 cycles",
    "memory.burst_bytes": "CATLASS 11_matmul_optimization / PTO-ISA: rows and writes 512-B aligned move fastest (one L2 line)",
    "memory.block_bytes": "ASCDOC atlas_ascendc_10_0022: 32-B datablock, the smallest MTE access",
    "memory.alloc_alignment": "torch_npu NPUCachingAllocator kMinBlockSize: sizes rounded up to 512 B",
    "memory.alloc_pad_bytes": "torch_npu NPUCachingAllocator AddPadSize: 32 B added to each request",
    "runtime.kernel_launch_us": "CATLASS 11_matmul_optimization: full-core kernel launch ~20 us on A2",
    "runtime.block_dispatch_cycles": "PYPTO PostSimulatorA2A3: scheduling 200 cycles per task",
    "runtime.aicpu_task_us": "PYPTO: AICPU completion 240 + scheduling 200 cycles at 1.8 GHz = 0.24 us",
    "runtime.event_ids": "ASCDOC atlasascendc_api_07_0270: event ids 0-7 on A2/A3",
    "runtime.cross_core_flag_ids": "PTO-DSL flash_attention README: 16 cross-core flag ids (CrossCoreSetFlag)",
    "runtime.npus_per_server": "Atlas 800T A2: 8 NPUs, HCCS full mesh (HARDWARE.md 1.4)",
    "links.hccs": "8-NPU HCCS full mesh, 7 peers; 56 GB/s per link (meemx blog folk value, HARDWARE.md 1.4; "
                  "no official figure); latency not published: 2 us assumed per transfer step",
    "links.roce": "one 200 GbE RoCE NIC per NPU (HCOMM BANDWIDTH_RDMA_910B = 25 GB/s x 0.8 used: 20 GB/s); "
                  "latency not published: 5 us assumed",
}

ASCEND910B1 = ChipSpec(
    name="Ascend910B1",
    family="A2",
    soc_version="Ascend910B1",
    description="Atlas A2 training/inference, 24 AIC + 48 AIV at 1850 MHz, 64 GiB HBM, 192 MiB L2",
    cores=Cores(aic=24, aiv=48, aicpu=4, coupled=False, aic_mhz=1850, aiv_mhz=1850, aicpu_mhz=1850),
    cube=Cube(macs_per_cycle={"float16": 4096, "bfloat16": 4096, "float32": 1024, "int8": 8192,
                              "int4": 16384},
              m0=16, n0=16, issue_latency_cycles=0, fixpipe_elems_per_cycle=64, fixpipe_latency_cycles=20),
    vector=_VECTOR_DAV2201,
    buffers=Buffers(l1=512 * KiB, l0a=64 * KiB, l0b=64 * KiB, l0c=128 * KiB, ub=192 * KiB, bt=1 * KiB,
                    fb=7 * KiB, align={"l1": 32, "l0a": 512, "l0b": 512, "l0c": 64, "ub": 32, "bt": 64, "fb": 64}),
    paths=dict(_PATHS_DAV2201),
    memory=Memory(l2_bytes=192 * MiB, l2_line_bytes=512, l2_bandwidth_GBps=8000,
                  l2_read_latency_cycles=241, l2_write_latency_cycles=96, hbm_extra_latency_cycles=150,
                  hbm_bytes=64 * GiB, hbm_bandwidth_GBps=1600, burst_bytes=512, block_bytes=32,
                  alloc_alignment=512, alloc_pad_bytes=32, atomic_rmw_factor=2.0),
    runtime=Runtime(kernel_launch_us=20.0, block_dispatch_cycles=200, aicpu_task_us=0.24, event_ids=8,
                    cross_core_flag_ids=16, npus_per_server=8),
    links={"hccs": Link(bandwidth_GBps=56, latency_us=2.0, count=7),
           "roce": Link(bandwidth_GBps=20, latency_us=5.0, count=1)},
    aicpu=_AICPU,
    sources={
        **_SOURCES_DAV2201,
        "memory.l2_bytes": "INI Ascend910B1 l2_size 192 MiB",
        "memory.l2_bandwidth_GBps": "B1DOC msProf roofline: L2 peak 8.0 TB/s for 910B1",
        "memory.hbm_bytes": "INI Ascend910B1: 64 GiB",
        "memory.hbm_bandwidth_GBps": "CSET and HWConf: 1.6 TB/s (4 HBM2e stacks); chosen over msProf's 1.8 TB/s "
                                     "roofline figure so that all 64 GiB A2 parts share one memory system (HARDWARE.md 6.5)",
    },
)


def _derive(base: ChipSpec, name: str, description: str, *, sources: dict[str, str], **changes) -> ChipSpec:
    """A preset that is ``base`` with some fields replaced; ``sources`` says where each new value comes from."""
    fields = {f.name: getattr(base, f.name) for f in dataclasses.fields(base)}
    for key, value in changes.items():
        group, _, leaf = key.partition("__")
        if leaf:
            fields[group] = dataclasses.replace(fields[group], **{leaf: value})
        else:
            fields[group] = value
    fields.update(name=name, soc_version=name, description=description,
                  sources={**base.sources, **sources})
    return ChipSpec(**fields)


def _a2(name, aic, mhz, l2_mib, hbm_gib, hbm_GBps, l2_GBps, *, family="A2", description, extra_sources):
    return _derive(
        ASCEND910B1, name, description, family=family,
        cores=Cores(aic=aic, aiv=2 * aic, aicpu=4, coupled=False, aic_mhz=mhz, aiv_mhz=mhz, aicpu_mhz=mhz),
        memory__l2_bytes=l2_mib * MiB, memory__hbm_bytes=hbm_gib * GiB,
        memory__hbm_bandwidth_GBps=hbm_GBps, memory__l2_bandwidth_GBps=l2_GBps,
        sources={"memory.l2_bytes": f"INI {name}: L2 {l2_mib} MiB",
                 "memory.hbm_bytes": f"INI {name}: {hbm_gib} GiB",
                 **extra_sources},
    )


_L2_SCALED = "derived: 910B1's msProf 8.0 TB/s scaled by clock ({mhz}/1850)"

ASCEND910B2 = _a2("Ascend910B2", 24, 1800, 192, 64, 1600, round(8000 * 1800 / 1850, 1),
                  description="Atlas A2, 24 AIC + 48 AIV at 1800 MHz, 64 GiB HBM, 192 MiB L2",
                  extra_sources={"memory.hbm_bandwidth_GBps": "HWConf: 910B2 1.6 TB/s; CSET 1.6 TB/s",
                                 "memory.l2_bandwidth_GBps": _L2_SCALED.format(mhz=1800)})
ASCEND910B3 = _a2("Ascend910B3", 20, 1800, 192, 64, 1600, round(8000 * 1800 / 1850, 1),
                  description="Atlas A2, 20 AIC + 40 AIV at 1800 MHz, 64 GiB HBM, 192 MiB L2",
                  extra_sources={"memory.hbm_bandwidth_GBps": "assumed equal to 910B2 (same 64 GiB HBM2e memory "
                                                              "system); no published figure",
                                 "memory.l2_bandwidth_GBps": _L2_SCALED.format(mhz=1800)})
ASCEND910B4 = _a2("Ascend910B4", 20, 1500, 96, 32, 800, round(8000 * 1500 / 1850, 1),
                  description="Atlas A2, 20 AIC + 40 AIV at 1500 MHz, 32 GiB HBM, 96 MiB L2",
                  extra_sources={"memory.hbm_bandwidth_GBps": "HWConf: 910B4 0.8 TB/s; PTO-ISA flash_atten cost "
                                                              "model gm_scale 2.0 vs 910B2 agrees",
                                 "memory.l2_bandwidth_GBps": _L2_SCALED.format(mhz=1500)})
ASCEND910_9391 = _a2("Ascend910_9391", 24, 1850, 192, 64, 1600, 8000, family="A3",
                     description="Atlas A3 (910C) one die: 24 AIC + 48 AIV at 1850 MHz, 64 GiB HBM, 192 MiB L2",
                     extra_sources={"memory.hbm_bandwidth_GBps": "assumed equal to a 910B1 die (same dav-2201 die "
                                                                 "and HBM per die); no official figure",
                                    "memory.l2_bandwidth_GBps": "assumed equal to 910B1 (same die and clock)",
                                    "links.hccs": "A3 supernode HCCS; per-link figure not published: the A2 "
                                                  "56 GB/s folk value is used (HARDWARE.md 1.4)",
                                    "links.sio": "HCOMM device_capacity.cc: SIO 240 x 0.85 = 204 GB/s between the "
                                                 "two dies of a 910C; latency assumed 1 us"})
ASCEND910_9391 = dataclasses.replace(
    ASCEND910_9391,
    links={**ASCEND910_9391.links, "sio": Link(bandwidth_GBps=204, latency_us=1.0, count=1)})

# ---------------------------------------------------------------------------------------------
# Ascend 910 (original, dav-c100): coupled AI Cores, fp16/int8 cube only
# ---------------------------------------------------------------------------------------------
ASCEND910A = _derive(
    ASCEND910B1, "Ascend910A",
    "Atlas training (original 910): 32 coupled AI Cores at 1000 MHz, 32 GiB HBM, 32 MiB L2",
    family="910",
    cores=Cores(aic=32, aiv=0, aicpu=4, coupled=True, aic_mhz=1000, aiv_mhz=1000, aicpu_mhz=1000),
    cube=Cube(macs_per_cycle={"float16": 4096, "int8": 8192}, m0=16, n0=16, issue_latency_cycles=0,
              fixpipe_elems_per_cycle=64, fixpipe_latency_cycles=20),
    buffers=Buffers(l1=1 * MiB, l0a=64 * KiB, l0b=64 * KiB, l0c=256 * KiB, ub=256 * KiB, bt=0, fb=0,
                    align={"l1": 32, "l0a": 512, "l0b": 512, "l0c": 64, "ub": 32}),
    paths={**_PATHS_DAV2201, "l0c_to_ub": Path(256, 20)},
    memory__l2_bytes=32 * MiB, memory__hbm_bytes=32 * GiB, memory__hbm_bandwidth_GBps=1200,
    memory__l2_bandwidth_GBps=110 * 32 * 1000 / 1000,
    runtime=Runtime(kernel_launch_us=20.0, block_dispatch_cycles=200, aicpu_task_us=0.44, event_ids=4,
                    cross_core_flag_ids=16, npus_per_server=8),
    links={"hccs": Link(bandwidth_GBps=30, latency_us=2.0, count=3),
           "roce": Link(bandwidth_GBps=12.5, latency_us=5.0, count=2)},
    sources={
        "cores": "INI Ascend910A: 32 AI Cores (cube + vector coupled), 1000 MHz, ai_cpu_cnt 4",
        "cores.coupled": "Hot Chips 31 DaVinci talk: each AI Core holds cube, vector and scalar",
        "cube": "Hot Chips 31 (via vengineer blog): cube 4096 fp16 / 8192 int8 MAC per cycle; no fp32/bf16 cube; "
                "fixpipe figures assumed as on dav-2201",
        "buffers": "INI Ascend910A: L1 1 MiB, L0A/L0B 64 KiB, L0C 256 KiB, UB 256 KiB; no BT/FB",
        "buffers.align": "assumed as on dav-2201 (ASCDOC alignment rules)",
        "paths": "not published for dav-c100: dav-2201 per-core rates assumed; l0c_to_ub from INI l0c->ub 256",
        "paths.l0c_to_ub": "INI [AICoreMemoryRates] l0c->ub 256 B/cycle; latency as fixpipe (20)",
        "memory.l2_bytes": "INI Ascend910A: 32 MiB",
        "memory.hbm_bytes": "Hot Chips 31: 4 x HBM2, 32 GiB (secondary; INI leaves it unset)",
        "memory.hbm_bandwidth_GBps": "Hot Chips 31: 1.2 TB/s HBM2 (secondary, not in HARDWARE.md)",
        "memory.l2_bandwidth_GBps": "derived: 910B1 INI per-core l2_read 110 B/cycle x 32 cores x 1.0 GHz (no 910 figure)",
        "runtime.event_ids": "ASCDOC api_07_0270: event ids 0-3 on Atlas training 910",
        "runtime.aicpu_task_us": "PYPTO 440 cycles per AI CPU task at the 1.0 GHz clock",
        **{f"vector.instrs.{k}": "not published for dav-c100: the dav-2201 figures (HARDWARE.md 8.1/2.5) assumed"
           for k in _VECTOR_DAV2201.instrs},
        "vector.sort_region_elems": "assumed as dav-2201 (Sort32); older Ascend C also has 16-proposal sorts",
        "vector.merge_ways": "assumed as dav-2201 (4-way merge sort)",
        "vector.sort_pair_bytes": "assumed as dav-2201",
        **{p: "assumed as on dav-2201 (no published AI CPU figures for any chip)" for p in _AICPU_KEYS},
        "links.hccs": "Hot Chips 31: 3 x 240 Gb/s HCCS (30 GB/s each); latency assumed 2 us",
        "links.roce": "Hot Chips 31: 2 x 100G RoCE on die (12.5 GB/s each); latency assumed 5 us",
    },
)

# ---------------------------------------------------------------------------------------------
# Ascend 310P3 (Atlas inference): 8 coupled AI Cores + 7 vector cores
# ---------------------------------------------------------------------------------------------
ASCEND310P3 = _derive(
    ASCEND910A, "Ascend310P3",
    "Atlas inference (300I Pro/Duo) 310P3: 8 AI Cores at 1060 MHz + 7 vector cores at 1000 MHz, LPDDR4X",
    family="310P",
    cores=Cores(aic=8, aiv=7, aicpu=16, coupled=True, aic_mhz=1060, aiv_mhz=1000, aicpu_mhz=1000),
    memory__l2_bytes=16 * MiB, memory__hbm_bytes=24_000_000_000, memory__hbm_bandwidth_GBps=204,
    memory__l2_bandwidth_GBps=round(114 * 8 * 1.06, 1),
    runtime=Runtime(kernel_launch_us=20.0, block_dispatch_cycles=200, aicpu_task_us=0.44, event_ids=8,
                    cross_core_flag_ids=16, npus_per_server=8),
    links={"pcie": Link(bandwidth_GBps=27.2, latency_us=5.0, count=1)},
    sources={
        "cores": "INI Ascend310P3: 8 AI Cores (cube 1060 MHz), 7 vector cores (1000 MHz), ai_cpu_cnt 16",
        "cores.coupled": "INI Ascend310P3: AI Cores hold cube + vector; extra vector-only cores",
        "cube": "derived 8 x 1.06 GHz x 4096 x 2 = 69.5 TFLOPS (HARDWARE.md 1.2); fixpipe as dav-2201 assumed",
        "memory.l2_bytes": "INI Ascend310P3: 16 MiB",
        "memory.hbm_bytes": "INI Ascend310P3: 24e9 B device memory",
        "memory.hbm_bandwidth_GBps": "blog (secondary): Atlas 300I Duo 408 GB/s LPDDR4X for 2 chips -> 204 GB/s per chip",
        "memory.l2_bandwidth_GBps": "derived: INI l2 rate 114 B/cycle x 8 AI Cores x 1.06 GHz",
        "runtime.event_ids": "assumed as A2 (8 ids)",
        "runtime.npus_per_server": "assumed 8 cards per inference server",
        "links.pcie": "HCOMM device_capacity.cc PCIe Gen4 x16: 32 GB/s x 0.85; latency assumed 5 us",
    },
)

# ---------------------------------------------------------------------------------------------
# Ascend 950 (Ascend910_95, dav-3510)
# ---------------------------------------------------------------------------------------------
ASCEND910_95 = _derive(
    ASCEND910B1, "Ascend910_95",
    "Ascend 950: 32 AIC + 64 AIV at 1650 MHz, 128 GiB, 128 MiB L2",
    family="950",
    cores=Cores(aic=32, aiv=64, aicpu=6, coupled=False, aic_mhz=1650, aiv_mhz=1650, aicpu_mhz=1650),
    cube=Cube(macs_per_cycle={"float16": 4096, "bfloat16": 4096, "float32": 256, "int8": 8192,
                              "float8_e4m3fn": 8192, "float8_e5m2": 8192, "int4": 16384},
              m0=16, n0=16, issue_latency_cycles=0, fixpipe_elems_per_cycle=64, fixpipe_latency_cycles=26),
    buffers=Buffers(l1=512 * KiB, l0a=64 * KiB, l0b=64 * KiB, l0c=256 * KiB, ub=248 * KiB, bt=4 * KiB,
                    fb=6 * KiB, align={"l1": 32, "l0a": 512, "l0b": 512, "l0c": 64, "ub": 32, "bt": 64, "fb": 64}),
    paths={**_PATHS_DAV2201, "gm_to_l1": Path(256, 0), "l0c_to_l1": Path(128, 26)},
    memory__l2_bytes=128 * MiB, memory__hbm_bytes=128 * GiB, memory__hbm_bandwidth_GBps=1600,
    memory__l2_bandwidth_GBps=round(100 * 32 * 1.65, 1), memory__alloc_pad_bytes=0,
    sources={
        "memory.alloc_pad_bytes": "torch_npu NPUCachingAllocator AddPadSize: no padding from Ascend 950 with CANN >= 9.1",
        "cores": "INI Ascend910_95: 32 AIC, 64 AIV, 1650 MHz, ai_cpu_cnt 6",
        "cube": "ASC-PERF mmad_perf dav-3510: b8 8192, b16 4096, b32 256, mxfp8 8192 (fp8), mxfp4 16384 "
                "(int4 taken at the fp4 rate); fixpipe latency 26 cycles",
        "buffers": "INI Ascend910_95: L1 512 KiB, L0A/L0B 64 KiB, L0C 256 KiB, UB 248 KiB, BT 4 KiB, FB0 4096 + FB1 2048",
        "paths.l0c_to_l1": "ASC-PERF fixpipe_perf dav-3510: latency 26 cycles",
        "memory.l2_bytes": "INI Ascend910_95: 128 MiB",
        "memory.hbm_bytes": "INI Ascend910_95: 128 GiB",
        "memory.hbm_bandwidth_GBps": "Huawei Connect 2025 roadmap (secondary, not in HARDWARE.md): 950PR 128 GB "
                                     "HiBL 1.0 at 1.6 TB/s",
        "memory.l2_bandwidth_GBps": "derived: INI Ascend910_95 l2 rate 100 B/cycle x 32 cores x 1.65 GHz",
        **{f"vector.instrs.{k}": "not published for dav-3510: the dav-2201 figures (HARDWARE.md 8.1/2.5) assumed"
           for k in _VECTOR_DAV2201.instrs},
        "vector.sort_region_elems": "assumed as dav-2201 (Sort32)",
        "vector.merge_ways": "assumed as dav-2201 (4-way merge sort)",
        "vector.sort_pair_bytes": "assumed as dav-2201",
        **{p: "assumed as on dav-2201 (no published AI CPU figures for any chip)" for p in _AICPU_KEYS},
    },
)

PRESETS: dict[str, ChipSpec] = {c.name: c for c in (
    ASCEND910B1, ASCEND910B2, ASCEND910B3, ASCEND910B4, ASCEND910_9391, ASCEND910A, ASCEND310P3, ASCEND910_95)}
