"""``ascend_sim.distributed``: collectives under torch.distributed's names, across simulated NPUs.

Call them inside ``sim.spmd(fn)`` (every rank runs ``fn(rank)`` at once). Each call

* meets the other ranks of its group (``ascend_sim.runtime.world``): all must make the same call,
  in the same order, or every rank gets a CollectiveMismatchError naming the ranks and calls;
* computes the real result (sum, max, min, prod; gathers, scatters, all-to-all, broadcast,
  send/recv) and writes it into the output tensor in place, as torch.distributed does; floats are
  reduced in float32 and rounded once to the tensor's dtype;
* queues the collective on the device's communication stream ("hccl"), after the work already
  queued on the current stream; the current stream waits for it unless ``async_op=True``, which
  returns a :class:`Work` whose ``wait()`` does that later -- so compute can overlap.

Each call is one :class:`ascend_sim.isa.CommStep` run by the runtime's collective service
(``ascend_sim.runtime.collective``), the same that runs the fused ops' communication. In the
engine the collective expands by its algorithm (``algorithm=`` per call: "ring", "mesh",
"halving_doubling", "hierarchical"; default: the HCCL-like rule) into transfers over the
topology's links that share bandwidth as fluid flows and read/write both ends' HBM.
``all_to_all_single`` with split sizes is an all_to_all_v: each pair's transfer carries exactly
its rows' bytes. A collective over a group of one rank moves nothing and queues no task.
"""
from __future__ import annotations

from typing import Any

import numpy as np

from . import dtypes as D
from .isa import CommStep
from .runtime import Event, ProcessGroup, collective, current_simulator
from .tensor import NPUTensor
from .torch_npu import _interop


class ReduceOp:
    SUM = "sum"
    MAX = "max"
    MIN = "min"
    PRODUCT = "prod"
    PROD = "prod"


_REDUCERS = {"sum": np.add, "max": np.maximum, "min": np.minimum, "prod": np.multiply}


class Work:
    """Handle of an async collective: ``wait()`` makes the current stream wait for it."""

    def __init__(self, done: Event):
        self._done = done

    def wait(self, timeout=None) -> bool:
        self._done.wait(current_simulator().current_stream)
        return True

    def is_completed(self) -> bool:
        return self._done.query()


# ----- the process world -----
def init_process_group(backend: str = "hccl", world_size: int | None = None, rank: int | None = None, **_kw) -> None:
    """Accepted for scripts written for torch: the simulator's world is its Simulator's ranks."""
    sim = current_simulator()
    if world_size is not None and world_size != sim.world_size:
        raise ValueError(f"init_process_group: world_size={world_size}, but the Simulator has {sim.world_size} ranks")


def is_initialized() -> bool:
    return True


def get_world_size(group=None) -> int:
    return _world().group(group).size


def get_rank(group=None) -> int:
    r = current_simulator().current_device.index
    g = _world().group(group)
    return g.rank_of(r) if group is not None else r


def new_group(ranks=None, backend: str | None = None, name: str | None = None) -> ProcessGroup:
    return _world().new_group(ranks, name)


def get_hccl_comm_name(group=None, rank: int | None = None) -> str:
    """The ``hcom`` string the fused torch_npu ops take for a group."""
    return _world().group(group).name


def _world():
    return current_simulator().world


# ----- plumbing -----
def _tensor(name: str, arg: str, x) -> NPUTensor:
    if isinstance(x, NPUTensor):
        return x
    if isinstance(x, np.ndarray) or _interop.is_torch_tensor(x):
        sim = current_simulator()
        return _interop.to_npu(x, sim.current_device, sim.is_meta)
    raise TypeError(f"{name}: argument '{arg}' must be a tensor, got {type(x).__name__}")


def _reduce(name: str, op) -> str:
    op = getattr(op, "name", op)
    key = str(op).lower().rsplit(".", 1)[-1]
    key = {"product": "prod", "avg": "avg"}.get(key, key)
    if key not in _REDUCERS:
        raise ValueError(f"{name}: argument 'op' must be one of SUM, MAX, MIN, PRODUCT, got {op!r}")
    return key


def _combine_reduce(arrays: list[np.ndarray], op: str, dtype: D.DType) -> np.ndarray:
    if dtype.is_float:
        acc = np.asarray(arrays[0], dtype=np.float32)
        for a in arrays[1:]:
            acc = _REDUCERS[op](acc, np.asarray(a, dtype=np.float32))
        return D.cast(acc, dtype)
    acc = np.asarray(arrays[0]).astype(np.int64) if dtype.kind != "bool" else np.asarray(arrays[0])
    for a in arrays[1:]:
        acc = _REDUCERS[op](acc, np.asarray(a).astype(acc.dtype))
    return acc.astype(dtype.np_dtype)


def _call(kind: str, name: str, group, desc: tuple, payload, compute, nbytes: int, *, async_op: bool,
          algorithm: str | None, root: int | None = None, send_bytes=None, inputs=(), outputs=(),
          meeting: str | None = None) -> Any:
    """Meet, compute, and queue the collective's task (named ``name``) on every rank's comm stream,
    through the runtime's collective service, as the fused ops do. ``meeting`` names the call the
    ranks must agree on when it is not ``name`` (send and recv meet as "send/recv")."""
    sim = current_simulator()
    step = CommStep(kind, int(nbytes), name, send_bytes=send_bytes, algorithm=algorithm, root=root)
    result, calls = collective.meet(sim, _world().group(group), meeting or name, desc, payload, compute, [step])
    done = collective.queue(sim, [step], calls, inputs=inputs, outputs=outputs, blocking=not async_op)
    return result, Work(done) if async_op else None


def _finish(t: NPUTensor, data) -> None:
    """Write a collective's result into its output tensor (in place, as torch.distributed does)."""
    if data is not None and t.data is not None:
        t.data[...] = np.asarray(data).reshape(t.shape)


# ----- collectives -----
def all_reduce(tensor, op=ReduceOp.SUM, group=None, async_op: bool = False, algorithm: str | None = None):
    name = "all_reduce"
    t = _tensor(name, "tensor", tensor)
    red = _reduce(name, op)
    res, work = _call("all_reduce", name, group, (t.shape, t.dtype.name, red), t.data,
                      lambda p: {r: _combine_reduce([p[k] for k in sorted(p)], red, t.dtype) for r in p},
                      t.nbytes, async_op=async_op, algorithm=algorithm, inputs=[t.meta], outputs=[t.meta])
    _finish(t, res)
    return work


def all_gather_into_tensor(output_tensor, input_tensor, group=None, async_op: bool = False,
                           algorithm: str | None = None):
    name = "all_gather_into_tensor"
    out, inp = _tensor(name, "output_tensor", output_tensor), _tensor(name, "input_tensor", input_tensor)
    n = get_world_size(group)
    if out.dtype is not inp.dtype:
        raise TypeError(f"{name}: output ({out.dtype.name}) and input ({inp.dtype.name}) dtypes differ")
    if out.numel != n * inp.numel or (out.shape[0] != n * inp.shape[0] if inp.shape and out.shape else False):
        raise ValueError(f"{name}: argument 'output_tensor' must hold {n} x the input along dim 0: "
                         f"input {inp.shape}, output {out.shape}")

    def compute(p):
        full = np.concatenate([np.asarray(p[k]).reshape(inp.shape if inp.shape else (1,)) for k in sorted(p)])
        return {r: full.reshape(out.shape) for r in p}

    res, work = _call("all_gather", name, group, (inp.shape, inp.dtype.name), inp.data, compute, out.nbytes,
                      async_op=async_op, algorithm=algorithm, inputs=[inp.meta], outputs=[out.meta])
    _finish(out, res)
    return work


def reduce_scatter_tensor(output, input, op=ReduceOp.SUM, group=None, async_op: bool = False,
                          algorithm: str | None = None):
    name = "reduce_scatter_tensor"
    out, inp = _tensor(name, "output", output), _tensor(name, "input", input)
    n = get_world_size(group)
    red = _reduce(name, op)
    if out.dtype is not inp.dtype:
        raise TypeError(f"{name}: output ({out.dtype.name}) and input ({inp.dtype.name}) dtypes differ")
    if inp.numel != n * out.numel:
        raise ValueError(f"{name}: argument 'input' must hold {n} x the output: input {inp.shape}, output {out.shape}")
    g = _world().group(group)

    def compute(p):
        total = _combine_reduce([p[k] for k in sorted(p)], red, inp.dtype).reshape(n, -1)
        return {r: total[g.rank_of(r)].reshape(out.shape) for r in p}

    res, work = _call("reduce_scatter", name, group, (inp.shape, inp.dtype.name, red), inp.data, compute,
                      inp.nbytes, async_op=async_op, algorithm=algorithm, inputs=[inp.meta], outputs=[out.meta])
    _finish(out, res)
    return work


def all_to_all_single(output, input, output_split_sizes=None, input_split_sizes=None, group=None,
                      async_op: bool = False, algorithm: str | None = None):
    name = "all_to_all_single"
    out, inp = _tensor(name, "output", output), _tensor(name, "input", input)
    g = _world().group(group)
    n = g.size
    rank = current_simulator().current_device.index
    if out.dtype is not inp.dtype:
        raise TypeError(f"{name}: output ({out.dtype.name}) and input ({inp.dtype.name}) dtypes differ")
    rows_in = inp.shape[0] if inp.shape else 1
    row = int(np.prod(inp.shape[1:], dtype=np.int64))      # elements per row (a rank may send no rows)
    ins = list(input_split_sizes) if input_split_sizes is not None else [rows_in // n] * n
    outs = list(output_split_sizes) if output_split_sizes is not None else [(out.shape[0] if out.shape else 1) // n] * n
    if len(ins) != n or len(outs) != n or sum(ins) != rows_in or sum(outs) != (out.shape[0] if out.shape else 1):
        raise ValueError(f"{name}: split sizes must have {n} entries summing to the tensors' first dims "
                         f"(input splits {ins} for {rows_in} rows, output splits {outs})")

    def compute(p):
        chunks = {r: np.split(np.asarray(p[r][0]).reshape(sum(p[r][1]), row), np.cumsum(p[r][1])[:-1]) for r in p}
        # each receiver gets its rows from every sender, in rank order (its own shape is applied by _finish)
        return {r: np.concatenate([chunks[s][g.rank_of(r)] for s in g.ranks]) for r in p}

    # every rank's splits make the byte matrix the schedule needs: exchange them first
    sizes = _world().meet(g, rank, (name + ".splits", n), ins, lambda p: ({r: [p[k] for k in g.ranks] for r in p},
                                                                          None))[0]
    item = inp.dtype.itemsize
    matrix = tuple(tuple(int(sizes[i][j] * row * item) for j in range(n)) for i in range(n))
    for j in range(n):
        if sizes[j][g.rank_of(rank)] != outs[j]:
            raise ValueError(f"{name}: rank {rank} expects {outs[j]} rows from rank {g.ranks[j]}, "
                             f"which sends {sizes[j][g.rank_of(rank)]}")
    res, work = _call("all_to_all_v", name, group, (inp.dtype.name, row), (inp.data, ins), compute,
                      sum(map(sum, matrix)), async_op=async_op, algorithm=algorithm, send_bytes=matrix,
                      inputs=[inp.meta], outputs=[out.meta])
    _finish(out, res)
    return work


def broadcast(tensor, src: int, group=None, async_op: bool = False, algorithm: str | None = None):
    name = "broadcast"
    t = _tensor(name, "tensor", tensor)
    g = _world().group(group)
    if src not in g.ranks:
        raise ValueError(f"{name}: argument 'src' ({src}) is not a rank of {g!r}")
    res, work = _call("broadcast", name, group, (t.shape, t.dtype.name, src), t.data,
                      lambda p: {r: p[src] for r in p}, t.nbytes, async_op=async_op, algorithm=algorithm, root=src,
                      inputs=[t.meta], outputs=[t.meta])
    _finish(t, res)
    return work


def send(tensor, dst: int, group=None, tag: int = 0):
    return _p2p("send", tensor, dst, tag)


def recv(tensor, src: int, group=None, tag: int = 0):
    return _p2p("recv", tensor, src, tag)


def _p2p(side: str, tensor, peer: int, tag: int):
    sim = current_simulator()
    t = _tensor(side, "tensor", tensor)
    rank = sim.current_device.index
    if not 0 <= peer < sim.world_size or peer == rank:
        raise ValueError(f"{side}: peer rank {peer} must be another rank in [0, {sim.world_size})")
    src, dst = (rank, peer) if side == "send" else (peer, rank)
    g = _world().new_group([src, dst], name=f"p2p_{src}_{dst}_{tag}")
    res, _ = _call("send", side, g, (t.shape, t.dtype.name), t.data if side == "send" else None,
                   lambda p: {src: None, dst: p[src]}, t.nbytes, async_op=False, algorithm=None, root=src,
                   inputs=[t.meta], outputs=[t.meta], meeting="send/recv")
    if side == "recv":
        _finish(t, res)
    return None


def barrier(group=None, async_op: bool = False):
    _, work = _call("barrier", "barrier", group, (), None, lambda p: {r: None for r in p}, 0, async_op=async_op,
                    algorithm=None)
    return work
