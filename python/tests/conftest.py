"""Shared fixtures: the repository root and the shipped KJV target / draft head."""

import os
import pathlib

import pytest

# One BLAS thread: the suite shares a small machine (OpenBLAS reads this when torch loads it).
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

ROOT = pathlib.Path(__file__).resolve().parents[2]
KJV_TARGET = ROOT / "data" / "models" / "kjv-target"
KJV_HEAD = ROOT / "data" / "draft_heads" / "kjv"


@pytest.fixture(scope="session")
def torch():
    torch = pytest.importorskip("torch")
    # One thread: the suite shares a small machine, and the numbers are not timed here.
    torch.set_num_threads(int(os.environ.get("REDRAFT_TORCH_THREADS", "1")))
    return torch


@pytest.fixture(scope="session")
def kjv_model(torch):
    transformers = pytest.importorskip("transformers")
    model = transformers.LlamaForCausalLM.from_pretrained(str(KJV_TARGET), torch_dtype=torch.float32)
    return model.eval()


@pytest.fixture(scope="session")
def kjv_head():
    import redraft

    return redraft.DraftHead.load(str(KJV_HEAD))
