"""Tiny configs of the ViT family (32 px, patch 8: a 4x4 grid, width 32, 2 blocks) for the use tests: one per
prefix-token layout and pooling, each with its prefix count written out (not read from the config)."""
from conftest import tiny_config

# name -> (config changes, prefix tokens before the patches: class, distillation, registers)
FAMILY = {
    "deit-distilled": (dict(distillation_token=True, head="distilled"), 2),
    "dinov2-reg4": (dict(register_tokens=4, layer_scale=1e-5), 5),
    "dinov2-token-mean": (dict(pooling="token-mean", layer_scale=1e-5, mlp="swiglu"), 1),
    "deit3-no-prefix-pos": (dict(prefix_position_embeddings=False, layer_scale=1e-5), 1),
    "stored-grid-6x6": (dict(position_grid=(6, 6), position_embedding_resampling="bicubic-antialias"), 1),
    "distilled-reg4-no-prefix-pos": (dict(distillation_token=True, register_tokens=4, prefix_position_embeddings=False,
                                         head="distilled"), 6),
}


def family_config(name, **changes):
    return tiny_config(**{"num_layers": 2, **FAMILY[name][0], **changes})


def prefix_count(name):
    return FAMILY[name][1]


def randomised(model, seed=0):
    """``model`` with every all-zero weight (biases, tokens) drawn at random, so each one counts."""
    import numpy as np

    random = np.random.RandomState(seed)
    for weight in model.weights:
        if not np.asarray(weight.numpy()).any():
            weight.assign(random.normal(0, 0.1, weight.shape).astype("float32"))
    return model
