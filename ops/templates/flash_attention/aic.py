"""The AIC program of a flash-attention block (tile layer: the copies, MMADs and FIXPIPE writes):
per kv tile, S = Q K^T to the workspace, then, ``workspace_slots - 1`` tiles later, P V."""
from __future__ import annotations

from ascend_sim.isa import Buf, Pipe, ProgramBuilder

from .sizing import F32_BYTES, KV_EVENT_BASE, up
from .units import BlockContext, Unit, kv_segments, q_rows

MTE1, MTE2, M, FIX = Pipe.MTE1, Pipe.MTE2, Pipe.CUBE, Pipe.FIXPIPE
# event ids (pipe pair -> ids); a pair's ids are separate from every other pair's
EV_Q = 0                 # MTE1->MTE2 / MTE2->MTE1: Q buffers 0, 1
EV_P = 2                 # P buffers 2, 3
EV_KV = KV_EVENT_BASE    # K/V ring 4..4+kv_buffers-1


def aic_program(chip, ctx: BlockContext, b: ProgramBuilder | None = None):
    """The block's AIC program (into ``b``: a builder, or an AccessRecorder for a block class member)."""
    p, t, sz, fl, units = ctx.p, ctx.t, ctx.sz, ctx.flags, ctx.units
    g = sz.grain
    b = b or ProgramBuilder(chip, "AIC")
    m0 = chip.cube.m0
    qk, pv = p.qk_dtype, p.p_dtype
    steps = ctx.steps
    d_qk_pad = up(p.d_qk, qk.c0)
    kv_pad = up(t.kv_tile, m0)
    rows_pad = up(t.q_tile * steps, m0)
    q_buf = sz.l1["Q"] // 2
    kv_buf = sz.l1["K/V"] // t.kv_buffers
    k_part = up(qk.itemsize * kv_pad * d_qk_pad, g.l1)
    p_buf = sz.l1["P"] // 2
    l1_q, l1_kv, l1_p = 0, sz.l1["Q"], sz.l1["Q"] + sz.l1["K/V"]
    l0a_half = chip.buffers.l0a // 2
    l0b_half = chip.buffers.l0b // 2
    c_s, c_o = 0, up(rows_pad * kv_pad * F32_BYTES, g.l0c)
    state = {"l0": 0, "unit_q": -1, "q_count": 0}

    def l0_slot():
        i = state["l0"]
        state["l0"] += 1
        buf = i % 2
        if i >= 2:
            b.wait_flag(M, MTE1, buf)
        return buf

    def load_kv(which: str, u: Unit, c0: int, c1: int, addr: int):
        parts = p.k_parts if which == "K" else (p.v,)
        prefix = p.k_prefix if which == "K" else ((p.v_prefix,) if p.v_prefix else ())
        a = addr
        for tensor, off, rows, stride, row_bytes in kv_segments(p, parts, prefix, u, c0, c1):
            b.load_gm(Buf.L1, a, tensor, int(off), rows, int(row_bytes), int(stride), nd2nz=True,
                      name=f"MTE2.{which}_tile")
            a += up(rows * row_bytes, g.block)

    def load_q(u: Unit, qb: int, k: int):
        a = l1_q + qb * q_buf
        if p.msd_steps:                              # the AIVs' int8 pieces of the query
            b.cross_wait(MTE2, fl.Q_READY[k % 2], "AIV")
            b.load_gm(Buf.L1, a, "workspace", int(ctx.query_pieces(k)), u.rows * steps,
                      int(qk.nbytes(p.d_qk)), nd2nz=True, name="MTE2.Q_pieces")
            return
        for part in p.q_parts:
            for off, rows, stride in q_rows(p, u, part, 0, u.rows):
                b.load_gm(Buf.L1, a, part.tensor, int(off), rows, int(part.row_bytes), int(stride), nd2nz=True,
                          name="MTE2.Q_tile")
                a += up(rows * part.row_bytes, g.block)

    def emit_s(j: int):
        st = ctx.step(j)
        u, c0, c1, first, last, slot, kvb = st.u, st.c0, st.c1, st.first, st.last, st.slot, st.kv_buf
        m = u.rows * steps
        b.scalar(2)
        if first:
            qb = state["q_count"] % 2
            if state["q_count"] >= 2:
                b.wait_flag(MTE1, MTE2, EV_Q + qb)
            load_q(u, qb, state["q_count"])
            b.set_flag(MTE2, MTE1, EV_Q + qb)
            b.wait_flag(MTE2, MTE1, EV_Q + qb)
            state["unit_q"] = qb
            state["q_count"] += 1
        qb = state["unit_q"]
        if j >= t.kv_buffers:
            b.wait_flag(MTE1, MTE2, EV_KV + kvb)
        load_kv("K", u, c0, c1, l1_kv + kvb * kv_buf)
        b.set_flag(MTE2, MTE1, EV_KV + kvb)
        b.wait_flag(MTE2, MTE1, EV_KV + kvb)
        n = c1 - c0
        for ci, k0 in enumerate(range(0, p.d_qk, sz.k_chunk)):
            kk = min(sz.k_chunk, p.d_qk - k0)
            buf = l0_slot()
            b.load_l1(Buf.L0A, buf * l0a_half, l1_q + qb * q_buf, qk.nbytes(up(m, m0) * up(kk, qk.c0)))
            b.load_l1(Buf.L0B, buf * l0b_half, l1_kv + kvb * kv_buf, qk.nbytes(up(kk, qk.c0) * up(n, m0)))
            b.set_flag(MTE1, M, buf)
            b.wait_flag(MTE1, M, buf)
            if ci == 0 and j >= 1:
                b.wait_flag(FIX, M, 0)               # L0C S written out
            b.mmad(m, n, kk, qk.name, a_addr=buf * l0a_half, b_addr=buf * l0b_half, c_addr=c_s)
            b.set_flag(M, MTE1, buf)
        if last:
            b.set_flag(MTE1, MTE2, EV_Q + qb)        # the unit's Q buffer may be refilled
        b.set_flag(M, FIX, 0)
        b.wait_flag(M, FIX, 0)
        b.fixpipe_to_gm(m, n, F32_BYTES, "workspace", int(ctx.slot(j, "S")), int(n * F32_BYTES),
                        c_addr=c_s, quant=p.qk_dequant, name="FIXP.S_to_workspace")
        b.set_flag(FIX, M, 0)
        b.cross_set(FIX, fl.S_READY[slot])

    def emit_pv(j: int):
        st = ctx.step(j)
        u, c0, c1, slot, kvb = st.u, st.c0, st.c1, st.slot, st.kv_buf
        m = u.rows * steps
        pb = j % 2
        n = c1 - c0
        b.scalar(2)
        b.cross_wait(MTE2, fl.P_READY[slot], "AIV")
        if j >= 2:
            b.wait_flag(MTE1, MTE2, EV_P + pb)
        b.load_gm(Buf.L1, l1_p + pb * p_buf, "workspace", int(ctx.slot(j, "P")), m,
                  int(pv.nbytes(n)), int(pv.nbytes(n)), nd2nz=True, name="MTE2.P_tile")
        v_addr = l1_kv + kvb * kv_buf + k_part
        load_kv("V", u, c0, c1, v_addr)
        b.set_flag(MTE2, MTE1, EV_P + pb)
        b.wait_flag(MTE2, MTE1, EV_P + pb)
        for ci, k0 in enumerate(range(0, n, sz.kv_chunk)):
            kk = min(sz.kv_chunk, n - k0)
            buf = l0_slot()
            b.load_l1(Buf.L0A, buf * l0a_half, l1_p + pb * p_buf, pv.nbytes(up(m, m0) * up(kk, pv.c0)))
            b.load_l1(Buf.L0B, buf * l0b_half, v_addr, pv.nbytes(up(kk, pv.c0) * up(p.d_v, m0)))
            b.set_flag(MTE1, M, buf)
            b.wait_flag(MTE1, M, buf)
            if ci == 0 and j >= 1:
                b.wait_flag(FIX, M, 1)               # L0C O written out
            b.mmad(m, p.d_v, kk, pv.name, a_addr=buf * l0a_half, b_addr=buf * l0b_half, c_addr=c_o)
            b.set_flag(M, MTE1, buf)
        b.set_flag(MTE1, MTE2, EV_P + pb)
        b.set_flag(MTE1, MTE2, EV_KV + kvb)
        b.set_flag(M, FIX, 1)
        b.wait_flag(M, FIX, 1)
        b.fixpipe_to_gm(m, p.d_v, F32_BYTES, "workspace", int(ctx.slot(j, "O")),
                        int(p.d_v * F32_BYTES), c_addr=c_o, quant=p.pv_dequant, name="FIXP.O_to_workspace")
        b.set_flag(FIX, M, 1)
        b.cross_set(FIX, fl.O_READY[slot])

    if ctx.tiles:
        ctx.preload(emit_s, emit_pv, b)              # S issued slots - 1 tiles before its P V
    else:
        b.scalar(1)
    return b.build()

