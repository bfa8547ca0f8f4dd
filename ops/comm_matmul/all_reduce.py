"""npu_mm_all_reduce_base: ``out = allreduce(x1 @ W + bias + x3)`` (see the package docstring).

The group's size: the front door hands ``plan`` the ranks of ``hcom``'s group (the plan cache keys
on them), and the plan uses N = len(ranks) wherever the group's size enters:

* the chunking, :func:`.shared.row_chunks` with ``world=N``: each rank's all-reduce puts
  ``LINK_PASSES["all_reduce"] * bytes / N`` on a link, so a smaller group has more communication
  per rank to hide and may get another chunk count;
* int8 communication (comm_quant_scale_1/2): each chunk's rows are padded to a multiple of N for
  the all-to-all (``ceil(rows / N) * N`` rows of n int8), every rank reduce-sums a slice of
  ``ceil(rows / N)`` rows from N senders, and the all-gather returns N slices.

Before, the plan estimated with 8 ranks whatever the group; groups of 1, 2 or 4 ranks now plan with
their own size -- an intended change of their times (8-rank groups are unchanged). ``plan`` without
ranks (a study through :func:`ascend_sim.ops.study.plan_for` with no ``ranks=``) still assumes 8.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from ascend_sim import dtypes as D
from ascend_sim import formats as F
from ascend_sim.isa import CommStep, KernelPlan, WaitComm
from ascend_sim.tensor import TensorMeta

from ..base import Args, OpSpec
from ..common import as_float32, dequantise_weight, float_matmul, int_matmul, matrix_format, to_int8_saturated
from ..templates.gemm import AntiquantWeight, GemmSide, antiquant_cube, antiquant_mix_plan, share_workspace, \
    ws_regions
from ..templates.rows import RowOperand, RowStep, row_plan
from .shared import (AR_RANKS, BF16, COMM_MODES, F16, GROUP_QUANTUM, I8, I32, I64, INNER_LIMIT, INT_MAX, F32,
                     FusedMatmulComm, chunk_gemm, add_rows, dequant_rows, row_chunks, rows_at, scale_values)

# ============================================================================================
# npu_mm_all_reduce_base
# ============================================================================================
@dataclass(frozen=True, kw_only=True)
class ARSpec(OpSpec):
    scenario: str          # "float", "weight_quant", "quant"
    m: int                 # rows of x1 flattened (b*s for 3-D x1)
    k: int
    n: int
    out_shape: tuple
    out_dt: D.DType
    nz: bool
    quant_mode: str        # quant: "fixpipe" (int64 dequant_scale) or "epilogue"
    granularity: str       # weight quant: "tensor", "channel", "group"
    group: int
    comm_quant: bool
    x_dt: D.DType          # x1's dtype (the cube's, but int8 for full quantisation)
    bias: D.DType | None
    x3: bool
    antiquant: tuple       # (scale dtype, numel, offset dtype or None)
    dequant: tuple         # (dequant_scale dtype, numel)
    pertoken: bool
    comm_scale_item: float


class NpuMmAllReduceBase(FusedMatmulComm):
    name = "npu_mm_all_reduce_base"
    UNDOCUMENTED_NONE = ("y_dtype", "x1_dtype", "x2_dtype", "dequant_scale_dtype", "pertoken_scale_dtype")

    def infer(self, a: Args, chip) -> ARSpec:
        self._common(a)
        x1, x2 = self.tensor(a, "x1"), self.tensor(a, "x2")
        for arg in self.UNDOCUMENTED_NONE:
            if a.get(arg) is not None:
                raise self.fail(arg, "must be None (it selects the float8/float4 modes this page does not document)")
        if a.get("group_sizes") not in (None, [], ()):
            raise self.fail("group_sizes", "must be None (per-block quantisation is not on this page)")
        if a.get("comm_quant_mode") is not None and self.int_arg(a, "comm_quant_mode") != 0:
            raise self.fail("comm_quant_mode", "must be 0 (the int8 communication this page documents is selected by "
                                               "comm_quant_scale_1/2)")
        if a.get("comm_mode") is not None:
            self._str_choice(a, "comm_mode", COMM_MODES)
        if x1.ndim not in (2, 3):
            raise self.fail("x1", f"must be 2-D (m, k) or 3-D (b, s, k); got shape {x1.shape}")
        if x2.ndim != 2:
            raise self.fail("x2", f"must be 2-D (k, n); got shape {x2.shape}")
        for arg, t in (("x1", x1), ("x2", x2)):
            if t.numel == 0:
                raise self.fail(arg, "must not be empty")
        self.check_dtype("x1", x1, [I8, F16, BF16])
        self.check_dtype("x2", x2, [F16, I8, BF16])
        if F.is_fractal(x1.format):
            raise self.fail("x1", f"format must be ND; got {x1.format.name}")
        nz = matrix_format(self, "x2", x2)
        k = x1.shape[-1]
        if x2.shape[0] != k:
            raise self.fail("x2", f"its first dimension ({x2.shape[0]}) must equal x1's last dimension k={k}")
        n = x2.shape[1]
        m = math.prod(x1.shape[:-1])
        if x1.dtype is I8 and x2.dtype is I8:
            scenario = "quant"
        elif x1.dtype is not I8 and x2.dtype is I8:
            scenario = "weight_quant"
        elif x1.dtype is not I8 and x2.dtype is x1.dtype:
            scenario = "float"
        else:
            raise TypeError(f"{self.name}: argument 'x2' has dtype {x2.dtype.name} with {x1.dtype.name} x1; the page "
                            "supports float16/bfloat16 x1 with the same x2 or int8 x2, and int8 x1 with int8 x2")
        out_shape = (*x1.shape[:-1], n)
        present = {arg: self.tensor(a, arg, optional=True) for arg in
                   ("bias", "antiquant_scale", "antiquant_offset", "x3", "dequant_scale", "pertoken_scale",
                    "comm_quant_scale_1", "comm_quant_scale_2")}
        allowed = {"float": ("bias", "x3"),
                   "weight_quant": ("bias", "x3", "antiquant_scale", "antiquant_offset"),
                   "quant": ("bias", "x3", "dequant_scale", "pertoken_scale", "comm_quant_scale_1",
                             "comm_quant_scale_2")}[scenario]
        for arg, t in present.items():
            if t is not None and arg not in allowed:
                raise self.fail(arg, f"must be None in the {scenario.replace('_', ' ')} scenario "
                                     f"(x1 {x1.dtype.name}, x2 {x2.dtype.name})")
        gsz = self.int_arg(a, "antiquant_group_size", lo=0, hi=INT_MAX) \
            if a.get("antiquant_group_size") is not None else 0
        if gsz and scenario != "weight_quant":
            raise self.fail("antiquant_group_size", "must be 0 outside weight (fake) quantisation")
        granularity, quant_mode, comm_quant = "", "", False
        if scenario == "float":
            out_dt = x1.dtype
            if not (1 <= m <= INT_MAX and 1 <= k <= INT_MAX and 1 <= n <= INT_MAX):
                raise self.fail("x1", f"m, k, n must lie in [1, 2147483647]; got {m}, {k}, {n}")
            bias_dt = x1.dtype
        elif scenario == "weight_quant":
            out_dt, bias_dt = x1.dtype, x1.dtype
            if not (1 <= k <= INNER_LIMIT and 1 <= n <= INNER_LIMIT) or m > INT_MAX:
                raise self.fail("x2", f"weight quantisation needs k and n in [1, 65535] and m <= 2^31-1; got m={m}, "
                                      f"k={k}, n={n}")
            granularity = self._antiquant(a, present, x1.dtype, k, n, gsz)
        else:
            bias_dt = I32
            if k > INNER_LIMIT or n > INNER_LIMIT or m > INT_MAX:
                raise self.fail("x2", f"full quantisation needs the last dimensions of x1 and x2 (k={k}, n={n}) in "
                                      f"[1, 65535] and m <= 2^31-1")
            out_dt, quant_mode = self._dequant(a, present, m, n)
            comm_quant = self._comm_quant(a, present, out_dt, n)
        bias = present["bias"]
        if bias is not None:
            if bias.dtype is not bias_dt:
                raise TypeError(f"{self.name}: argument 'bias' has dtype {bias.dtype.name}; in the "
                                f"{scenario.replace('_', ' ')} scenario it must be {bias_dt.name}")
            if bias.shape != (n,):
                raise self.fail("bias", f"must be 1-D (n,) = ({n},); got {bias.shape}")
        x3 = present["x3"]
        if x3 is not None:
            if x3.dtype is not out_dt:
                raise TypeError(f"{self.name}: argument 'x3' has dtype {x3.dtype.name}; it must be the output's "
                                f"{out_dt.name}")
            if x3.shape != out_shape:
                raise self.fail("x3", f"must have the output's shape {out_shape}; got {x3.shape}")
            if F.is_fractal(x3.format):
                raise self.fail("x3", f"format must be ND; got {x3.format.name}")
        aqs, aqo, ds = present["antiquant_scale"], present["antiquant_offset"], present["dequant_scale"]
        cqs = present["comm_quant_scale_1"]
        return ARSpec(outputs=(TensorMeta(out_shape, out_dt),),
                      attrs=(("reduce_op", a.get("reduce_op")), ("comm_turn", a.get("comm_turn"))),
                      scenario=scenario, m=m, k=k, n=n, out_shape=out_shape, out_dt=out_dt, nz=nz,
                      quant_mode=quant_mode, granularity=granularity, group=gsz, comm_quant=comm_quant,
                      x_dt=x1.dtype, bias=None if bias is None else bias.dtype, x3=x3 is not None,
                      antiquant=() if aqs is None else (aqs.dtype, aqs.numel, None if aqo is None else aqo.dtype),
                      dequant=() if ds is None else (ds.dtype, ds.numel), pertoken=present["pertoken_scale"] is not None,
                      comm_scale_item=0.0 if cqs is None else cqs.dtype.itemsize)

    def _antiquant(self, a: Args, present: dict, x_dt: D.DType, k: int, n: int, gsz: int) -> str:
        scale, offset = present["antiquant_scale"], present["antiquant_offset"]
        if scale is None:
            raise self.fail("antiquant_scale", "is required with int8 x2 and float x1 (weight quantisation)")
        if scale.dtype is not x_dt:
            raise TypeError(f"{self.name}: argument 'antiquant_scale' has dtype {scale.dtype.name}; it must match "
                            f"x1's {x_dt.name}")
        groups = -(-k // gsz) if gsz else 0
        if gsz and scale.shape == (groups, n):
            granularity = "group"
            if gsz % GROUP_QUANTUM or not GROUP_QUANTUM <= gsz <= min(k - 1, INT_MAX):
                raise self.fail("antiquant_group_size", f"must be a multiple of 32 in [32, min(k-1, INT_MAX)] = "
                                                        f"[32, {k - 1}]; got {gsz}")
        elif scale.shape == (1,):
            granularity = "tensor"
        elif scale.shape in ((n,), (1, n)):
            granularity = "channel"
        else:
            want = f"[1], [{n}], [1, {n}]" + (f" or [ceil(k/g), n] = [{groups}, {n}]" if gsz else "")
            raise self.fail("antiquant_scale", f"shape {scale.shape} must be one of {want}")
        if gsz and granularity != "group":
            raise self.fail("antiquant_group_size", f"must be 0 unless antiquant_scale is per group "
                                                    f"([ceil(k/g), n]); got {gsz} with a per-{granularity} scale")
        if offset is not None:
            if offset.dtype is not scale.dtype or offset.shape != scale.shape:
                raise self.fail("antiquant_offset", f"must have antiquant_scale's dtype and shape "
                                                    f"({scale.dtype.name} {scale.shape}); got {offset.dtype.name} "
                                                    f"{offset.shape}")
        return granularity

    def _dequant(self, a: Args, present: dict, m: int, n: int) -> tuple[D.DType, str]:
        ds, pts = present["dequant_scale"], present["pertoken_scale"]
        if ds is None:
            raise self.fail("dequant_scale", "is required with int8 x1 and x2 (full quantisation)")
        self.check_dtype("dequant_scale", ds, [I64, BF16, F32])
        if ds.shape not in ((1,), (n,), (1, n)):
            raise self.fail("dequant_scale", f"must be [1] (per tensor), [n] or [1, n] = [1, {n}] (per channel); got "
                                             f"{ds.shape}")
        if pts is not None:
            self.check_dtype("pertoken_scale", pts, [F32])
            if pts.shape != (m,):
                raise self.fail("pertoken_scale", f"must be 1-D of x1's rows (m or b*s) = ({m},); got {pts.shape}")
            if ds.dtype is I64:
                raise TypeError(f"{self.name}: argument 'dequant_scale': with pertoken_scale it must be float32 "
                                "(float16 output) or bfloat16 (bfloat16 output), not int64")
        elif ds.dtype is F32:
            raise TypeError(f"{self.name}: argument 'dequant_scale': a float32 scale without pertoken_scale must first "
                            "be converted to int64 by npu_trans_quant_param (the page's note)")
        out_dt = BF16 if ds.dtype is BF16 else F16
        return out_dt, ("fixpipe" if ds.dtype is I64 else "epilogue")

    def _comm_quant(self, a: Args, present: dict, out_dt: D.DType, n: int) -> bool:
        s1, s2 = present["comm_quant_scale_1"], present["comm_quant_scale_2"]
        if (s1 is None) != (s2 is None):
            raise self.fail("comm_quant_scale_2" if s2 is None else "comm_quant_scale_1",
                            "comm_quant_scale_1 and comm_quant_scale_2 must be given together or not at all")
        if s1 is None:
            return False
        for arg, t in (("comm_quant_scale_1", s1), ("comm_quant_scale_2", s2)):
            if t.dtype is not out_dt:
                raise TypeError(f"{self.name}: argument '{arg}' has dtype {t.dtype.name}; it must be the output's "
                                f"{out_dt.name}")
            if t.shape not in ((n,), (1, n)):
                raise self.fail(arg, f"must be [n] or [1, n] = [1, {n}]; got {t.shape}")
        if s1.shape != s2.shape:
            raise self.fail("comm_quant_scale_2", f"must have comm_quant_scale_1's shape {s1.shape}; got {s2.shape}")
        return True

    def check_group(self, spec, ranks: tuple) -> None:
        if len(ranks) not in AR_RANKS:
            raise self.fail("hcom", f"names a group of {len(ranks)} ranks; the page supports {list(AR_RANKS)} ranks")

    # ----- numerics -----
    def _partial(self, a: Args, s: ARSpec) -> np.ndarray:
        """This rank's x1 @ W + bias + x3, float32 (m, n)."""
        x1 = a.x1.data.reshape(s.m, s.k)
        bias, x3 = a.get("bias"), a.get("x3")
        if s.scenario == "quant":
            acc = int_matmul(x1, a.x2.data)
            if bias is not None:
                acc = acc + bias.data.astype(np.int64)
            v = acc.astype(np.float32) * scale_values(a.dequant_scale).reshape(1, -1)
            pts = a.get("pertoken_scale")
            if pts is not None:
                v = v * as_float32(pts).reshape(-1, 1)
        else:
            w = a.x2.data if s.scenario == "float" else self._weight(a, s)
            v = float_matmul(x1, w)
            if bias is not None:
                v = v + as_float32(bias).reshape(1, -1)
        if x3 is not None:
            v = v + as_float32(x3).reshape(s.m, s.n)
        return v.astype(np.float32)

    def _weight(self, a: Args, s: ARSpec) -> np.ndarray:
        """(x2 + antiquant_offset) * antiquant_scale in float32, rounded to x1's dtype."""
        off = a.get("antiquant_offset")
        return dequantise_weight(a.x2.data, as_float32(a.antiquant_scale), None if off is None else as_float32(off),
                                 s.group if s.granularity == "group" else 0, s.k, a.x1.dtype)

    def local(self, s: ARSpec, a: Args):
        v = self._partial(a, s)
        if not s.comm_quant:
            return v
        # int8 communication: the rank's result in the output dtype, / scale 1 -> fp16 -> int8
        s1 = as_float32(a.comm_quant_scale_1).reshape(1, -1)
        y = D.cast(v, s.out_dt).astype(np.float32)
        return to_int8_saturated((y / s1).astype(np.float16)), s1, as_float32(a.comm_quant_scale_2).reshape(1, -1)

    def combine(self, s: ARSpec, parts: dict, ranks: tuple) -> dict:
        self.check_group(s, ranks)
        total = np.zeros((s.m, s.n), dtype=np.float32)
        for r in ranks:
            total += np.asarray(parts[r][0] if s.comm_quant else parts[r], dtype=np.float32)
        if s.comm_quant:
            _, s1, s2 = parts[ranks[0]]       # the group's scales (every rank passes the same)
            requant = to_int8_saturated((total * (s1 / s2)).astype(np.float16))
            total = requant.astype(np.float32) * s2
        out = D.cast(total, s.out_dt).reshape(s.out_shape)
        return {r: (out,) for r in parts}

    # ----- plan -----
    def plan(self, s: ARSpec, chip, tiling=None, ranks=None):
        cube_dt = I8 if s.scenario == "quant" else s.x_dt
        out_it = s.out_dt.itemsize
        comm_it = 1.0 if s.comm_quant else out_it
        world = len(ranks) if ranks else max(AR_RANKS)      # the group's size (a study without ranks: 8)
        kernels = 1 + (s.quant_mode == "epilogue") + s.x3
        tasks = kernels + 1 + (3 if s.comm_quant else 0)    # + quant, reduce-sum kernels and the all-gather
        chunks = row_chunks(chip, s.m, n=s.n, k=s.k, cube_dtype=cube_dt, flops_per_row=2.0 * s.k * s.n,
                            comm_kind="all_reduce", comm_bytes_per_row=s.n * comm_it, world=world,
                            tasks_per_chunk=tasks)
        max_rows = max(r for _, r in chunks)
        pad = lambda rows: -(-rows // world) * world       # noqa: E731 - all-to-all slices rows by rank
        padded = sum(pad(r) for _, r in chunks)
        ws = ws_regions(chip, {"partial": max_rows * s.n * 4 if s.quant_mode == "epilogue" else 0,
                               "send": padded * s.n if s.comm_quant else 0,
                               "recv": padded * s.n if s.comm_quant else 0})
        items: list = []
        n_steps = 0
        pending = None                    # comm-quant: the last chunk whose all-to-all is in flight
        send_row = 0
        for r0, rows in chunks:
            items += self._chunk_kernels(s, chip, r0, rows, ws)
            if not s.comm_quant:
                items.append(CommStep("all_reduce", int(rows * s.n * out_it), f"{self.name}.all_reduce"))
                n_steps += 1
                continue
            # int8 communication: quantise this chunk, all-to-all it; then reduce the previous chunk
            items.append(self._quant_kernel(s, chip, r0, rows, ws["send"] + send_row * s.n))
            # (an all-to-all whose receiver sums what it gets is a mesh reduce-scatter)
            items.append(CommStep("reduce_scatter", int(pad(rows) * s.n), f"{self.name}.all_to_all"))
            a2a_step = n_steps
            n_steps += 1
            if pending is not None:
                n_steps = self._reduce_and_gather(s, chip, items, pending, n_steps, ws, world)
            pending = (a2a_step, rows, send_row)
            send_row += pad(rows)
        if s.comm_quant:
            n_steps = self._reduce_and_gather(s, chip, items, pending, n_steps, ws, world)
            items += [WaitComm(i) for i in range(n_steps)]
            items.append(self._comm_dequant(s, chip, ws["recv"]))
        # (the weight-quant MIX kernel asks for its own workspace: the dequantised weight in NZ)
        return share_workspace(items, ws["_total"])

    def _chunk_kernels(self, s: ARSpec, chip, r0: int, rows: int, ws: dict) -> list[KernelPlan]:
        """The kernels that leave rows r0.. of this rank's x1 @ W (+ bias, + x3) in out0."""
        nm = self.name
        bias = dict(bias=None if s.bias is None else "bias", bias_itemsize=4.0 if s.bias is None else s.bias.itemsize)
        out_at = rows_at(s.out_dt, s.n, r0)
        if s.scenario == "float":
            A = GemmSide("x1", s.x_dt, rows, s.k, layout=rows_at(s.x_dt, s.k, r0))
            kernels = [chunk_gemm(nm, chip, A, GemmSide("x2", s.x_dt, s.k, s.n, nz=s.nz), "out0", s.out_dt, out_at,
                                  **bias)]
        elif s.scenario == "weight_quant":
            A = GemmSide("x1", s.x_dt, rows, s.k, layout=rows_at(s.x_dt, s.k, r0))
            w = self._antiquant_weight(s)
            kernels = [antiquant_mix_plan(nm, chip, antiquant_cube(nm, chip, A, w, "out0", s.out_dt, out_layout=out_at,
                                                                   **bias), w)]
        elif s.quant_mode == "fixpipe":
            A = GemmSide("x1", I8, rows, s.k, layout=rows_at(I8, s.k, r0))
            kernels = [chunk_gemm(nm, chip, A, GemmSide("x2", I8, s.k, s.n, nz=s.nz), "out0", s.out_dt, out_at,
                                  bias=bias["bias"], scale="dequant_scale", scale_per_tensor=s.dequant[1] == 1)]
        else:
            A = GemmSide("x1", I8, rows, s.k, layout=rows_at(I8, s.k, r0))
            cube = chunk_gemm(nm, chip, A, GemmSide("x2", I8, s.k, s.n, nz=s.nz), "workspace", I32,
                              rows_at(I32, s.n, 0, ws["partial"]), bias=bias["bias"])
            post = dequant_rows(nm + ".dequant", chip, rows, s.n,
                                RowOperand("out0", s.out_dt.itemsize, offset=int(r0 * s.n * s.out_dt.itemsize)),
                                partial_base=ws["partial"],
                                scale=("dequant_scale", s.dequant[0].itemsize, s.dequant[1]),
                                pertoken=RowOperand("pertoken_scale", 4.0, "per_row", offset=r0 * 4) if s.pertoken
                                else None)
            kernels = [cube, post]
        if s.x3:
            kernels.append(add_rows(nm + ".add_x3", chip, rows, s.n, "out0", "x3", s.out_dt, r0))
        return kernels

    def _antiquant_weight(self, s: ARSpec) -> AntiquantWeight:
        scale_dt, scale_n, off_dt = s.antiquant
        return AntiquantWeight(k=s.k, n=s.n, weight="x2", w_item=1.0, w_rows_along_n=False, scale="antiquant_scale",
                               s_item=scale_dt.itemsize, s_count=scale_n, group=s.group if s.granularity == "group" else 0,
                               offset=None if off_dt is None else "antiquant_offset",
                               o_item=0 if off_dt is None else off_dt.itemsize, out_item=s.x_dt.itemsize)

    def _quant_kernel(self, s: ARSpec, chip, r0: int, rows: int, send_base: int) -> KernelPlan:
        """Rows r0.. of the result, / comm_quant_scale_1 per column, to int8 in the send buffer."""
        it, s_it = s.out_dt.itemsize, s.comm_scale_item
        plan = row_plan(self.name + ".comm_quant", chip, rows, s.n,
                        [RowOperand("out0", it, offset=int(r0 * s.n * it)),
                         RowOperand("comm_quant_scale_1", s_it, "shared")],
                        [RowOperand("workspace", 1.0, offset=send_base)],
                        [RowStep("unary", "float32"), RowStep("div", "float32"), RowStep("unary", "float32", count=2)],
                        temps_bytes=4.0)
        return plan

    def _reduce_and_gather(self, s: ARSpec, chip, items: list, pending, n_steps: int, ws: dict, world: int) -> int:
        """Wait for a chunk's all-to-all, sum the world's int8 slices (requantised by scale1/scale2)
        and all-gather them: the second half of the int8 all-reduce."""
        step, rows, send_row = pending
        s_it = s.comm_scale_item
        slice_rows = -(-rows // world)
        items.append(WaitComm(step))
        plan = row_plan(self.name + ".comm_reduce_sum", chip, slice_rows, s.n,
                        [RowOperand("workspace", float(world), offset=ws["recv"] + send_row * s.n),
                         RowOperand("comm_quant_scale_1", s_it, "shared"),
                         RowOperand("comm_quant_scale_2", s_it, "shared")],
                        [RowOperand("workspace", 1.0, offset=ws["recv"] + send_row * s.n)],
                        [RowStep("unary", "float32", count=2 * world), RowStep("binary", "float32", count=world - 1),
                         RowStep("binary", "float32"), RowStep("unary", "float32", count=2)], temps_bytes=8.0)
        items.append(plan)
        items.append(CommStep("all_gather", int(slice_rows * world * s.n), f"{self.name}.all_gather"))
        return n_steps + 1

    def _comm_dequant(self, s: ARSpec, chip, recv_base: int) -> KernelPlan:
        """The gathered int8 result x comm_quant_scale_2 -> the output dtype."""
        it, s_it = s.out_dt.itemsize, s.comm_scale_item
        plan = row_plan(self.name + ".comm_dequant", chip, s.m, s.n,
                        [RowOperand("workspace", 1.0, offset=recv_base),
                         RowOperand("comm_quant_scale_2", s_it, "shared")],
                        [RowOperand("out0", it)],
                        [RowStep("unary", "float32", count=2), RowStep("binary", "float32"),
                         RowStep("unary", "float32")], temps_bytes=4.0)
        return plan


