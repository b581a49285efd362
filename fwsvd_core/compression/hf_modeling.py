"""Loading a compressed export of FWSVD Studio with plain transformers, without FWSVD Studio installed.

This file is copied beside an export's weights as `fwsvd_modeling.py` and named in its config's `auto_map`, so
that `AutoModelForSequenceClassification.from_pretrained(folder, trust_remote_code=True)` (or the auto class of the
model's task: token classification) loads the export.
It needs only torch and transformers: the dense architecture is built from the config, and each layer listed in
the rank table (`fwsvd_compression`) is replaced by a two-factor layer, or a dense one, of its stored shape
before the weights are read. The parameter names are those of the dense architecture.
"""
from __future__ import annotations

import torch
import transformers
from torch import nn
from transformers import CONFIG_MAPPING, PretrainedConfig, PreTrainedModel

_NOT_BASE_KEYS = ("model_type", "auto_map", "architectures", "transformers_version", "fwsvd_base_model_type",
                  "fwsvd_base_architectures")


class FwsvdLowRankLinear(nn.Module):
    """y = up(down(x)): `down` an nn.Linear in -> rank without bias, `up` an nn.Linear rank -> out with the bias."""

    def __init__(self, in_features: int, out_features: int, rank: int, bias: bool = True):
        super().__init__()
        self.in_features, self.out_features, self.rank = in_features, out_features, rank
        self.down = nn.Linear(in_features, rank, bias=False)
        self.up = nn.Linear(rank, out_features, bias=bias)

    @property
    def bias(self):
        return self.up.bias

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.up(self.down(x))


class FwsvdCompressedConfig(PretrainedConfig):
    """The dense model's config, plus its model type and the rank table."""

    model_type = "fwsvd_compressed"

    def base_config(self) -> PretrainedConfig:
        values = {k: v for k, v in self.to_dict().items() if k not in _NOT_BASE_KEYS}
        return CONFIG_MAPPING[self.fwsvd_base_model_type].from_dict(values)


class FwsvdCompressedModel(PreTrainedModel):
    """The dense architecture with its compressed layers in place; forward is the dense model's. One subclass per
    kind of task, naming the auto class the dense architecture is built with."""

    config_class = FwsvdCompressedConfig
    base_model_prefix = ""
    inner_auto_class = "AutoModelForSequenceClassification"

    def __init__(self, config: FwsvdCompressedConfig):
        super().__init__(config)
        inner = getattr(transformers, self.inner_auto_class).from_config(config.base_config())
        for name, row in config.fwsvd_compression["layers"].items():
            if row["form"] == "original":
                continue
            old = inner.get_submodule(name)
            bias = getattr(old, "bias", None) is not None
            if row["form"] == "lowrank":
                new: nn.Module = FwsvdLowRankLinear(row["in"], row["out"], row["rank"], bias)
            else:
                new = nn.Linear(row["in"], row["out"], bias=bias)
            parent, _, child = name.rpartition(".")
            setattr(inner.get_submodule(parent) if parent else inner, child, new)
        for name, child in inner.named_children():  # the dense model's parameter names, without a prefix
            self.add_module(name, child)
        self.__dict__["_inner"] = inner  # not registered: its children already are
        self._tied_weights_keys = getattr(inner, "_tied_weights_keys", None) or {}  # the same names: no prefix
        self.post_init()

    def _init_weights(self, module: nn.Module) -> None:
        """Every weight comes from the export."""

    def forward(self, input_ids=None, attention_mask=None, token_type_ids=None, position_ids=None, inputs_embeds=None,
                labels=None, **kwargs):
        """The dense model's forward. Its inputs are named as in transformers' sequence classifiers, so that tools
        reading the signature (Trainer's column filter, torch.export's named dynamic shapes) find them; only those
        given are passed on (DistilBERT, for one, takes no token_type_ids)."""
        named = {"input_ids": input_ids, "attention_mask": attention_mask, "token_type_ids": token_type_ids,
                 "position_ids": position_ids, "inputs_embeds": inputs_embeds, "labels": labels}
        return self.__dict__["_inner"](**{k: v for k, v in named.items() if v is not None}, **kwargs)

    @classmethod
    def from_pretrained(cls, *args, **kwargs):
        """transformers' loading, refusing weights that do not match the rank table: a layer left at its random
        initial values would give wrong outputs without a word."""
        want_info = kwargs.pop("output_loading_info", False)
        model, info = super().from_pretrained(*args, output_loading_info=True, **kwargs)
        wrong = {what: sorted(map(str, info.get(what) or ())) for what in ("missing_keys", "unexpected_keys",
                                                                          "mismatched_keys")}
        named = dict(model.named_parameters(remove_duplicate=False))
        shared = {name for name, p in named.items() if sum(q is p for q in named.values()) > 1}
        wrong["missing_keys"] = [k for k in wrong["missing_keys"] if k not in shared]  # stored once, under another name
        if any(wrong.values()):
            shown = "; ".join(f"{what.replace('_', ' ')}: {', '.join(keys[:3])}" for what, keys in wrong.items() if keys)
            raise ValueError(f"The weights of this FWSVD Studio export do not match its rank table ({shown}). The "
                             "folder was edited or mixed from two exports: export the model again.")
        return (model, info) if want_info else model


class FwsvdCompressedForSequenceClassification(FwsvdCompressedModel):
    inner_auto_class = "AutoModelForSequenceClassification"


class FwsvdCompressedForTokenClassification(FwsvdCompressedModel):
    inner_auto_class = "AutoModelForTokenClassification"


class FwsvdCompressedForCausalLM(FwsvdCompressedModel, transformers.GenerationMixin):
    """A causal language model: `generate()` is the dense architecture's own, run on the same (compressed) modules,
    so its cache and its config's names (GPT-2's n_layer, ...) are the ones it expects."""

    inner_auto_class = "AutoModelForCausalLM"

    def forward(self, input_ids=None, attention_mask=None, position_ids=None, past_key_values=None, inputs_embeds=None,
                labels=None, **kwargs):
        named = {"input_ids": input_ids, "attention_mask": attention_mask, "position_ids": position_ids,
                 "past_key_values": past_key_values, "inputs_embeds": inputs_embeds, "labels": labels}
        return self.__dict__["_inner"](**{k: v for k, v in named.items() if v is not None}, **kwargs)

    def generate(self, *args, **kwargs):
        return self.__dict__["_inner"].generate(*args, **kwargs)

    def prepare_inputs_for_generation(self, *args, **kwargs):
        return self.__dict__["_inner"].prepare_inputs_for_generation(*args, **kwargs)

    def get_output_embeddings(self):
        return self.__dict__["_inner"].get_output_embeddings()
