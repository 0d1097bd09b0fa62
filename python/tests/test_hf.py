"""redraft.hf on the shipped KJV target: speculative greedy decoding through one tree-masked
forward pass per step equals Hugging Face's own greedy generate(), token for token."""

import pytest

import redraft

PROMPTS = [
    "And God said unto Moses, ",
    "Blessed are the poor in spirit: ",
    "The LORD is my shepherd; ",
    "And it came to pass, when the king ",
    "In the beginning ",
    "Thou shalt not ",
    "And the children of Israel journeyed from the wilderness of Sin, and pitched in ",
    "Honour thy father and thy mother: that thy days may be long upon the land ",
]
NEW_TOKENS = 200


def encode(text):
    return list(text.encode())


@pytest.fixture(scope="module")
def hf_reference(kjv_model):
    from redraft.hf import hf_greedy_generate

    return [hf_greedy_generate(kjv_model, encode(p), NEW_TOKENS) for p in PROMPTS]


def test_greedy_batch_1_equals_hf_generate(kjv_model, kjv_head, hf_reference):
    from redraft.hf import HFTarget

    target = HFTarget(kjv_model)
    decoder = redraft.SpeculativeDecoder(target, kjv_head, redraft.DecodeOptions(beam_width=4, beam_length=5))
    steps = 0
    for prompt, reference in zip(PROMPTS, hf_reference):
        result = decoder.generate([encode(prompt)], max_new_tokens=NEW_TOKENS)
        assert result.tokens[0] == reference, prompt
        steps += result.requests[0].steps
    # The shipped head, unchanged, drafts tokens the target accepts (several per forward pass).
    assert len(PROMPTS) * (NEW_TOKENS - 1) / steps > 2.0


def test_greedy_batch_of_different_lengths_equals_hf_generate(kjv_model, kjv_head, hf_reference):
    from redraft.hf import HFTarget

    target = HFTarget(kjv_model)
    decoder = redraft.SpeculativeDecoder(
        target, kjv_head, redraft.DecodeOptions(beam_width=3, beam_length=4, masks="dense")
    )
    # Different prompt lengths and budgets, so requests finish at different steps, and slots that
    # are not the batch index.
    budgets = [NEW_TOKENS - 37 * (i % 3) for i in range(len(PROMPTS))]
    result = decoder.generate([encode(p) for p in PROMPTS], max_new_tokens=budgets,
                              slots=[7 - i for i in range(len(PROMPTS))])
    for tokens, reference, n in zip(result.tokens, hf_reference, budgets):
        assert tokens == reference[:n]
    assert max(s.requests for s in result.steps) == len(PROMPTS)
    assert result.tokens_per_step > 2.0


def test_greedy_with_packed_masks_only(kjv_model, kjv_head, hf_reference):
    from redraft.hf import HFTarget

    decoder = redraft.SpeculativeDecoder(
        HFTarget(kjv_model), kjv_head, redraft.DecodeOptions(beam_width=2, beam_length=6, masks="packed")
    )
    result = decoder.generate([encode(p) for p in PROMPTS[:3]], max_new_tokens=60)
    for tokens, reference in zip(result.tokens, hf_reference):
        assert tokens == reference[:60]


def test_hidden_state_is_the_post_norm_last_layer(kjv_model, torch):
    from redraft.hf import HFTarget
    import numpy as np

    ids = encode("The LORD is my shepherd; ")
    target = HFTarget(kjv_model)
    logits, hidden = target.prefill(np.array([0], dtype=np.int32), np.array([0, len(ids)], dtype=np.int32),
                                    np.array(ids, dtype=np.int32))
    with torch.no_grad():
        out = kjv_model(torch.tensor([ids]), output_hidden_states=True)
    assert torch.allclose(hidden[0], out.hidden_states[-1][0, -1], atol=1e-5)
    assert torch.allclose(logits[0], out.logits[0, -1], atol=1e-4)
    assert hidden.dtype == torch.float32 and hidden.is_contiguous()
