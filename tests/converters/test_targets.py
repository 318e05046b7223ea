"""The shared targets: every format's mapping assigns each variable of the model exactly once.

The targets generator (``converters.targets``) is held to the builder (the model's own variables, in
order); each format's rows, for configs with and without a class token, fc_norm, pre-logits and qkv
biases, are held to the model's variables; a config a format cannot describe is a ConversionError that
names the slot.
"""
import collections

import pytest

import vit_zoo
from vit_zoo import converters
from vit_zoo.converters import big_vision, google_npz, huggingface, keras_weights, targets, timm

from conftest import tiny_config
from synth_checkpoints import big_vision_tensors, write_npz

CONFIGS = {
    "token": tiny_config(),
    "gap": tiny_config(class_token=False, pooling="gap"),
    "token-gap": tiny_config(pooling="gap"),  # class token kept, mean of the patches
    "fc-norm": tiny_config(pooling="avg-fcnorm"),
    "pre-logits": tiny_config(representation_size=16),
    "no-qkv-bias": tiny_config(qkv_bias=False),
}
# Which formats describe which configs (the others must refuse with the slot they lack).
FC_NORM = {"timm", "keras"}


def model_paths(config):
    return [variable.path for variable in vit_zoo.build(config, include_preprocessing=False).weights]


def tf_layout(config, checkpoint):
    return huggingface.mapping(config, _Keys(["vit/tf_vi_t_model/vit/embeddings/cls_token:0"]))


class _Keys:
    """Just enough of a Checkpoint for a layout that is read off its key names."""

    metadata = {"model_type": "vit"}  # the config.json a tf_model.h5 of a ViT sits beside

    def __init__(self, keys):
        self._keys = keys

    def keys(self):
        return self._keys

    def __contains__(self, key):
        return key in self._keys


MAPPINGS = {"google-npz": lambda config, _: google_npz.mapping(config),
            "big-vision-npz": lambda config, checkpoint: big_vision.mapping(config, checkpoint),
            "timm": lambda config, _: timm.mapping(config),
            "hf": lambda config, _: huggingface.mapping(config),
            "hf-tf_model.h5": tf_layout,
            "keras": lambda config, _: keras_weights.mapping(config)}


@pytest.mark.parametrize("name", list(CONFIGS))
def test_targets_are_the_model_variables_in_order(name):
    config = CONFIGS[name]
    assert [t.path for t in targets.model_targets(config)] == model_paths(config)


@pytest.mark.parametrize("name", list(CONFIGS))
def test_every_mapping_assigns_each_variable_once(name, tmp_path):
    config = CONFIGS[name]
    expected = sorted(model_paths(config))
    path = write_npz(tmp_path / "bv.npz", big_vision_tensors(config.replace(pooling="token")
                                                             if config.pooling == "avg-fcnorm" else config))
    with converters.open_checkpoint(path) as checkpoint:
        for fmt, mapping in MAPPINGS.items():
            if config.pooling == "avg-fcnorm" and fmt.split("-tf")[0] not in FC_NORM:
                with pytest.raises(converters.ConversionError, match="fc_norm.*pooling='avg-fcnorm'"):
                    mapping(config, checkpoint)
                continue
            rows = mapping(config, checkpoint)
            assigned = [r.target for r in rows]
            assert sorted(assigned) == expected, fmt
            assert not [t for t, n in collections.Counter(assigned).items() if n > 1], fmt
            assert all(len(r.sources) == 1 and "{" not in r.sources[0] for r in rows), fmt


def test_block_slots_name_every_block_variable():
    slots = [t.slot for t in targets.block_targets(tiny_config(), 2)]
    assert slots == ["norm1.scale", "norm1.bias", "attn.query.kernel", "attn.query.bias", "attn.key.kernel",
                     "attn.key.bias", "attn.value.kernel", "attn.value.bias", "attn.out.kernel", "attn.out.bias",
                     "norm2.scale", "norm2.bias", "mlp.fc1.kernel", "mlp.fc1.bias", "mlp.fc2.kernel", "mlp.fc2.bias"]
    assert {t.block for t in targets.block_targets(tiny_config(), 2)} == {2}
    assert set(targets.SLOT_KINDS) >= {t.slot for t in targets.model_targets(CONFIGS["pre-logits"])}
