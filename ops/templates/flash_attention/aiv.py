"""The AIV programs of a flash-attention block (tile layer: the vector steps): each AIV owns half of
a tile's rows -- online softmax of S, P to the workspace, rescale-accumulate of the partial O,
the unit's output and statistics; with MSD also the int8 pieces of the query."""
from __future__ import annotations

from ascend_sim.isa import Buf, Pipe, ProgramBuilder

from .sizing import AIV_EVENT_IDS, F32, F32_BYTES, up
from .units import BlockContext, Unit, elem_access, q_rows

MTE2, MTE3, V = Pipe.MTE2, Pipe.MTE3, Pipe.VECTOR


def aiv_program(chip, ctx: BlockContext, a: int, b: ProgramBuilder | None = None):
    """The program of AIV ``a`` of the block (into ``b``: a builder, or an AccessRecorder)."""
    p, t, sz, fl, units = ctx.p, ctx.t, ctx.sz, ctx.flags, ctx.units
    g = sz.grain
    per_row = g.f32_per_block                        # per-row scalars, one block each
    b = b or ProgramBuilder(chip, "AIV")
    # Each AIV takes its own event ids: the engine keeps one set of flags per block, so two AIVs
    # waiting on the same (pipe, pipe, id) would answer each other's sets.
    ev = a * AIV_EVENT_IDS
    qk, pv = p.qk_dtype, p.p_dtype
    steps = ctx.steps
    addr = {}
    pos = 0
    for k, v in sz.ub.items():                       # UB layout: the regions one after another
        addr[k] = pos
        pos += v
    s_buf = sz.ub["S/P"] // 2
    half = sz.half
    live = [ui for ui, u in enumerate(units) if u.tiles]     # units the cube works on, in order

    def my_rows(u: Unit) -> tuple[int, int]:
        r0 = min(u.rows, a * half)
        return r0, max(0, min(u.rows, r0 + half) - r0)

    # ----- MSD: split a unit's query rows into int8 pieces for the cube -----
    qs = {"n": 0}

    def emit_qsplit(k: int):
        u = units[live[k]]
        r0, r = my_rows(u)
        if r:
            if qs["n"] >= 1:
                b.wait_flag(MTE3, MTE2, ev + 2)
            qs["n"] += 1
            base = addr["query split"]
            for part in p.q_parts:
                for off, rows, stride in q_rows(p, u, part, r0, r):
                    b.load_gm(Buf.UB, base, part.tensor, int(off), rows, int(part.row_bytes), int(stride),
                              name="MTE2.Q_rows")
            b.set_flag(MTE2, V, ev + 3)
            b.wait_flag(MTE2, V, ev + 3)
            e = r * p.d_qk
            b.vector("unary", F32, e, addrs=(base,), name="VECTOR.cast_q")
            b.vector("binary", F32, e, addrs=(base,), name="VECTOR.fold_key_scale")
            for _ in range(p.msd_steps):             # piece: max, scale to int8, round, subtract
                b.vector("binary", F32, e, addrs=(base,), name="VECTOR.msd_max_fold")
                b.vector("reduce_max", F32, r * per_row, addrs=(base,), name="VECTOR.msd_row_max")
                b.vector("unary", F32, e, addrs=(base,), name="VECTOR.msd_scale")
                b.vector("unary", F32, e, addrs=(base,), name="VECTOR.msd_cast_int8")
                b.vector("binary", F32, e, addrs=(base,), name="VECTOR.msd_residual")
            b.set_flag(V, MTE3, ev + 3)
            b.wait_flag(V, MTE3, ev + 3)
            b.store_gm(base, "workspace", int(ctx.query_pieces(k) + qk.nbytes(r0 * steps * p.d_qk)),
                       r * steps, int(qk.nbytes(p.d_qk)), name="MTE3.Q_pieces")
            b.set_flag(MTE3, MTE2, ev + 2)
        b.cross_set(MTE3, fl.Q_READY[k % 2])

    # ----- softmax of one S tile -----
    sm = {"n": 0}

    def emit_sm(j: int):
        st = ctx.step(j)
        ui, u, c0, c1, need, first, slot, n = st.ui, st.u, st.c0, st.c1, st.need_mask, st.first, st.slot, st.n
        r0, r = my_rows(u)
        sb = sm["n"] % 2                             # S/P buffer of this AIV's next tile with rows
        s_addr = addr["S/P"] + sb * s_buf
        b.scalar(2)
        b.cross_wait(MTE2, fl.S_READY[slot], "AIC")
        use_mask = p.user_mask is not None and (p.mask_every_tile or need)
        if r:
            if sm["n"] >= 2:
                b.wait_flag(MTE3, MTE2, ev + sb)     # this S/P buffer's P has been stored
            sm["n"] += 1
            b.load_gm(Buf.UB, s_addr, "workspace", int(ctx.slot(j, "S") + r0 * steps * n * F32_BYTES),
                      r * steps, int(n * F32_BYTES), name="MTE2.S_rows")
            if use_mask:
                off, rows, rb, stride = elem_access(p.user_mask, u, p, r0, r, c0, c1)
                b.load_gm(Buf.UB, addr["mask"] + sb * (sz.ub["mask"] // 2), p.user_mask.tensor, int(off), rows,
                          int(rb), int(stride), name="MTE2.mask_tile")
            if p.pse is not None:
                off, rows, rb, stride = elem_access(p.pse, u, p, r0, r, c0, c1)
                b.load_gm(Buf.UB, addr["pse"], p.pse.tensor, int(off), rows, int(rb), int(stride),
                          name="MTE2.pse_tile")
            if p.dropout is not None:
                off, rows, rb, stride = elem_access(p.dropout, u, p, r0, r, c0, c1)
                b.load_gm(Buf.UB, addr["dropout bits"], p.dropout.tensor, int(off), rows, int(rb), int(stride),
                          name="MTE2.dropout_bits")
            kvh = u.head if p.group_heads else u.head // (p.q_heads // p.kv_heads)
            for prm in p.antiquant_token_params:
                e0 = prm.batch_base[u.b] + kvh * prm.head_stride + c0
                b.load_gm(Buf.UB, addr["antiquant params"], prm.tensor, int(e0 * prm.elem_bits // 8), 1,
                          max(1, n * prm.elem_bits // 8), name="MTE2.antiquant_params")
            b.set_flag(MTE2, V, ev + sb)
        if r:
            e = r * n
            row_scalars = r * per_row
            b.wait_flag(MTE2, V, ev + sb)
            if not b.records_only:                   # the softmax itself: on-core work only
                if p.msd_steps:
                    b.vector("fma", F32, (steps - 1) * e, addrs=(s_addr,), name="VECTOR.msd_combine_s")
                for _ in p.antiquant_token_params:
                    b.vector("binary", F32, e, addrs=(s_addr,), name="VECTOR.antiquant_per_token")
                b.vector("unary", F32, e, addrs=(s_addr,), name="VECTOR.muls_scale")
                if p.pse is not None:
                    if p.pse.elem_bits < 8 * F32_BYTES:
                        b.vector("unary", F32, e, addrs=(addr["pse"],), name="VECTOR.cast_pse")
                    b.vector("binary", F32, e, addrs=(s_addr,), name="VECTOR.add_pse")
                if use_mask:
                    b.vector("binary", F32, e, addrs=(s_addr,), name="VECTOR.select_mask")
                # row max: fold the row pairwise down to one block, then reduce it
                if n > per_row:
                    b.vector("binary", F32, r * (n - per_row), addrs=(s_addr,), name="VECTOR.max_fold")
                b.vector("reduce_max", F32, row_scalars, addrs=(s_addr,), name="VECTOR.row_max")
                b.vector("binary", F32, row_scalars, addrs=(addr["row stats"],), name="VECTOR.max_running")
                if not first:                            # rescale factor exp(m_old - m_new)
                    b.vector("binary", F32, row_scalars, addrs=(addr["row stats"],), name="VECTOR.sub_max")
                    b.vector("exp", F32, row_scalars, addrs=(addr["row stats"],), name="VECTOR.exp_rescale")
                b.vector("binary", F32, e, addrs=(s_addr,), name="VECTOR.sub_row_max")
                b.vector("exp", F32, e, addrs=(s_addr,), name="VECTOR.exp")
                if n > per_row:
                    b.vector("binary", F32, r * (n - per_row), addrs=(s_addr,), name="VECTOR.sum_fold")
                b.vector("reduce_sum", F32, row_scalars, addrs=(s_addr,), name="VECTOR.row_sum")
                b.vector("fma" if not first else "unary", F32, row_scalars, addrs=(addr["row stats"],),
                         name="VECTOR.sum_running")
                if p.dropout_in_kernel:
                    b.vector("binary", "int32", e, addrs=(s_addr,), name="VECTOR.dropout_random")
                if p.dropout is not None or p.dropout_in_kernel:
                    b.vector("binary", F32, e, addrs=(s_addr,), name="VECTOR.dropout_select")
                if p.quantize_p:
                    b.vector("unary", F32, e, addrs=(s_addr,), name="VECTOR.quant_p")
                if p.msd_steps:                          # P split into int8 pieces like the query
                    for _ in range(p.msd_steps):
                        b.vector("unary", F32, e, addrs=(s_addr,), name="VECTOR.msd_scale_p")
                        b.vector("unary", F32, e, addrs=(s_addr,), name="VECTOR.msd_cast_p")
                        b.vector("binary", F32, e, addrs=(s_addr,), name="VECTOR.msd_residual_p")
                else:
                    b.vector("unary", F32, e, addrs=(s_addr,), name=f"VECTOR.cast_p_{pv.name}")
            b.set_flag(V, MTE3, ev + sb)
            b.wait_flag(V, MTE3, ev + sb)
            b.store_gm(s_addr, "workspace", int(ctx.slot(j, "P") + r0 * steps * pv.nbytes(n)),
                       r * steps, int(pv.nbytes(n)), name="MTE3.P_rows")
            b.set_flag(MTE3, MTE2, ev + sb)
        b.cross_set(MTE3, fl.P_READY[slot])
        if p.msd_steps and first:                    # prepare the next unit's query pieces one unit ahead
            k = live.index(ui) + 1
            if k < len(live):
                emit_qsplit(k)

    # ----- rescale-accumulate the partial O, and finish a unit -----
    ou = {"n": 0, "fin": 0}

    def emit_finish(u: Unit):
        r0, r = my_rows(u)
        if not r:
            return
        e = r * p.d_v
        if u.tiles:
            if p.sink:
                b.vector("exp", F32, r * per_row, addrs=(addr["row stats"],), name="VECTOR.sink")
            b.vector("div", F32, e, addrs=(addr["O accumulator"],), name="VECTOR.div_row_sum")
        else:
            b.vector("unary", F32, e, addrs=(addr["O accumulator"],), name="VECTOR.dup_zero")
        if p.quantize_out:
            b.vector("unary", F32, e, addrs=(addr["O accumulator"],), name="VECTOR.quant_scale")
            b.vector("unary", F32, e, addrs=(addr["O accumulator"],), name="VECTOR.quant_offset")
        if ou["fin"] >= 1:
            b.wait_flag(MTE3, V, ev + 2)
        ou["fin"] += 1
        b.vector("unary", F32, e, addrs=(addr["O out"],), name="VECTOR.cast_out")
        if p.stats:
            b.vector("unary", F32, r * per_row * len(p.stats), addrs=(addr["row stats"],), name="VECTOR.stats")
        b.set_flag(V, MTE3, ev + 2)
        b.wait_flag(V, MTE3, ev + 2)
        out_row_bytes = max(1, int(p.d_v * p.out_itemsize))
        for off, rows, stride in q_rows(p, u, p.out, r0, r):
            b.store_gm(addr["O out"], p.out.tensor, int(off), rows, out_row_bytes, int(stride), name="MTE3.O_rows")
        for st in p.stats:
            for off, rows, stride in q_rows(p, u, st, r0, r):
                b.store_gm(addr["row stats"], st.tensor, int(off), rows, int(st.row_bytes), int(stride),
                           name="MTE3.softmax_stats")
        b.set_flag(MTE3, V, ev + 2)

    def emit_ou(j: int):
        st = ctx.step(j)
        ui, u, first, last, slot = st.ui, st.u, st.first, st.last, st.slot
        r0, r = my_rows(u)
        b.cross_wait(MTE2, fl.O_READY[slot], "AIC")
        if r:
            if ou["n"] >= 1:
                b.wait_flag(V, MTE2, ev + 0)
            ou["n"] += 1
            b.load_gm(Buf.UB, addr["O partial"], "workspace",
                      int(ctx.slot(j, "O") + r0 * steps * p.d_v * F32_BYTES), r * steps,
                      int(p.d_v * F32_BYTES), name="MTE2.O_partial")
            b.set_flag(MTE2, V, ev + 2)
        if r:
            e = r * p.d_v
            b.wait_flag(MTE2, V, ev + 2)
            if p.msd_steps:
                b.vector("fma", F32, (steps - 1) * e, addrs=(addr["O partial"],), name="VECTOR.msd_combine_o")
                if p.antiquant_channel:
                    b.vector("binary", F32, e, addrs=(addr["O partial"],), name="VECTOR.antiquant_value_scale")
            if first:
                b.ub_copy(addr["O accumulator"], addr["O partial"], up(e * F32_BYTES, g.block), name="VECTOR.o_init")
            else:
                b.vector("binary", F32, e, addrs=(addr["O accumulator"],), name="VECTOR.o_rescale")
                b.vector("binary", F32, e, addrs=(addr["O accumulator"],), name="VECTOR.o_add")
            b.set_flag(V, MTE2, ev + 0)
        if last:
            emit_finish(u)
            finished.add(ui)
            for k in range(ui + 1, len(units)):     # units with nothing visible: zeros
                if units[k].tiles:
                    break
                emit_finish(units[k])
                finished.add(k)

    finished: set[int] = set()
    for k, u in enumerate(units):                   # leading units with no visible key
        if u.tiles:
            break
        emit_finish(u)
        finished.add(k)
    if ctx.tiles:
        if p.msd_steps:
            emit_qsplit(0)
        ctx.preload(emit_sm, emit_ou, b)             # the softmax runs as far ahead as the AIC's S
    for k, u in enumerate(units):
        if k not in finished:
            emit_finish(u)
    if not len(b.prog):
        b.scalar(1)
    return b.build()

