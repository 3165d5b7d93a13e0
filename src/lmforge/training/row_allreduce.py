"""A DDP communication hook that all-reduces only the word-embedding rows a step touched.

A data-parallel step all-reduces every gradient. A word embedding's gradient is zero outside
the rows of the tokens in the batch: minilm-l6's 30,522 x 384 embedding is half the model's
22.7M gradients, and one step of 32 short texts touches a few hundred of its rows. On CPU the
all-reduce runs over gloo on the same cores that compute, so those zeros cost as much as the
rest of the step's communication (bench/bench_scale.py). This hook all-reduces the other
gradients in place and, meanwhile, only the embedding rows some worker touched, then writes
those rows back: the gradient every worker ends with is the one a plain all-reduce gives (the rows left out
are zero on every worker), so the training does not change, only the bytes sent.

`torch.nn.Embedding(sparse=True)` would send sparse gradients too, but then AdamW (which the
Trainer uses) cannot take them. The hook is registered on CPU only: over NCCL between GPUs the
bytes are cheap and the extra index exchange would not pay (not measured: no GPU with Ray here).
"""

from __future__ import annotations

import os
from typing import Any

# `LMFORGE_ROW_ALLREDUCE=0` in the workers' environment keeps DDP's plain all-reduce (the
# benchmark's side-by-side arm; a way out should a model's embedding not be row-sparse).
SWITCH = "LMFORGE_ROW_ALLREDUCE"


def row_sparse_parameters(model: Any) -> list[Any]:
    """The parameters whose gradient is zero outside the rows of the batch's tokens: the input
    word embedding, when it trains and is not tied to the output layer (a tied embedding also
    takes the output softmax's gradient, which is dense)."""
    embeddings = model.get_input_embeddings() if hasattr(model, "get_input_embeddings") else None
    weight = getattr(embeddings, "weight", None)
    if weight is None or not weight.requires_grad or weight.dim() != 2:
        return []
    output = model.get_output_embeddings() if hasattr(model, "get_output_embeddings") else None
    if output is not None and getattr(output, "weight", None) is weight:
        return []
    return [weight]


def register_row_allreduce(ddp_model: Any) -> bool:
    """Register the hook on a DistributedDataParallel model on CPU when it has a row-sparse
    parameter; whether it was registered."""
    import torch.distributed as dist

    if os.environ.get(SWITCH, "1") == "0":
        return False
    sparse = row_sparse_parameters(ddp_model.module)
    if not sparse or sparse[0].device.type != "cpu" or dist.get_world_size() < 2:
        return False
    # DDP refuses a hook whose annotations are not its own types (this module's are strings).
    ddp_model.register_comm_hook(
        RowAllReduce({id(p) for p in sparse}), lambda state, bucket: _hook(state, bucket)
    )
    return True


class RowAllReduce:
    """The hook's state: which parameters (by id) are row-sparse, and the process group."""

    def __init__(self, sparse_ids: set[int], group: Any = None) -> None:
        self.sparse_ids = sparse_ids
        self.group = group


def _hook(state: RowAllReduce, bucket: Any) -> Any:
    import torch
    import torch.distributed as dist

    parameters = bucket.parameters()
    sparse = [i for i, p in enumerate(parameters) if id(p) in state.sparse_ids]
    world = dist.get_world_size(state.group)
    buffer = bucket.buffer()
    if not sparse:
        # DDP's own allreduce_hook: the mean over workers, asynchronous.
        buffer.div_(world)
        work = dist.all_reduce(buffer, group=state.group, async_op=True)
        return work.get_future().then(lambda future: future.value()[0])
    reduce_bucket(buffer, bucket.gradients(), set(sparse), world, state.group)
    future: torch.futures.Future[torch.Tensor] = torch.futures.Future()
    future.set_result(buffer)
    return future


def reduce_bucket(buffer: Any, gradients: list[Any], sparse: set[int], world: int, group: Any = None) -> None:
    """Replace the flat `buffer` (whose views are `gradients`) by its mean over the workers.
    The gradients at the indices in `sparse` send only their rows some worker touched; the rest
    of the buffer is all-reduced in place, while the touched rows are found."""
    import torch.distributed as dist

    base = buffer.storage_offset()
    spans = sorted(
        (g.storage_offset() - base, g.storage_offset() - base + g.numel(), i)
        for i, g in enumerate(gradients)
        if i in sparse
    )
    works, start = [], 0
    for begin, end, _ in [*spans, (buffer.numel(), buffer.numel(), -1)]:
        if begin > start:
            dense = buffer[start:begin].div_(world)
            works.append(dist.all_reduce(dense, group=group, async_op=True))
        start = end
    for _, _, i in spans:
        gradient = gradients[i]
        rows = _touched_rows(gradient, world, group)
        compact = gradient.index_select(0, rows).div_(world)
        dist.all_reduce(compact, group=group)
        # Rows outside `rows` are zero on every worker, so their mean (zero) is already there.
        gradient.index_copy_(0, rows, compact)
    for work in works:
        work.wait()


def _touched_rows(gradient: Any, world: int, group: Any) -> Any:
    """The sorted indices of the rows that are non-zero on any worker."""
    import torch
    import torch.distributed as dist

    # A row is touched when any of its values' bits is set: exact (a -0.0 or a NaN counts as
    # touched, which only sends it) and, read as integers, faster than comparing floats.
    bits = {8: torch.int64, 4: torch.int32, 2: torch.int16, 1: torch.int8}[gradient.element_size()]
    mine = gradient.view(bits).any(dim=1).nonzero().squeeze(1)
    counts = [torch.zeros(1, dtype=torch.int64) for _ in range(world)]
    dist.all_gather(counts, torch.tensor([mine.numel()], dtype=torch.int64), group=group)
    longest = int(max(int(c) for c in counts))
    padded = torch.full((longest,), -1, dtype=torch.int64)
    padded[: mine.numel()] = mine
    gathered = [torch.empty(longest, dtype=torch.int64) for _ in range(world)]
    dist.all_gather(gathered, padded, group=group)
    union = torch.unique(torch.cat(gathered))  # sorted
    return union[union >= 0]
