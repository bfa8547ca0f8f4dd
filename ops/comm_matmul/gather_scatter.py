"""npu_all_gather_base_mm and npu_mm_reduce_scatter_base (see the package docstring)."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ascend_sim import dtypes as D
from ascend_sim.isa import CommStep, KernelPlan, WaitComm
from ascend_sim.tensor import TensorMeta

from ..base import Args, OpSpec
from ..common import as_float32, float_matmul, int_matmul
from ..templates.gemm import GemmSide, share_workspace, ws_regions
from ..templates.rows import RowOperand
from .shared import I8, I32, I64, FusedMatmulComm, chunk_gemm, dequant_rows, row_chunks, rows_at, scale_values

# ============================================================================================
# npu_all_gather_base_mm
# ============================================================================================
@dataclass(frozen=True, kw_only=True)
class CommSpec(OpSpec):
    """The shapes and mode of an all-gather or reduce-scatter matmul call."""

    m: int                 # local rows
    k: int
    n: int
    world: int
    dt: D.DType
    out_dt: D.DType
    nz: bool
    quant: bool
    mode: str              # "float", "fixpipe", "epilogue"
    gather_output: bool = False
    group: str = ""
    bias: D.DType | None = None
    x2_scale: tuple = ()   # (dtype, numel)
    x1_scale: bool = False


def _spec(op, a: Args, x1_arg: str, x1, m: int, k: int, n: int, nz: bool, comm_mode: str, world: int,
          out_shape: tuple, more_outs: tuple, attrs: tuple, **extra) -> CommSpec:
    """The quantisation, bias and output dtype checks both ops share, composed into the spec: the
    product (``out_shape``, its dtype decided here), then ``more_outs``."""
    quant = x1.dtype is I8
    x1s, x2s = op._ag_rs_quant_args(a, x1_arg, m, n, quant, comm_mode)
    op._ag_rs_bias(a, x1.dtype, n, comm_mode)
    out_dt = op._out_dtype(a, quant, x2s, x1.dtype)
    mode = "float" if not quant else ("fixpipe" if x2s.dtype is I64 and x1s is None else "epilogue")
    return CommSpec(outputs=(TensorMeta(out_shape, out_dt),) + tuple(more_outs), attrs=attrs, m=m, k=k, n=n, world=world, dt=x1.dtype, out_dt=out_dt, nz=nz,
                    quant=quant, mode=mode, group=a.get(op.group_arg), **op._epilogue(a), **extra)


class NpuAllGatherBaseMm(FusedMatmulComm):
    name = "npu_all_gather_base_mm"

    def infer(self, a: Args, chip) -> CommSpec:
        self._common(a)
        x1, x2, m, k, n, nz, comm_mode = self._ag_rs_matrices(a, "x1")
        world = self._world_size(a, chip)
        if a.get("gather_index") is not None and self.int_arg(a, "gather_index") != 0:
            raise self.fail("gather_index", f"only 0 (gather x1) is supported in the current version; got "
                                            f"{a.gather_index}")
        go = a.get("gather_output")
        go = True if go is None else go
        if not isinstance(go, (bool, np.bool_)):
            raise TypeError(f"{self.name}: argument 'gather_output' must be a bool, got {type(go).__name__}")
        if comm_mode == "aiv" and not go:
            raise self.fail("gather_output", "must be True with comm_mode='aiv'")
        gathered = (m * world, k) if go else (0,)
        return _spec(self, a, "x1", x1, m, k, n, nz, comm_mode, world,
                     (m * world, n), (TensorMeta(gathered, x1.dtype),),
                     (("world_size", a.get("world_size")), ("gather_output", a.get("gather_output")),
                      ("comm_mode", a.get("comm_mode") or "ai_cpu")), gather_output=bool(go))

    # ----- numerics -----
    def local(self, s: CommSpec, a: Args):
        """This rank's rows (and token scales), and what its own product needs: x2 and its
        dequant scale or bias."""
        x1s, bias = a.get("x1_scale"), a.get("bias")
        return (a.x1.data, None if x1s is None else as_float32(x1s).reshape(-1), a.x2.data,
                scale_values(a.x2_scale).reshape(1, -1) if s.quant else None,
                None if bias is None else as_float32(bias).reshape(1, -1))

    def combine(self, s: CommSpec, parts: dict, ranks: tuple) -> dict:
        self.check_group(s, ranks)
        gathered = np.concatenate([parts[r][0] for r in ranks])
        tokens = np.concatenate([parts[r][1] for r in ranks]).reshape(-1, 1) if s.x1_scale else None
        second = gathered.copy() if s.gather_output else np.zeros((0,), dtype=s.dt.np_dtype)
        out = {}
        for r in parts:             # every rank multiplies the gathered rows by its own x2
            _, _, x2, x2s, bias = parts[r]
            if s.quant:
                v = int_matmul(gathered, x2).astype(np.float32) * x2s
                if tokens is not None:
                    v = v * tokens
            else:
                v = float_matmul(gathered, x2)
                if bias is not None:
                    v = v + bias
            out[r] = (D.cast(v, s.out_dt), second if len(out) == 0 else second.copy())
        return out

    # ----- plan -----
    def plan(self, s: CommSpec, chip, tiling=None, ranks=None):
        it = s.dt.itemsize
        has_x1s = s.x1_scale
        chunks = row_chunks(chip, s.m, n=s.n, k=s.k, cube_dtype=s.dt, flops_per_row=2.0 * s.k * s.n * (s.world - 1),
                            comm_kind="all_gather", comm_bytes_per_row=s.world * s.k * it, world=s.world,
                            tasks_per_chunk=2 + (s.mode == "epilogue"), batch=max(1, s.world - 1))
        gathered_rows = s.m * s.world
        max_rows = max(s.m, (s.world - 1) * max(r for _, r in chunks))
        ws = ws_regions(chip, {"gathered": 0 if s.gather_output else gathered_rows * s.k * it,
                                "scales": gathered_rows * 4 if has_x1s else 0,
                                "partial": max_rows * s.n * 4 if s.mode == "epilogue" else 0})
        gathered = "out1" if s.gather_output else "workspace"
        g_base = 0 if s.gather_output else ws["gathered"]
        # communication first: every chunk's all-gather (with its token scales) is queued at once
        items: list = [CommStep("all_gather", int(s.world * rows * (s.k * it + (4 if has_x1s else 0))),
                                f"{self.name}.all_gather") for _, rows in chunks]
        # the local rows need nothing from the other ranks
        items += self._rows(s, chip, "x1", 0, s.m, 0, ws, scale_tensor="x1_scale", scale_base=0)
        row = s.m
        for c, (_, rows) in enumerate(chunks):
            items.append(WaitComm(c))
            grows = (s.world - 1) * rows
            items += self._rows(s, chip, gathered, g_base + row * s.k * it, grows, row, ws,
                                scale_tensor="workspace", scale_base=ws["scales"] + row * 4)
            row += grows
        return share_workspace(items, ws["_total"])

    def _rows(self, s: CommSpec, chip, a_tensor: str, a_base: int, rows: int, out_row: int, ws: dict,
              *, scale_tensor: str, scale_base: int) -> list[KernelPlan]:
        """The kernels of ``rows`` rows of the product, A from ``a_tensor`` at byte ``a_base``."""
        nm = self.name
        dt = I8 if s.quant else s.dt
        A = GemmSide(a_tensor, dt, rows, s.k, layout=rows_at(dt, s.k, 0, a_base))
        B = GemmSide("x2", s.dt, s.k, s.n, nz=s.nz)
        out_at = rows_at(s.out_dt, s.n, out_row)
        if s.mode == "float":
            return [chunk_gemm(nm, chip, A, B, "out0", s.out_dt, out_at, bias=None if s.bias is None else "bias",
                               bias_itemsize=4.0 if s.bias is None else s.bias.itemsize)]
        if s.mode == "fixpipe":
            return [chunk_gemm(nm, chip, A, B, "out0", s.out_dt, out_at, scale="x2_scale",
                               scale_per_tensor=s.x2_scale[1] == 1)]
        cube = chunk_gemm(nm, chip, A, B, "workspace", I32, rows_at(I32, s.n, 0, ws["partial"]))
        post = dequant_rows(nm + ".dequant", chip, rows, s.n,
                            RowOperand("out0", s.out_dt.itemsize, offset=int(out_row * s.n * s.out_dt.itemsize)),
                            partial_base=ws["partial"], scale=("x2_scale", s.x2_scale[0].itemsize, s.x2_scale[1]),
                            pertoken=RowOperand(scale_tensor, 4.0, "per_row", offset=scale_base) if s.x1_scale
                            else None)
        return [cube, post]


# ============================================================================================
# npu_mm_reduce_scatter_base
# ============================================================================================
class NpuMmReduceScatterBase(FusedMatmulComm):
    name = "npu_mm_reduce_scatter_base"

    def infer(self, a: Args, chip) -> CommSpec:
        self._common(a)
        x1, x2, m, k, n, nz, comm_mode = self._ag_rs_matrices(a, "input")
        world = self._world_size(a, chip)
        if m % world:
            raise self.fail("input", f"its m dimension ({m}) must be divisible by world_size={world}")
        return _spec(self, a, "input", x1, m, k, n, nz, comm_mode, world, (m // world, n), (),
                     (("world_size", a.get("world_size")), ("reduce_op", a.get("reduce_op")),
                      ("comm_mode", a.get("comm_mode") or "ai_cpu")))

    # ----- numerics -----
    def local(self, s: CommSpec, a: Args):
        bias = a.get("bias")
        if s.quant:
            v = int_matmul(a.input.data, a.x2.data).astype(np.float32) * scale_values(a.x2_scale).reshape(1, -1)
            if a.get("x1_scale") is not None:
                v = v * as_float32(a.x1_scale).reshape(-1, 1)
            return v.astype(np.float32)
        v = float_matmul(a.input.data, a.x2.data)
        if bias is not None:
            v = v + as_float32(bias).reshape(1, -1)
        return v.astype(np.float32)

    def combine(self, s: CommSpec, parts: dict, ranks: tuple) -> dict:
        self.check_group(s, ranks)
        total = np.zeros((s.m, s.n), dtype=np.float32)
        for r in ranks:
            total += parts[r]
        rows = s.m // len(ranks)
        out = D.cast(total, s.out_dt)
        return {r: (out[ranks.index(r) * rows:(ranks.index(r) + 1) * rows].copy(),) for r in parts}

    # ----- plan -----
    def plan(self, s: CommSpec, chip, tiling=None, ranks=None):
        per_rank = s.m // s.world
        out_it = s.out_dt.itemsize
        chunks = row_chunks(chip, per_rank, n=s.n, k=s.k, cube_dtype=s.dt, flops_per_row=2.0 * s.k * s.n * s.world,
                            comm_kind="reduce_scatter", comm_bytes_per_row=s.world * s.n * out_it, world=s.world,
                            tasks_per_chunk=2 + (s.mode == "epilogue"), batch=s.world)
        max_rows = s.world * max(r for _, r in chunks)
        ws = ws_regions(chip, {"send": s.m * s.n * out_it,
                                "partial": max_rows * s.n * 4 if s.mode == "epilogue" else 0})
        items: list = []
        for r0, rows in chunks:
            # chunk: rows r0.. of every rank's slice of M, laid out slice after slice in the send buffer
            send = ws["send"] + int(r0 * s.world * s.n * out_it)
            items += self._chunk(s, chip, r0, rows, per_rank, send, ws)
            items.append(CommStep("reduce_scatter", int(s.world * rows * s.n * out_it),
                                  f"{self.name}.reduce_scatter"))
        return share_workspace(items, ws["_total"])

    def _chunk(self, s: CommSpec, chip, r0: int, rows: int, per_rank: int, send: int,
               ws: dict) -> list[KernelPlan]:
        """Rows r0.. of every rank's slice of M (a batch of ``world`` pieces), into the send buffer
        at ``send``, slice after slice."""
        nm = self.name
        dt = I8 if s.quant else s.dt
        batch = (s.world,) if s.world > 1 else ()
        A = GemmSide("input", dt, rows, s.k, batch, layout=rows_at(dt, s.k, r0, batch_rows=per_rank if batch else 0))
        B = GemmSide("x2", s.dt, s.k, s.n, nz=s.nz)
        out_at = rows_at(s.out_dt, s.n, 0, send, batch_rows=rows if batch else 0)
        if s.mode == "float":
            return [chunk_gemm(nm, chip, A, B, "workspace", s.out_dt, out_at, bias=None if s.bias is None else "bias",
                               bias_itemsize=4.0 if s.bias is None else s.bias.itemsize)]
        if s.mode == "fixpipe":
            return [chunk_gemm(nm, chip, A, B, "workspace", s.out_dt, out_at, scale="x2_scale",
                               scale_per_tensor=s.x2_scale[1] == 1)]
        cube = chunk_gemm(nm, chip, A, B, "workspace", I32, rows_at(I32, s.n, 0, ws["partial"],
                                                                    batch_rows=rows if batch else 0))
        # the token scales of the chunk's pieces: rows r0.. of every rank's slice (a batch of rows
        # per piece, per_rank rows apart)
        pertoken = RowOperand("x1_scale", 4.0, "per_row", offset=r0 * 4, batch_rows=rows, batch_stride=per_rank * 4)
        out = RowOperand("workspace", s.out_dt.itemsize, offset=send)
        post = dequant_rows(nm + ".dequant", chip, s.world * rows, s.n, out, partial_base=ws["partial"],
                            scale=("x2_scale", s.x2_scale[0].itemsize, s.x2_scale[1]),
                            pertoken=pertoken if s.x1_scale else None)
        return [cube, post]


