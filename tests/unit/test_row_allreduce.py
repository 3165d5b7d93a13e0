"""The row-sparse all-reduce: two gloo processes end with the gradients a plain DDP all-reduce
gives, having sent only the embedding rows some worker's batch touched."""

from __future__ import annotations

import socket
from pathlib import Path

from lmforge.training.row_allreduce import row_sparse_parameters
from tests.conftest import build_tiny_bert, build_tiny_llama

# Each rank's batch: different words, so the union of touched rows is more than either's.
BATCHES = [["refund invoice please", "parcel arrive today"], ["password locked again", "crash error"]]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _rank(rank: int, world: int, port: int, model_dir: str, out: str) -> None:
    import torch
    import torch.distributed as dist
    from torch.nn.parallel import DistributedDataParallel
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    from lmforge.training import row_allreduce

    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=world)
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    inputs = tokenizer(BATCHES[rank], padding=True, return_tensors="pt")
    inputs["labels"] = torch.tensor([0, 1])
    sent: list[int] = []
    plain_reduce = row_allreduce._touched_rows

    def recording(gradient: torch.Tensor, world: int, group: object) -> torch.Tensor:
        rows = plain_reduce(gradient, world, group)
        sent.append(int(rows.numel()))
        return rows

    row_allreduce._touched_rows = recording  # record how many rows went out
    grads = {}
    for hooked in (False, True):
        model = AutoModelForSequenceClassification.from_pretrained(model_dir)
        ddp = DistributedDataParallel(model)
        if hooked:
            assert row_allreduce.register_row_allreduce(ddp)
        ddp(**inputs).loss.backward()
        grads[hooked] = {name: p.grad.clone() for name, p in model.named_parameters()}
    for name, plain in grads[False].items():
        assert torch.equal(plain, grads[True][name]), name
    if rank == 0:
        ids = {int(i) for rank_batch in BATCHES for i in tokenizer(rank_batch)["input_ids"][0]}
        ids |= {int(i) for rank_batch in BATCHES for i in tokenizer(rank_batch)["input_ids"][1]}
        ids.discard(tokenizer.pad_token_id)
        Path(out).write_text(f"{sent[0]} {len(ids)} {model.config.vocab_size}")
    dist.destroy_process_group()


def test_two_workers_get_the_plain_all_reduce_from_the_touched_rows(tmp_path: Path) -> None:
    import torch.multiprocessing as mp

    model_dir = build_tiny_bert(tmp_path / "bert")
    out = tmp_path / "sent.txt"
    mp.spawn(_rank, args=(2, _free_port(), str(model_dir), str(out)), nprocs=2, join=True)
    sent, touched, vocabulary = (int(v) for v in out.read_text().split())
    assert sent == touched < vocabulary


def test_only_an_untied_trainable_word_embedding_is_row_sparse(tmp_path: Path) -> None:
    from transformers import AutoModelForCausalLM, AutoModelForSequenceClassification

    bert = AutoModelForSequenceClassification.from_pretrained(build_tiny_bert(tmp_path / "bert"))
    assert row_sparse_parameters(bert) == [bert.get_input_embeddings().weight]
    bert.get_input_embeddings().weight.requires_grad_(False)
    assert row_sparse_parameters(bert) == []
    # Tied to the output layer, the embedding also takes the softmax's dense gradient.
    llama = AutoModelForCausalLM.from_pretrained(build_tiny_llama(tmp_path / "llama"))
    assert llama.config.tie_word_embeddings
    assert row_sparse_parameters(llama) == []


def test_a_lora_model_has_no_row_sparse_parameter(tmp_path: Path) -> None:
    from transformers import AutoModelForSequenceClassification

    from lmforge.training.regularize import add_lora

    model = AutoModelForSequenceClassification.from_pretrained(build_tiny_bert(tmp_path / "bert"))
    assert row_sparse_parameters(add_lora(model, r=2, alpha=4, dropout=0.0, targets=None)) == []
