"""Fine-tuning: the loss goes down, resume is exact, the pipeline is reproducible, bad data is reported."""
import json

import numpy as np
import pytest

from conftest import tiny_config
from finetune_helpers import max_weight_difference, toy_arrays, write_folder

RUN = dict(batch_size=16, learning_rate=0.05, log_every=100, progress=False)


def test_training_reduces_loss_and_writes_run_json(tmp_path):
    from vit_zoo.train.finetuning import finetune

    images, labels = toy_arrays()
    result = finetune((images, labels), tiny_config(num_classes=4), val_data=toy_arrays(32, seed=1), steps=12,
                      output_dir=tmp_path, **{**RUN, "log_every": 1})
    losses = [h["loss"] for h in result["history"] if "loss" in h]
    assert np.mean(losses[-3:]) < 0.7 * np.mean(losses[:3]), losses
    assert result["metrics"]["val_top1"] > 0.5
    saved = json.loads((tmp_path / "run.json").read_text())
    assert saved["metrics"]["val_top5"] == 1.0  # 4 classes: top-5 is top-4
    assert saved["config"]["optimizer"] == "sgd" and saved["steps"] == 12
    assert (tmp_path / "model.keras").is_file() and list((tmp_path / "logs" / "train").iterdir())
    import keras
    reloaded = keras.models.load_model(tmp_path / "model.keras")
    np.testing.assert_allclose(reloaded.predict(images[:4], verbose=0),
                               result["model"].predict(images[:4], verbose=0), atol=1e-5)


def test_resume_after_interruption_continues_the_same_trajectory(tmp_path):
    """A run stopped after step 5 (last checkpoint at step 4) and resumed ends with the same weights as
    an uninterrupted run: everything is restored — weights, momenta, step, drop-path RNG, data position.
    Tolerance: max |Δw| ≤ 1e-6 (measured: 0)."""
    from vit_zoo.train.finetuning import finetune

    data = toy_arrays()
    config = tiny_config(num_classes=4, drop_path_rate=0.2)
    options = dict(steps=8, checkpoint_every=4, mixup=0.2, label_smoothing=0.1, **RUN)
    reference = finetune(data, config, output_dir=tmp_path / "ref", **options)

    def stop(step, _):
        if step == 5:
            raise KeyboardInterrupt("simulated kill")
    with pytest.raises(KeyboardInterrupt):
        finetune(data, config, output_dir=tmp_path / "run", on_step=stop, **options)
    assert sorted(p.name for p in (tmp_path / "run" / "checkpoints").iterdir()) == ["ckpt-00000004.npz"]
    resumed = finetune(data, config, output_dir=tmp_path / "run", **options)
    assert resumed["resumed_from_step"] == 4
    assert max_weight_difference(reference["model"], resumed["model"]) <= 1e-6
    ref_losses = [h["loss"] for h in reference["history"]]
    assert resumed["history"][-1]["loss"] == pytest.approx(ref_losses[-1], abs=1e-6)


def test_gradient_accumulation_matches_one_big_batch(tmp_path):
    """Two micro-batches of 8 = one batch of 16 (tolerance max |Δw| ≤ 1e-5)."""
    from vit_zoo.train.finetuning import finetune

    data = toy_arrays()
    one = finetune(data, tiny_config(num_classes=4), steps=3, output_dir=tmp_path / "a", **RUN)
    two = finetune(data, tiny_config(num_classes=4), steps=3, grad_accumulation=2, output_dir=tmp_path / "b",
                   **RUN)
    assert max_weight_difference(one["model"], two["model"]) <= 1e-5


def test_options_linear_probe_adamw_layer_decay_bfloat16(tmp_path):
    from vit_zoo.train.finetuning import finetune

    import keras

    import vit_zoo

    data = toy_arrays(64)
    result = finetune(data, tiny_config(num_classes=4), steps=2, freeze_backbone=True, optimizer="adamw",
                      weight_decay=0.05, layer_decay=0.75, precision="mixed_bfloat16", cutmix=1.0, mixup=0.5,
                      output_dir=tmp_path, **RUN)
    model = result["model"]
    assert model.get_layer("patch_embed").dtype_policy.name == "mixed_bfloat16"
    keras.utils.set_random_seed(0)  # as finetune(seed=0) does: the same initial weights
    start = vit_zoo.load(config=tiny_config(num_classes=4), dtype="mixed_bfloat16")
    np.testing.assert_array_equal(model.get_layer("block_00_mlp_fc1").get_weights()[0],
                                  start.get_layer("block_00_mlp_fc1").get_weights()[0])
    assert not np.array_equal(model.get_layer("head").get_weights()[0], start.get_layer("head").get_weights()[0])


def test_layer_decay_multipliers():
    from vit_zoo.train.schedules import layer_depth, WarmupCosine

    assert layer_depth("pos_embed/embeddings", 12) == 0
    assert layer_depth("block_03_attn/query_kernel", 12) == 4
    assert layer_depth("head/kernel", 12) == 13
    schedule = WarmupCosine(1.0, total_steps=110, warmup_steps=10)
    assert float(schedule(5)) == pytest.approx(0.5)
    assert float(schedule(10)) == pytest.approx(1.0)
    assert float(schedule(60)) == pytest.approx(0.5)
    assert float(schedule(110)) == pytest.approx(0.0, abs=1e-7)


def test_pipeline_is_a_function_of_the_step():
    """Batch k is the same whether the stream starts at 0 or at k, and spans epochs seamlessly."""
    from vit_zoo.train import data as finetune_data
    from vit_zoo.train import pipeline as input_pipeline

    source = finetune_data._array_source(*toy_arrays(40), "data")
    stream = lambda start: input_pipeline.training_stream(  # noqa: E731
        source, image_size=(16, 16), global_batch=16, start_step=start, seed=3)
    from_zero = [b for b, _ in stream(0).take(6)]
    from_four = [b for b, _ in stream(4).take(2)]
    np.testing.assert_array_equal(from_zero[4].numpy(), from_four[0].numpy())
    np.testing.assert_array_equal(from_zero[5].numpy(), from_four[1].numpy())
    assert from_zero[0].shape == (16, 16, 16, 3)


def test_image_folder_with_val_split_and_mixed_sizes(tmp_path):
    from vit_zoo.train.finetuning import finetune

    write_folder(tmp_path / "data" / "train", counts=(8, 8), size=(40, 36))
    write_folder(tmp_path / "data" / "val", counts=(3, 3), size=(50, 30), seed=1)
    from PIL import Image

    Image.new("RGB", (64, 20), (0, 0, 0)).save(tmp_path / "data" / "train" / "class_0" / "odd.png")
    result = finetune(tmp_path / "data", tiny_config(), steps=2, output_dir=tmp_path / "out", **{**RUN, "batch_size": 8})
    assert result["classes"] == ["class_0", "class_1"]
    assert result["metrics"]["val_examples"] == 6
    assert any("sizes vary" in note for note in result["data"]["train"]["notes"])


def test_bad_data_errors_and_warnings(tmp_path):
    from vit_zoo.train.data import resolve_data

    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="is empty; expected one sub-folder"):
        resolve_data(tmp_path / "empty")
    write_folder(tmp_path / "one", counts=(3,))
    with pytest.raises(ValueError, match="at least 2 classes"):
        resolve_data(tmp_path / "one")
    write_folder(tmp_path / "bad", counts=(3, 3))
    (tmp_path / "bad" / "class_1" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\nnot really")
    (tmp_path / "bad" / "class_1" / "notes.txt").write_text("hello")
    with pytest.warns(UserWarning, match=r"(?s)skipped 2 file\(s\).*broken.png.*notes.txt"):
        train, val, classes = resolve_data(tmp_path / "bad")
    assert train.size + val.size == 6
    for path in (tmp_path / "bad" / "class_0").iterdir():
        path.write_bytes(b"garbage")
    with pytest.raises(ValueError, match="(?s)class_0' has no usable images .*cannot decode"):
        resolve_data(tmp_path / "bad")
    with pytest.raises(ValueError, match="different sizes"):
        resolve_data(([np.zeros((8, 8, 3), np.uint8), np.zeros((9, 8, 3), np.uint8)], [0, 1]))
    with pytest.raises(ValueError, match="at least 2 classes"):
        resolve_data((np.zeros((4, 8, 8, 3), np.uint8), np.zeros(4, int)))
    with pytest.raises(FileNotFoundError, match="no such folder or TFRecord"):
        resolve_data(tmp_path / "missing.tfrecord")


def test_tfrecord_source_trains(tmp_path):
    import tensorflow as tf

    from vit_zoo.train.finetuning import finetune

    images, labels = toy_arrays(32, size=24)
    path = str(tmp_path / "train.tfrecord")
    with tf.io.TFRecordWriter(path) as writer:
        for image, label in zip(images, labels):
            feature = {"image/encoded": tf.train.Feature(bytes_list=tf.train.BytesList(
                value=[tf.io.encode_png(image).numpy()])),
                "image/class/label": tf.train.Feature(int64_list=tf.train.Int64List(value=[int(label)]))}
            writer.write(tf.train.Example(features=tf.train.Features(feature=feature)).SerializeToString())
    result = finetune(path, tiny_config(num_classes=4), val_data=path, steps=2, output_dir=tmp_path / "out", **RUN)
    assert result["classes"] == ["0", "1", "2", "3"] and result["metrics"]["val_examples"] == 32


def test_mixed_float16_uses_dynamic_loss_scaling(tmp_path):
    import keras

    from vit_zoo.train.finetuning import finetune

    result = finetune(toy_arrays(32), tiny_config(num_classes=4), steps=2, precision="mixed_float16",
                      output_dir=tmp_path, **RUN)
    assert result["model"].get_layer("block_00_mlp_fc1").dtype_policy.name == "mixed_float16"
    assert np.isfinite(result["metrics"]["train_loss"])
    with np.load(tmp_path / "checkpoints" / "ckpt-00000002.npz") as saved:  # the loss scale is checkpointed
        optimizer_arrays = [k for k in saved.files if k.startswith("optimizer/")]
    # momenta (one per weight), step counters, learning rate, and the loss scale with its counter
    assert len(optimizer_arrays) >= len(result["model"].trainable_variables) + 4
    assert isinstance(keras.models.load_model(tmp_path / "model.keras"), keras.Model)
