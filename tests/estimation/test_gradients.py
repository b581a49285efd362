import torch

from fwsvd_core.estimation.gradients import GradientBatch, gradient_batches
from fwsvd_core.inputs.layers import find_layers
from fwsvd_core.loading import load_model


def test_each_batch_marks_its_padding_and_padding_gets_no_gradient(tiny_models, sst2_small):
    loaded = load_model(tiny_models["bert"], device="cpu")
    data = sst2_small[0].sample(8, seed=7)
    layers = find_layers(loaded.model)
    seen = 0
    for batch in gradient_batches(loaded.model, loaded.tokenizer, data, layers, batch_size=4, max_length=128):
        seen += batch.n_good
        assert batch.attention is not None and batch.attention.shape[0] == batch.n_good
        assert bool((batch.attention == 0).any())  # sentences of different lengths: some padding
        for layer in layers:
            mask = batch.token_mask(layer.name)
            assert mask.shape == (batch.n_good, batch.inputs[layer.name].shape[1], 1)
            torch.testing.assert_close(mask[..., 0], batch.attention.float())
            # a padded position is attended by no token, so the loss does not reach its outputs
            assert float(batch.grads[layer.name][mask[..., 0] == 0].abs().max()) == 0.0
    assert seen == 8


def test_a_layer_called_twice_per_example_repeats_the_mask():
    x = torch.ones(2, 6, 3)
    batch = GradientBatch({"shared": x, "odd": torch.ones(2, 5, 3)}, {}, 2, torch.tensor([[1, 1, 0], [1, 0, 0]]))
    torch.testing.assert_close(batch.token_mask("shared")[..., 0],
                               torch.tensor([[1.0, 1, 0, 1, 1, 0], [1, 0, 0, 1, 0, 0]]))
    assert bool((batch.token_mask("odd") == 1).all())  # tokens that do not follow the text: all kept
