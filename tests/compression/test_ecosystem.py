"""Compressed models and exports in the tools people use next: quantization, peft, Trainer, ONNX, old exports."""
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file
from torch import nn

from fwsvd_core.compression.export import save_compressed
from fwsvd_core.compression.lowrank import LowRankLinear
from fwsvd_core.compression.ranks import uniform_ranks
from fwsvd_core.compression.session import CompressionSession
from fwsvd_core.inputs.layers import find_layers
from fwsvd_core.loading import load_model

TEXTS = ["a gripping, funny film", "dull and far too long", "the cast is wonderful"]


@pytest.fixture
def compressed(tiny_models):
    loaded = load_model(tiny_models["bert"], device="cpu")
    session = CompressionSession(loaded)
    return session.compress("svd", uniform_ranks(session.layers, 0.25)), loaded.tokenizer


@pytest.fixture
def exported(compressed, tmp_path) -> Path:
    model, tokenizer = compressed
    return save_compressed(model, tokenizer, tmp_path / "export")


def batch(tokenizer, texts=TEXTS) -> dict:
    return dict(tokenizer(texts, return_tensors="pt", padding=True))


def logits(model, tokenizer, texts=TEXTS) -> torch.Tensor:
    with torch.no_grad():
        return model(**batch(tokenizer, texts)).logits


def test_a_factorized_layer_is_two_linear_maps_with_the_same_numbers():
    torch.manual_seed(0)
    left, right, bias = torch.randn(12, 3), torch.randn(3, 8), torch.randn(12)
    layer = LowRankLinear.from_factors(left, right, bias)
    assert isinstance(layer.down, nn.Linear) and isinstance(layer.up, nn.Linear)
    assert layer.down.bias is None and torch.equal(layer.up.bias, bias)
    x = torch.randn(5, 8)
    torch.testing.assert_close(layer(x), x @ (left @ right).T + bias)  # the dense reconstruction
    assert layer.right is layer.down.weight and layer.left is layer.up.weight


def test_the_parts_of_a_factorized_layer_are_not_layers_of_the_model(compressed):
    model, _ = compressed  # every layer of the blocks factorized: 24 nn.Linear parts, no layer left to compress
    assert sum(isinstance(m, nn.Linear) and ".encoder." in n for n, m in model.named_modules()) == 24
    assert find_layers(model) == []


def test_dynamic_quantization_covers_every_factor(compressed):
    model, tokenizer = compressed
    linear_maps = sum(isinstance(m, nn.Linear) for m in model.modules())
    factors = sum(isinstance(m, LowRankLinear) for m in model.modules())
    assert factors == 12
    quantized = torch.ao.quantization.quantize_dynamic(model, {nn.Linear}, dtype=torch.qint8)
    int8 = torch.ao.nn.quantized.dynamic.Linear
    assert sum(isinstance(m, int8) for m in quantized.modules()) == linear_maps  # both factors of every layer too
    assert all(isinstance(m.down, int8) and isinstance(m.up, int8) for m in quantized.modules()
               if isinstance(m, LowRankLinear))
    reference = logits(model, tokenizer)
    assert torch.allclose(logits(quantized, tokenizer), reference, atol=0.05 * reference.abs().max() + 0.05)


def test_a_peft_lora_adapter_attaches_to_the_factors_and_trains(compressed):
    from peft import LoraConfig, get_peft_model

    model, tokenizer = compressed
    model = get_peft_model(model, LoraConfig(r=2, target_modules=r".*attention\.self\.query\.(down|up)",
                                             task_type="SEQ_CLS"))
    adapted = [n for n, m in model.named_modules() if n.endswith("lora_A")]
    assert len(adapted) == 4  # down and up of the query map in each of the two blocks
    trainable = [p for p in model.parameters() if p.requires_grad]
    before = [p.detach().clone() for p in trainable]
    optimizer = torch.optim.AdamW(trainable, lr=1e-2)
    loss = model(**batch(tokenizer), labels=torch.tensor([1, 0, 1])).loss
    loss.backward()
    optimizer.step()
    assert any(not torch.equal(a, b) for a, b in zip(before, trainable, strict=True))


def test_trainer_trains_an_export_loaded_by_plain_transformers_with_default_settings(exported, tmp_path):
    from datasets import Dataset
    from transformers import AutoModelForSequenceClassification, AutoTokenizer, Trainer, TrainingArguments

    model = AutoModelForSequenceClassification.from_pretrained(exported, trust_remote_code=True)
    tokenizer = AutoTokenizer.from_pretrained(exported)
    data = Dataset.from_dict({"sentence": TEXTS * 4, "label": [1, 0, 1] * 4})
    data = data.map(lambda row: tokenizer(row["sentence"], padding="max_length", max_length=16), batched=True)
    args = TrainingArguments(output_dir=str(tmp_path / "run"), max_steps=1, per_device_train_batch_size=4,
                             report_to=[], use_cpu=True)
    result = Trainer(model=model, args=args, train_dataset=data).train()
    assert result.global_step == 1 and torch.isfinite(torch.tensor(result.training_loss))


def test_onnx_export_with_named_dynamic_shapes_matches_pytorch_in_onnx_runtime(exported, tmp_path):
    import onnxruntime
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    model = AutoModelForSequenceClassification.from_pretrained(exported, trust_remote_code=True).eval()
    tokenizer = AutoTokenizer.from_pretrained(exported)
    inputs = batch(tokenizer)
    names = ("input_ids", "attention_mask", "token_type_ids")
    batch_dim, length = torch.export.Dim("batch"), torch.export.Dim("length")
    path = tmp_path / "model.onnx"
    torch.onnx.export(model, (), str(path), kwargs={n: inputs[n] for n in names},
                      input_names=list(names), output_names=["logits"], dynamo=True,
                      dynamic_shapes={n: {0: batch_dim, 1: length} for n in names})
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    other = batch(tokenizer, ["one more sentence, somewhat longer than the others were", "short"])
    for feed in (inputs, other):  # another batch size and length than the export's example
        got = session.run(["logits"], {n: feed[n].numpy() for n in names})[0]
        with torch.no_grad():
            expected = model(**feed).logits
        assert torch.allclose(torch.from_numpy(got), expected, atol=1e-4)


def test_an_export_written_before_the_factors_were_linear_modules_still_loads(exported, compressed):
    model, tokenizer = compressed
    weights = load_file(exported / "model.safetensors")
    old = {}
    for key, tensor in weights.items():  # the earlier names: NAME.right, NAME.left, NAME.bias
        key = key.replace(".down.weight", ".right").replace(".up.weight", ".left").replace(".up.bias", ".bias")
        old[key] = tensor
    assert old.keys() != weights.keys()
    save_file(old, exported / "model.safetensors")
    back = load_model(exported, device="cpu")
    assert torch.allclose(logits(back.model, back.tokenizer), logits(model, tokenizer), atol=1e-6)


@pytest.mark.parametrize("device_map", ["auto", {"bert.embeddings": "cpu", "bert.encoder.layer.0": "disk",
                                                 "bert.encoder.layer.1": "cpu", "bert.pooler": "cpu", "classifier": "cpu",
                                                 "dropout": "cpu"}])
def test_load_model_places_an_export_with_a_device_map(exported, compressed, device_map):
    model, tokenizer = compressed
    back = load_model(exported, device_map=device_map)
    assert any("device_map" in note for note in back.notes)
    assert torch.allclose(logits(back.model, back.tokenizer), logits(model, tokenizer), atol=1e-5)


def test_a_device_map_refuses_weights_that_do_not_match_the_table(exported):
    from fwsvd_core.errors import ModelLoadError

    weights = load_file(exported / "model.safetensors")
    del weights[next(k for k in weights if k.endswith(".up.weight"))]
    save_file(weights, exported / "model.safetensors")
    with pytest.raises(ModelLoadError, match="do not match the rank table"):
        load_model(exported, device_map="auto")
