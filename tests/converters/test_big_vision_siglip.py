"""big_vision SigLIP image towers (``params/img/...``, the MAP head, unrolled and scanned encoders) against
transformers' SiglipVisionModel: a tiny perturbed transformers tower is written out in big_vision's layout by
the inverse of transformers' own conversion rules (``convert_siglip_to_hf.py``: Flax kernels (in, out), attention
kernels (D, H, Dh) / (H, Dh, D), the MAP head's packed in_proj split into query, key, value), beside a text tower
and the loss's t and b; vit_zoo's conversion is held to transformers' outputs at max|a − b| / max|b| ≤ 1e-4."""
from __future__ import annotations

import warnings

import numpy as np
import pytest

import synth_hf_tower as synth
from reference_frameworks import require
from synth_checkpoints import relative_error, write_npz

torch = require("torch")
require("transformers")

import vit_zoo  # noqa: E402
from vit_zoo import converters  # noqa: E402
from vit_zoo.converters import big_vision  # noqa: E402

HEADS, WIDTH = synth.VISION["num_attention_heads"], synth.VISION["hidden_size"]


def _attention(prefix, q, k, v, out) -> dict:
    """Flax MultiHeadDotProductAttention tensors from (weight (out, in), bias) pairs of torch Linears."""
    found = {}
    for name, (weight, bias) in dict(query=q, key=k, value=v).items():
        found[f"{prefix}{name}/kernel"] = weight.T.reshape(WIDTH, HEADS, -1)
        found[f"{prefix}{name}/bias"] = bias.reshape(HEADS, -1)
    found[f"{prefix}out/kernel"] = out[0].T.reshape(HEADS, -1, WIDTH)
    found[f"{prefix}out/bias"] = out[1]
    return found


def big_vision_tensors(reference, root="params/img/") -> dict:
    """transformers' SiglipVisionModel state dict in big_vision's two-tower layout (unrolled encoder)."""
    sd = {k.removeprefix("vision_model."): v.numpy() for k, v in reference.state_dict().items()}
    pair = lambda name: (sd[name + ".weight"], sd[name + ".bias"])  # noqa: E731
    found = {"embedding/kernel": sd["embeddings.patch_embedding.weight"].transpose(2, 3, 1, 0),
             "embedding/bias": sd["embeddings.patch_embedding.bias"],
             "pos_embedding": sd["embeddings.position_embedding.weight"][None],
             "Transformer/encoder_norm/scale": sd["post_layernorm.weight"],
             "Transformer/encoder_norm/bias": sd["post_layernorm.bias"]}
    for i in range(synth.VISION["num_hidden_layers"]):
        layer, block = f"encoder.layers.{i}.", f"Transformer/encoderblock_{i}/"
        for ours, theirs in (("LayerNorm_0", "layer_norm1"), ("LayerNorm_1", "layer_norm2")):
            found[block + ours + "/scale"], found[block + ours + "/bias"] = pair(layer + theirs)
        for ours, theirs in (("Dense_0", "fc1"), ("Dense_1", "fc2")):
            weight, bias = pair(layer + "mlp." + theirs)
            found[f"{block}MlpBlock_0/{ours}/kernel"], found[f"{block}MlpBlock_0/{ours}/bias"] = weight.T, bias
        found.update(_attention(block + "MultiHeadDotProductAttention_0/",
                                *(pair(layer + f"self_attn.{p}_proj") for p in ("q", "k", "v", "out"))))
    packed_w, packed_b = sd["head.attention.in_proj_weight"], sd["head.attention.in_proj_bias"]
    found.update(_attention("MAPHead_0/MultiHeadDotProductAttention_0/",
                            *zip(np.split(packed_w, 3), np.split(packed_b, 3)), pair("head.attention.out_proj")))
    found["MAPHead_0/probe"] = sd["head.probe"]
    found["MAPHead_0/LayerNorm_0/scale"], found["MAPHead_0/LayerNorm_0/bias"] = pair("head.layernorm")
    for ours, theirs in (("Dense_0", "fc1"), ("Dense_1", "fc2")):
        weight, bias = pair("head.mlp." + theirs)
        found[f"MAPHead_0/MlpBlock_0/{ours}/kernel"], found[f"MAPHead_0/MlpBlock_0/{ours}/bias"] = weight.T, bias
    found = {root + key: value.astype("float32") for key, value in found.items()}
    text_root = root.replace("img/", "txt/")
    found.update({text_root + "Embed_0/embedding": np.zeros((64, 32), "float32"),
                  text_root + "Encoder_0/encoder_norm/scale": np.ones(32, "float32"),
                  root.replace("img/", "t"): np.array([2.3], "float32"), root.replace("img/", "b"): np.array([-10.0], "float32")})
    return found


def scanned(tensors: dict, root="params/img/") -> dict:
    """The same tower saved with scan=True: one encoderblock whose tensors stack the blocks on axis 0."""
    blocks = {}
    found = {}
    for key, value in tensors.items():
        head, _, rest = key.partition(root + "Transformer/encoderblock_")
        if head == "" and rest:
            index, _, name = rest.partition("/")
            blocks.setdefault(name, {})[int(index)] = value
        else:
            found[key] = value
    for name, per_block in blocks.items():
        found[root + "Transformer/encoderblock/" + name] = np.stack([per_block[i] for i in sorted(per_block)])
    return found


@pytest.fixture(scope="module")
def reference():
    return synth.model("SiglipVisionModel", synth.siglip_vision_config(), seed=4)


def transformers_outputs(model, x):
    with torch.no_grad():
        out = model(pixel_values=torch.from_numpy(x.transpose(0, 3, 1, 2)))
    return {"embedding": out.pooler_output.numpy(), "tokens": out.last_hidden_state.numpy()}


def load(path, **options):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        model = vit_zoo.load(weights=path, include_preprocessing=False, **options)
    return model, [str(w.message) for w in caught if "set aside" in str(w.message)]


@pytest.mark.parametrize("layout", ["unrolled", "scanned", "released"])
def test_siglip_tower_matches_transformers(layout, reference, tmp_path):
    root = "img/" if layout == "released" else "params/img/"
    tensors = big_vision_tensors(reference, root)
    path = write_npz(tmp_path / "siglip.npz", scanned(tensors, root) if layout == "scanned" else tensors)
    with converters.open_checkpoint(path) as checkpoint:
        assert converters.detect_format(checkpoint) is big_vision
    model, set_aside = load(path)
    tokens, _ = load(path, include_top=False, pooling=None)
    config = model.identity.config
    assert (config.pooling, config.class_token, config.num_classes, config.gelu, config.num_layers) == (
        "map", False, 0, "tanh", 2)
    x = np.random.default_rng(2).normal(size=(2, 32, 32, 3)).astype("float32")
    expected = transformers_outputs(reference, x)
    errors = {"embedding": relative_error(np.asarray(model(x)), expected["embedding"]),
              "tokens": relative_error(np.asarray(tokens(x)), expected["tokens"])}
    print(f"\nbig_vision SigLIP {layout}: " + ", ".join(f"{k} {v:.2e}" for k, v in errors.items()))
    assert max(errors.values()) <= 1e-4, errors
    assert len(set_aside) == 1 and "4 tensors of the text tower of a SigLIP" in set_aside[0]


def test_a_map_classifier_applies_its_head_to_the_map_output(reference, tmp_path):
    """A classic big_vision ViT with pool_type 'map' and a head (no img/ root): logits = head(MAP output)."""
    tensors = {k.removeprefix("params/img/"): v for k, v in big_vision_tensors(reference).items()
               if k.startswith("params/img/")}
    rng = np.random.default_rng(5)
    kernel, bias = rng.normal(size=(WIDTH, 7)).astype("float32"), rng.normal(size=7).astype("float32")
    tensors.update({"head/kernel": kernel, "head/bias": bias})
    model, _ = load(write_npz(tmp_path / "map.npz", tensors))
    assert model.identity.config.num_classes == 7
    x = np.random.default_rng(3).normal(size=(2, 32, 32, 3)).astype("float32")
    expected = transformers_outputs(reference, x)["embedding"] @ kernel + bias
    assert relative_error(np.asarray(model(x)), expected) <= 1e-4


@pytest.mark.parametrize("change, says", [
    (lambda t: t.update({"params/img/head/kernel": np.zeros((WIDTH, 8), "float32"),
                         "params/img/head/bias": np.zeros(8, "float32")}), "an image tower with a head"),
    (lambda t: t.update({"params/img/cls": np.zeros((1, 1, WIDTH), "float32")}), "MAP head over a class token"),
    (lambda t: t.update({"params/img/MAPHead_0/probe": np.zeros((1, 2, WIDTH), "float32")}),
     r"'params/img/MAPHead_0/probe' is \(1, 2, 64\); big_vision's MAPHead of this ViT has \(1, 1, 64\)"),
])
def test_towers_not_modelled_are_refused_by_name(change, says, reference, tmp_path):
    tensors = big_vision_tensors(reference)
    change(tensors)
    with pytest.raises((converters.UnsupportedLayoutError, converters.CheckpointError), match=says):
        vit_zoo.load(weights=write_npz(tmp_path / "x.npz", tensors), include_preprocessing=False)
