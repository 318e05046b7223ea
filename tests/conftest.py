"""Shared test settings and fixtures: the Keras backend to test, quiet TensorFlow, a tiny ViT config.

Backends: ``pytest --backend tensorflow|jax|torch`` (default: ``KERAS_BACKEND``, else tensorflow) sets
``KERAS_BACKEND`` before any test module imports Keras (Keras reads it once, at its first import). Tests
of what only TensorFlow offers carry ``@pytest.mark.tensorflow_only("why")`` and are skipped on the other
backends with that reason; everything else runs on all three.

``--cross-backend`` keeps only the part of the suite that CI runs again on JAX and PyTorch
(``tests/run_all_backends.sh``), ``CROSS_BACKEND`` below, where each entry says why it is there.
"""
import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402
import pytest  # noqa: E402

pytest_plugins = ("xla_switch", "suite_time", "pytester")  # XLA off except in @pytest.mark.xla tests; the suite's
# time-saving settings; pytester runs small suites with this conftest (tests/test_backend_selection.py)
BACKENDS = ("tensorflow", "jax", "torch")

# What CI runs again on JAX and PyTorch (TensorFlow runs everything): node ids, or their start, and why.
# Chosen: what computes with the backend's tensors and variables -- converter parity for every format, load
# and save with the identity, preprocess/predict/features/attention/embed/evaluate on tiny models, a short
# fine-tune, the CLI's own process, export through TensorFlow. Left out: what touches no backend tensor
# (manifest, download, cache, labels, config, variants, argument errors), the same forward pass again at
# other sizes (full-size parity, parameter counts of every variant), and what needs TensorFlow.
CROSS_BACKEND = {
    "tests/model/test_model.py::test_gap_features_are_the_mean_of_patch_tokens": "pooling",
    "tests/model/test_model.py::test_preprocessing_equals_normalised_input": "the preprocessing layer",
    "tests/model/test_model.py::test_inference_is_deterministic_and_drop_path_only_acts_in_training":
        "dropout and drop-path draw from the backend's generator",
    "tests/model/test_model.py::test_keras_round_trip": ".keras save and load",
    "tests/model/test_model.py::test_mixed_precision_returns_float32_close_to_float32": "dtype policies",
    "tests/model/test_identity.py::test_weights_file_keeps_identity_and_outputs": ".weights.h5 and its identity",
    "tests/model/test_resample.py::test_matches_torch_interpolate": "resampling matrices built with keras.ops",
    "tests/converters/test_google_npz.py::test_without_qkv_bias_parity": "parity: vit_jax .npz",
    "tests/converters/test_big_vision.py": "parity: big_vision .npz",
    "tests/converters/test_huggingface_parity.py::test_classifier_safetensors[gelu-exact]": "parity: HF safetensors",
    "tests/converters/test_huggingface_parity.py::test_pytorch_bin": "parity: HF pytorch_model.bin",
    "tests/converters/test_huggingface_parity.py::test_tf_model_h5[classifier]": "parity: HF tf_model.h5",
    "tests/converters/test_timm.py::test_parity_with_timm[vit_tiny_patch16_224]": "parity: timm",
    "tests/converters/test_timm.py::test_half_precision_checkpoint_loads_into_float32": "half-precision sources",
    "tests/model/test_resample.py::test_bicubic_antialias_matches_torch_antialiased_bicubic":
        "antialiased resampling matrices built with keras.ops",
    "tests/model/test_spec.py::test_the_builder_creates_the_spec_variables_in_order": "the spec on each backend",
    # two of the six families: the distillation token's second head and registers with LayerScale (the TensorFlow
    # run holds every family; SwiGLU's packed weights are the Meta DINOv2 entry below)
    "tests/converters/test_timm_family.py::test_parity_with_dynamic_sizes[deit-distilled]":
        "parity: timm's ViT family",
    "tests/converters/test_timm_family.py::test_parity_with_dynamic_sizes[dinov2-reg4]": "parity: timm's ViT family",
    "tests/converters/test_huggingface_family_parity.py::test_dinov2_dynamic_size": "parity: HF Dinov2",
    "tests/converters/test_huggingface_family_parity.py::test_deit_at_the_stored_size": "parity: HF DeiT",
    "tests/converters/test_dinov2_meta.py::test_register_model_matches_the_register_reference[swiglufused]":
        "parity: Meta DINOv2 .pth",
    "tests/converters/test_apply.py": "the strict applier assigns all or nothing to the backend's variables",
    "tests/weights/test_load.py::test_weights_h5_round_trip": "load()",
    "tests/weights/test_load.py::test_weights_h5_features_and_new_head": "load() with a new head",
    "tests/weights/test_load.py::test_resampled_load_keeps_the_class_token_embedding": "load() at another size",
    "tests/weights/test_pretrained.py::test_hugging_face_repo_through_a_fake_hub":
        "hf-hub: from a fake Hub: download, convert, cache (pretrained= shares all but the download)",
    "tests/use/test_preprocess.py::test_inputs_of_every_kind_agree": "preprocess",
    "tests/use/test_predict.py": "predict and decode_predictions",
    "tests/use/test_labels.py::test_decode_predictions_of_a_models_own_output": "decode_predictions(model(x))",
    "tests/use/test_features.py::test_shapes": "feature_extractor",
    "tests/use/test_features.py::test_last_block_normed_equals_the_model_token_output": "feature_extractor",
    "tests/use/test_features.py::test_intermediate_block_equals_a_truncated_model": "feature_extractor",
    "tests/use/test_attention.py": "attention maps and rollout against a hand computation",
    "tests/use/test_embed.py::test_embeds_a_folder_and_warns_about_unreadable_files": "embed",
    "tests/use/test_features.py::test_parts_split_off_every_prefix_token": "feature parts of each prefix layout",
    "tests/use/test_attention.py::test_family_maps_and_class_token_mask_leave_out_every_prefix_token":
        "attention masks of each prefix layout",
    "tests/use/test_embed.py::test_family_embeddings_are_the_pooled_parts": "embed on DINOv2 and DeiT",
    "tests/model/test_build_record.py::test_keras_files_keep_the_record_and_files_without_one_read_it_from_the_graph":
        "the build record through .keras files",
    "tests/train/test_finetune_family.py::test_finetunes_the_head_layers_of_each_family[deit-distilled-False]":
        "fine-tuning both heads of a distilled DeiT",
    "tests/use/test_evaluation.py::test_class_folders_give_the_counts_of_an_independent_computation": "evaluate",
    "tests/train/test_finetune.py::test_starts_from_a_checkpoint_file_with_a_new_zero_head[npz]": "a fine-tune",
    "tests/train/test_finetune.py::test_optimizer_step_layer_decay_accumulation_and_clipping_by_hand":
        "the optimizers' arithmetic in the backend's ops",
    "tests/train/test_finetune.py::test_adamw_step_layer_decay_weight_decay_and_accumulation_by_hand":
        "the optimizers' arithmetic in the backend's ops",
    "tests/test_cli.py::test_predict_through_the_entry_point_prints_the_top_classes_and_no_start_up_noise":
        "the command line honours KERAS_BACKEND",
    "tests/test_export_route.py::test_the_artefact_computes_this_backends_model": "export from this backend",
    "tests/test_export_route.py::test_the_artefacts_are_tensorflows": "export from this backend",
    "tests/test_export_route.py::test_vit_zoo_export_takes_this_route_on_other_backends": "vit_zoo.export's dispatch",
}


def pytest_addoption(parser):
    parser.addoption("--backend", choices=BACKENDS, default=None,
                     help="Keras backend to test (sets KERAS_BACKEND; default: $KERAS_BACKEND, else tensorflow)")
    parser.addoption("--cross-backend", action="store_true",
                     help="run only the part of the suite CI repeats on every backend (CROSS_BACKEND in conftest)")


def pytest_configure(config):
    backend = config.getoption("--backend") or os.environ.get("KERAS_BACKEND") or "tensorflow"
    if backend not in BACKENDS:
        raise pytest.UsageError(f"KERAS_BACKEND={backend!r} is not one of {list(BACKENDS)}")
    loaded = sys.modules.get("keras")
    if loaded is not None and loaded.backend.backend() != backend:
        raise pytest.UsageError(f"Keras was imported with backend {loaded.backend.backend()!r} before the "
                                f"tests could set {backend!r}; start pytest in a fresh process")
    os.environ["KERAS_BACKEND"] = backend  # subprocesses started by tests inherit it too
    config.addinivalue_line("markers", "tensorflow_only(reason): needs TensorFlow in this process; skipped on "
                                       "the other backends with the reason")


def pytest_report_header(config):
    return f"keras backend: {os.environ['KERAS_BACKEND']}"


def pytest_ignore_collect(collection_path, config):
    """Under ``--cross-backend`` a test module CROSS_BACKEND does not name is not imported at all (what it
    imports -- OpenVINO, open_clip, ... -- would cost every worker seconds for tests deselected anyway)."""
    if not config.getoption("--cross-backend") or collection_path.suffix != ".py" \
            or not collection_path.name.startswith("test_"):
        return None
    module = collection_path.relative_to(config.rootpath).as_posix()
    return True if module not in {entry.partition("::")[0] for entry in CROSS_BACKEND} else None


def pytest_collection_modifyitems(config, items):
    backend = os.environ["KERAS_BACKEND"]
    if config.getoption("--cross-backend"):
        chosen = [item for item in items if _in_cross_backend_suite(item.nodeid)]
        config.hook.pytest_deselected(items=[item for item in items if item not in chosen])
        items[:] = chosen
    if backend == "tensorflow":
        return
    for item in items:
        marker = item.get_closest_marker("tensorflow_only")
        if marker is not None:
            reason = marker.args[0] if marker.args else marker.kwargs.get("reason", "TensorFlow only")
            item.add_marker(pytest.mark.skip(reason=f"needs KERAS_BACKEND=tensorflow: {reason}"))


def _in_cross_backend_suite(nodeid: str) -> bool:
    nodeid = nodeid if nodeid.startswith("tests/") else "tests/" + nodeid
    return any(nodeid == key or nodeid.startswith(key + "::") or nodeid.startswith(key + "[")
               for key in CROSS_BACKEND)


def tiny_config(**changes):
    """A 3-block ViT on 32x32 images: builds and runs in well under a second."""
    from vit_zoo import ViTConfig

    fields = dict(image_size=32, patch_size=8, hidden_size=32, mlp_size=64, num_heads=4, num_layers=3,
                  num_classes=10)
    fields.update(changes)
    return ViTConfig(**fields)


@pytest.fixture
def rng():
    return np.random.default_rng(0)


def to_numpy(outputs):
    """A model's outputs (a tensor of any backend, or a structure of them) as NumPy arrays. On PyTorch
    ``model(x)`` returns a tensor that tracks gradients, which ``np.asarray`` refuses; Keras' own
    conversion detaches it."""
    import keras

    return keras.tree.map_structure(keras.ops.convert_to_numpy, outputs)


def random_images(rng, batch, height, width=None):
    """(B, H, W, 3) float32 RGB in [0, 255]."""
    return rng.uniform(0, 255, (batch, height, width or height, 3)).astype("float32")


def load_converted(path, **options):
    """A checkpoint through the loader (detect, config, build, strict apply), with inputs already
    normalised (no preprocessing layer): returns (model, the checkpoint's config)."""
    from vit_zoo.weights.convert import load_checkpoint

    model, source, _ = load_checkpoint(path, include_preprocessing=False, **options)
    return model, source


def write_photos(root, count: int, subfolder_of=lambda index: "a"):
    """``count`` random RGB PNGs ``root/<subfolder>/img{index}.png`` of (20 + index) x 30 px (every one of
    another size, so resizing is exercised); returns ``root``."""
    import numpy as np
    from PIL import Image

    random = np.random.RandomState(0)
    for index in range(count):
        target = root / subfolder_of(index) / f"img{index}.png"
        target.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(random.randint(0, 256, (20 + index, 30, 3), dtype=np.uint8)).save(target)
    return root
