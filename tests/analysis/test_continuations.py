"""Greedy continuations: equal to a hand loop of argmax next tokens, deterministic, cancellable."""
from pathlib import Path

import pytest
import torch

from fwsvd_core.analysis.continuations import continuations, greedy_continuation, prompt_ids
from fwsvd_core.compression.ranks import uniform_ranks
from fwsvd_core.compression.session import CompressionSession
from fwsvd_core.errors import Cancelled, DataError
from fwsvd_core.estimation.fisher import estimate_fisher
from fwsvd_core.inputs.families import load_task_data
from fwsvd_core.inputs.families.causal_lm import windows
from fwsvd_core.inputs.tasks import get_task
from fwsvd_core.loading import load_model

LM = get_task("wikitext2")
PROMPT = "the movie was"


@pytest.fixture(scope="module")
def llama_dir(tmp_path_factory, minilm_dir) -> Path:
    """A tiny LLaMA (grouped-query attention) saved with the MiniLM tokenizer."""
    import transformers as tf

    torch.manual_seed(0)
    config = tf.LlamaConfig(vocab_size=30522, pad_token_id=0, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                            num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=64)
    folder = tmp_path_factory.mktemp("llama") / "llama"
    tf.AutoModelForCausalLM.from_config(config).save_pretrained(folder)
    tf.AutoTokenizer.from_pretrained(minilm_dir).save_pretrained(folder)
    return folder


def hand_loop(model, ids: list[int], steps: int, eos: int | None) -> list[int]:
    """The slow reference: the whole sequence through the model each step, its last position's argmax appended."""
    out = list(ids)
    with torch.no_grad():
        for _ in range(steps):
            nxt = int(model(input_ids=torch.tensor([out])).logits[0, -1].argmax())
            out.append(nxt)
            if nxt == eos:
                break
    return out[len(ids):]


def test_the_continuation_is_the_argmax_next_token_each_time(llama_dir):
    loaded = load_model(llama_dir, device="cpu")
    ids = prompt_ids(loaded.tokenizer, LM, PROMPT, loaded.model)
    assert ids == loaded.tokenizer(PROMPT, add_special_tokens=False)["input_ids"]  # no [CLS]/[SEP] in the text
    reference = hand_loop(loaded.model, ids, 12, loaded.model.generation_config.eos_token_id)
    text = greedy_continuation(loaded.model, loaded.tokenizer, LM, PROMPT, max_new_tokens=12)
    assert text and text == loaded.tokenizer.decode(reference, skip_special_tokens=True).strip()
    assert greedy_continuation(loaded.model, loaded.tokenizer, LM, PROMPT, max_new_tokens=12) == text  # deterministic


def test_progress_counts_tokens_and_cancel_stops(llama_dir):
    loaded = load_model(llama_dir, device="cpu")
    seen = []
    greedy_continuation(loaded.model, loaded.tokenizer, LM, PROMPT, 5, progress=lambda d, t: seen.append((d, t)))
    assert seen[-1] == (5, 5)
    with pytest.raises(Cancelled):
        greedy_continuation(loaded.model, loaded.tokenizer, LM, PROMPT, 5, cancel=lambda: True)
    with pytest.raises(DataError, match="prompt"):
        greedy_continuation(loaded.model, loaded.tokenizer, LM, "  ", 5)


def test_a_low_rank_model_writes_another_text(llama_dir, glue_dir):
    loaded = load_model(llama_dir, device="cpu")
    train = windows(loaded.tokenizer, load_task_data(LM, "train", "glue", glue_dir), 24).sample(8, seed=0)
    session = CompressionSession(loaded)
    session.set_fisher(estimate_fisher(loaded.model, loaded.tokenizer, train, 8, "per-sample"))
    compressed = session.compress("fwsvd-input", uniform_ranks(session.layers, 0.05))
    both = continuations(loaded.model, compressed, loaded.tokenizer, LM, PROMPT, 10)
    assert both.prompt == PROMPT and both.dense and both.compressed and both.dense != both.compressed
    assert both.dense == greedy_continuation(loaded.model, loaded.tokenizer, LM, PROMPT, 10)
