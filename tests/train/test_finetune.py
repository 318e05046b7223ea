"""Fine-tuning (in process, on the backend under test): the loss goes down, resume is exact, accumulation is one
big batch, the model carries its class names and preprocessing, any checkpoint can be the start, bad data
is reported."""
import json

import numpy as np
import pytest

from conftest import tiny_config
from finetune_helpers import max_weight_difference, toy_arrays, write_folder, write_tfrecord

# XLA off (it compiles each train step for seconds); test_trains_with_xla_by_default checks the default.
RUN = dict(batch_size=16, learning_rate=0.05, log_every=100, progress=False, jit_compile=False)
NAMES = ("dark", "dim", "light", "bright")


def test_training_reduces_loss_names_the_classes_and_writes_run_json(tmp_path):
    import keras

    from vit_zoo.model.identity import Preprocessing
    from vit_zoo.train.finetuning import finetune

    images, labels = toy_arrays()
    # 20 steps: each backend draws its own random initial weights; all three reach val top-1 >= 0.75 by then
    result = finetune((images, labels), tiny_config(num_classes=4), val_data=toy_arrays(32, seed=1), steps=20,
                      class_names=NAMES, eval_every=10, output_dir=tmp_path,
                      **{**RUN, "log_every": 1, "jit_compile": "auto"})
    # XLA is off in tests on TensorFlow (tests/xla_switch.py); elsewhere Keras' own "auto": XLA on JAX, eager on
    # PyTorch. vit_zoo's TensorFlow default (XLA) is held in tests/model/test_fast_path.py
    assert result["model"].jit_compile is (keras.backend.backend() == "jax")
    losses = [h["loss"] for h in result["history"] if "loss" in h]
    assert len(losses) == 20 and np.mean(losses[-3:]) < 0.7 * np.mean(losses[:3]), losses
    assert result["metrics"]["val_top1"] > 0.5
    assert [h["step"] for h in result["history"] if "val_top1" in h] == [10, 20]
    saved = json.loads((tmp_path / "run.json").read_text())  # (top-5 of 6 classes: the demo test below)
    assert saved["config"]["optimizer"] == "sgd" and saved["steps"] == 20 and saved["classes"] == list(NAMES)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["checkpoints", "logs", "model.keras", "run.json"]
    assert list((tmp_path / "logs" / "train").iterdir()) and list((tmp_path / "logs" / "val").iterdir())
    reloaded = keras.models.load_model(tmp_path / "model.keras")
    np.testing.assert_allclose(reloaded.predict(images[:4], verbose=0),
                               result["model"].predict(images[:4], verbose=0), atol=1e-5)
    identity = reloaded.identity
    assert identity.labels == NAMES and identity.preprocessing == Preprocessing()  # from scratch: "google"
    assert identity.provenance.format == "keras" and identity.provenance.finetuned_from["format"] == "built"
    assert identity.config == tiny_config(num_classes=4) and saved["identity"] == identity.to_dict()


# Run in a fresh process: load the fine-tuned model.keras, evaluate and fit on integer and one-hot labels,
# then run the README's "reload and keep training" block (a new optimizer, the reloaded loss).
KEEP_TRAINING = """
import json, sys
import keras, numpy as np
import vit_zoo  # registers vit_zoo's classes: the model, its optimizer, loss and metric
model = keras.models.load_model(sys.argv[1])
with np.load(sys.argv[2]) as data:
    images, labels = data["images"], data["labels"]
one_hot = np.eye(model.output_shape[-1], dtype="float32")[labels]
done = {"loss": [type(model.loss).__name__, model.loss.label_smoothing],
        "optimizer": [type(model.optimizer).__name__, int(model.optimizer.iterations)],
        "integers": model.evaluate(images, labels, batch_size=8, verbose=0, return_dict=True),
        "one_hot": model.evaluate(images, one_hot, batch_size=8, verbose=0, return_dict=True)}
done["fit_integers"] = model.fit(images, labels, batch_size=8, epochs=1, verbose=0).history
done["fit_one_hot"] = model.fit(images, one_hot, batch_size=8, epochs=1, verbose=0).history
done["iterations"] = int(model.optimizer.iterations)
before = keras.models.load_model(sys.argv[1]).get_weights()
"""


def readme_keep_training_block(model_path) -> str:
    """The README's "reload and keep training" code block, on ``model_path``."""
    from pathlib import Path

    readme = (Path(__file__).parents[2] / "README.md").read_text()
    block = readme[readme.index("Reload and keep training"):].split("```python\n", 1)[1].split("```", 1)[0]
    return block.replace('"vit-finetune/model.keras"', repr(str(model_path)))


def test_a_reloaded_model_keeps_training_on_integer_and_one_hot_labels(tmp_path):
    """``keras.models.load_model("run/model.keras")`` in a fresh process, then ``fit(x, integer_labels)`` and
    ``fit(x, one_hot_labels)``: the saved compile state (loss with its label smoothing, optimizer with its
    step count) reloads, and both label forms give the loss and accuracy of a NumPy computation from the
    model's logits. Then the README's block runs as written and trains the model."""
    import subprocess
    import sys

    from vit_zoo.train.finetuning import finetune

    images, labels = toy_arrays(16, classes=6, seed=2)
    result = finetune(toy_arrays(32, classes=6), tiny_config(num_classes=6, num_layers=1), steps=2,
                      label_smoothing=0.1, output_dir=tmp_path, **RUN)
    np.savez(tmp_path / "data.npz", images=images, labels=labels)
    script = KEEP_TRAINING + readme_keep_training_block(tmp_path / "model.keras") + """
after = keras.models.load_model(sys.argv[1]).get_weights()
done["readme_changed"] = max(float(np.max(np.abs(a - b))) for a, b in zip(before, after))
print(json.dumps(done))
"""
    done = subprocess.run([sys.executable, "-c", script, str(tmp_path / "model.keras"), str(tmp_path / "data.npz")],
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    got = json.loads(done.stdout.strip().splitlines()[-1])
    assert got["loss"] == ["ClassificationCrossentropy", 0.1]
    assert got["optimizer"] == ["ViTSGD", 2]  # the run's 2 steps: the optimizer state came back too
    logits = result["model"].predict(images, verbose=0).astype(np.float64)
    log_softmax = logits - logits.max(1, keepdims=True)
    log_softmax -= np.log(np.exp(log_softmax).sum(1, keepdims=True))
    smoothed = np.eye(6)[labels] * 0.9 + 0.1 / 6
    expected_loss = float(np.mean(-(smoothed * log_softmax).sum(1)))
    expected_accuracy = float(np.mean(logits.argmax(1) == labels))
    for form in ("integers", "one_hot"):
        assert got[form]["loss"] == pytest.approx(expected_loss, abs=1e-5), form
        assert got[form]["accuracy"] == pytest.approx(expected_accuracy), form
    assert np.isfinite(got["fit_integers"]["loss"][0]) and np.isfinite(got["fit_one_hot"]["loss"][0])
    assert got["iterations"] == 2 + 2 * 2  # 16 images in batches of 8, twice
    assert got["readme_changed"] > 1e-4  # the README's new optimizer trained and saved the model


def test_the_loss_and_accuracy_take_both_label_forms_and_refuse_other_shapes():
    """Against Keras' own one-hot loss: integer labels (B,) and (B, 1) and one-hot targets give the same
    value, with label smoothing; soft targets (mixup) are used as they are."""
    import keras

    from vit_zoo.train.losses import ClassificationAccuracy, ClassificationCrossentropy

    rng = np.random.default_rng(0)
    logits = rng.normal(size=(8, 6)).astype("float32")
    labels = np.array([0, 1, 2, 3, 4, 5, 0, 1])
    one_hot = np.eye(6, dtype="float32")[labels]
    soft = 0.7 * one_hot + 0.3 * one_hot[::-1]
    reference = keras.losses.CategoricalCrossentropy(from_logits=True, label_smoothing=0.2)
    ours = ClassificationCrossentropy(label_smoothing=0.2)
    for targets in (labels, labels[:, None], one_hot):
        assert float(ours(targets, logits)) == pytest.approx(float(reference(one_hot, logits)), abs=1e-6)
    assert float(ours(soft, logits)) == pytest.approx(float(reference(soft, logits)), abs=1e-6)
    expected = float(np.mean(logits.argmax(1) == labels))
    for targets in (labels, labels[:, None], one_hot):
        metric = ClassificationAccuracy()
        metric.update_state(targets, logits)
        assert float(metric.result()) == pytest.approx(expected)
    with pytest.raises(ValueError, match=r"labels of shape \(8, 6, 1\) do not fit logits of shape \(8, 6\): "
                                         r"give integer class indices shaped \(batch,\)"):
        ours(one_hot[..., None], logits)
    with pytest.raises(ValueError, match=r"label_smoothing must be in \[0, 1\)"):
        ClassificationCrossentropy(label_smoothing=1.0)
    restored = ClassificationCrossentropy.from_config(ours.get_config())
    assert restored.label_smoothing == 0.2 and float(restored(labels, logits)) == pytest.approx(float(ours(labels, logits)))


@pytest.mark.xla
def test_trains_with_xla_by_default(tmp_path):
    from vit_zoo.train.finetuning import finetune

    options = {key: value for key, value in RUN.items() if key != "jit_compile"}
    result = finetune(toy_arrays(16), tiny_config(num_classes=4, num_layers=1), steps=1, output_dir=tmp_path,
                      **options)
    assert result["model"].jit_compile is True  # vit_zoo's default on TensorFlow


def test_resume_after_interruption_continues_the_same_trajectory(tmp_path):
    """A run stopped after step 5 (last checkpoint at step 4) and resumed ends with the same weights as
    an uninterrupted run: everything is restored — weights, momenta, step, drop-path RNG, data position.
    Tolerance: max |Δw| ≤ 1e-6."""
    from vit_zoo.train.finetuning import finetune

    data = toy_arrays()
    config = tiny_config(num_classes=4, drop_path_rate=0.2)
    options = dict(steps=8, checkpoint_every=4, mixup=0.2, label_smoothing=0.1, **{**RUN, "log_every": 1})
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
    np.testing.assert_allclose([h["loss"] for h in resumed["history"]],
                               [h["loss"] for h in reference["history"][4:]], atol=1e-6)


def test_resume_on_other_data_is_refused_and_a_moved_folder_still_matches(tmp_path):
    """The checkpoint records the training split's fingerprint: resuming on other images (or the same
    images with other labels) is an error that says so; the same image folder copied elsewhere resumes."""
    import shutil

    from vit_zoo.train.data import resolve_data
    from vit_zoo.train.finetuning import finetune
    from vit_zoo.train.state import data_fingerprint

    config = tiny_config(num_classes=4, num_layers=1)
    options = dict(steps=2, checkpoint_every=1, **RUN)
    finetune(toy_arrays(32), config, output_dir=tmp_path / "run", **{**options, "steps": 1})
    with pytest.raises(ValueError, match=r"checkpoint '.*ckpt-00000001.npz' was written by a run on other training "
                                         r"data: 32 examples \(arrays\) from .*, sha256 [0-9a-f]{12}; this run has 32 "
                                         r"examples \(arrays\) .*\(the examples, their order or their labels differ"):
        finetune(toy_arrays(32, seed=5), config, output_dir=tmp_path / "run", **options)
    images, labels = toy_arrays(32)
    with pytest.raises(ValueError, match="was written by a run on other training data"):
        finetune((images, (labels + 1) % 4), config, output_dir=tmp_path / "run", **options)
    assert finetune((images, labels), config, output_dir=tmp_path / "run", **options)["resumed_from_step"] == 1

    write_folder(tmp_path / "photos", counts=(4, 4))
    shutil.copytree(tmp_path / "photos", tmp_path / "elsewhere")
    fingerprint = lambda root: data_fingerprint(resolve_data(root, val_fraction=0.25).train)  # noqa: E731
    assert fingerprint(tmp_path / "photos")["sha256"] == fingerprint(tmp_path / "elsewhere")["sha256"]
    (tmp_path / "elsewhere" / "class_1" / "img_0.png").rename(tmp_path / "elsewhere" / "class_1" / "img_9.png")
    assert fingerprint(tmp_path / "photos")["sha256"] != fingerprint(tmp_path / "elsewhere")["sha256"]


def test_gradient_accumulation_matches_one_big_batch(tmp_path):
    """Two micro-batches of 8 = one batch of 16, with clipping at global norm 0.5 and warm-up (tolerance
    max |Δw| ≤ 1e-5)."""
    from vit_zoo.train.finetuning import finetune

    data = toy_arrays()
    options = dict(steps=3, warmup_steps=1, grad_clip_norm=0.5, **RUN)
    one = finetune(data, tiny_config(num_classes=4), output_dir=tmp_path / "a", **options)
    two = finetune(data, tiny_config(num_classes=4), grad_accumulation=2, output_dir=tmp_path / "b", **options)
    assert max_weight_difference(one["model"], two["model"]) <= 1e-5
    assert int(two["model"].optimizer.iterations) == 3  # optimizer steps, not micro-batches


def test_optimizer_step_layer_decay_accumulation_and_clipping_by_hand():
    """ViTSGD with 2 accumulated micro-batches, global-norm clipping and layer decay against the update
    written out in NumPy: w -= lr(step) * factor * momentum-SGD(clip(mean of the micro-batch gradients))."""
    import keras

    from vit_zoo.train.optimizers import make_optimizer, warmup_cosine

    block = keras.Variable(np.ones((3,), "float32"), name="block_00_attn_kernel")
    head = keras.Variable(np.zeros((2,), "float32"), name="head_kernel")
    schedule = warmup_cosine(0.1, total_steps=4, warmup_steps=1)
    optimizer = make_optimizer("sgd", schedule, clip_norm=1.0, accumulation=2, layer_decay=0.5)
    rng = np.random.default_rng(0)
    expected = {"block": np.ones(3), "head": np.zeros(2)}
    momentum = {"block": np.zeros(3), "head": np.zeros(2)}
    lr = [0.0, 0.1, 0.1 * 0.5 * (1 + np.cos(np.pi / 3))]  # warm-up from 0 to 0.1 in 1 step, cosine over 3
    for step in range(3):
        micro = [{"block": rng.normal(size=3) * 2, "head": rng.normal(size=2) * 2} for _ in range(2)]
        for grads in micro:
            optimizer.apply([keras.ops.convert_to_tensor(grads["block"], "float32"),
                             keras.ops.convert_to_tensor(grads["head"], "float32")], [block, head])
        mean = {k: (micro[0][k] + micro[1][k]) / 2 for k in expected}
        norm = np.sqrt(sum(np.sum(v ** 2) for v in mean.values()))
        for key, factor in (("block", 0.5), ("head", 1.0)):  # block_00 of 1 block: 0.5 ** (1 + 1 - 1)
            clipped = mean[key] * min(1.0, 1.0 / norm)
            momentum[key] = 0.9 * momentum[key] - lr[step] * factor * clipped
            expected[key] = expected[key] + momentum[key]
        np.testing.assert_allclose(keras.ops.convert_to_numpy(block), expected["block"], atol=1e-6)
        np.testing.assert_allclose(keras.ops.convert_to_numpy(head), expected["head"], atol=1e-6)
    assert int(optimizer.iterations) == 3
    assert [float(schedule(s)) for s in range(5)] == pytest.approx(
        [0.0, 0.1, 0.1 * 0.5 * (1 + np.cos(np.pi / 3)), 0.1 * 0.5 * (1 + np.cos(2 * np.pi / 3)), 0.0], abs=1e-7)


def test_adamw_step_layer_decay_weight_decay_and_accumulation_by_hand():
    """ViTAdamW with 2 accumulated micro-batches, clipping, weight decay and layer decay against AdamW written
    out in NumPy: w -= lr(step) * wd * w (base rate, not for biases), then Adam's bias-corrected step at
    lr(step) * factor on clip(mean of the micro-batch gradients)."""
    import keras

    from vit_zoo.train.optimizers import make_optimizer, warmup_cosine

    shapes = {"block_00_attn_kernel": (3,), "head_kernel": (2,), "head_bias": (2,)}
    factors = {"block_00_attn_kernel": 0.5, "head_kernel": 1.0, "head_bias": 1.0}  # 0.5 ** (1 + 1 - 1) for block_00
    rng = np.random.default_rng(0)
    start = {name: rng.normal(size=shape) for name, shape in shapes.items()}
    variables = [keras.Variable(start[name].astype("float32"), name=name) for name in shapes]
    schedule = warmup_cosine(0.01, total_steps=4, warmup_steps=1)
    optimizer = make_optimizer("adamw", schedule, weight_decay=0.1, clip_norm=1.0, accumulation=2, layer_decay=0.5)
    lr = [0.0, 0.01, 0.01 * 0.5 * (1 + np.cos(np.pi / 3))]
    expected, m, v = dict(start), {k: 0.0 for k in shapes}, {k: 0.0 for k in shapes}
    for step in range(3):
        micro = [{name: rng.normal(size=shape) * 2 for name, shape in shapes.items()} for _ in range(2)]
        for grads in micro:
            optimizer.apply([keras.ops.convert_to_tensor(grads[name], "float32") for name in shapes], variables)
        mean = {k: (micro[0][k] + micro[1][k]) / 2 for k in shapes}
        scale = min(1.0, 1.0 / np.sqrt(sum(np.sum(g ** 2) for g in mean.values())))
        t = step + 1
        for name in shapes:
            g = mean[name] * scale
            if not name.endswith("bias"):
                expected[name] = expected[name] - expected[name] * 0.1 * lr[step]
            m[name] = 0.9 * m[name] + 0.1 * g
            v[name] = 0.999 * v[name] + 0.001 * g ** 2
            alpha = lr[step] * factors[name] * np.sqrt(1 - 0.999 ** t) / (1 - 0.9 ** t)
            expected[name] = expected[name] - alpha * m[name] / (np.sqrt(v[name]) + 1e-7)
        for variable, name in zip(variables, shapes):
            np.testing.assert_allclose(keras.ops.convert_to_numpy(variable), expected[name], atol=1e-6, err_msg=name)
    assert int(optimizer.iterations) == 3
    assert not np.allclose(expected["block_00_attn_kernel"], start["block_00_attn_kernel"])


def test_accumulation_schedule_counts_optimizer_steps_and_survives_a_config_round_trip():
    """With accumulation k the schedule is read at ``iterations // k`` (``PerOptimizerStep``); an optimizer
    rebuilt from its config (as ``model.keras`` does), or built from a config written before that wrapper
    existed (a bare schedule), holds the wrapper once."""
    import keras

    from vit_zoo.train.optimizers import PerOptimizerStep, ViTSGD, make_optimizer, warmup_cosine

    schedule = warmup_cosine(0.1, total_steps=4, warmup_steps=1)
    optimizer = make_optimizer("sgd", schedule, accumulation=2)
    config = optimizer.get_config()
    restored = keras.optimizers.deserialize(keras.optimizers.serialize(optimizer))
    older = ViTSGD(learning_rate=schedule, gradient_accumulation_steps=2)
    for rebuilt in (restored, older):
        assert type(rebuilt).__name__ == "ViTSGD" and rebuilt.get_config()["learning_rate"] == config["learning_rate"]
    wrapped = keras.saving.deserialize_keras_object(config["learning_rate"])
    assert isinstance(wrapped, PerOptimizerStep) and not isinstance(wrapped.schedule, PerOptimizerStep)
    assert [float(wrapped(s)) for s in range(8)] == pytest.approx([float(schedule(s // 2)) for s in range(8)])


def test_layer_depths_and_multipliers():
    from vit_zoo.train.optimizers import layer_decay_multipliers, layer_depth

    assert layer_depth("pos_embed/embeddings", 12) == 0
    assert layer_depth("block_03_attn/query_kernel", 12) == 4
    assert layer_depth("head/kernel", 12) == 13
    assert layer_depth("norm_pre/gamma", 12) == 0  # CLIP's ln_pre sits before the blocks
    assert layer_depth("map_attn/probe", 12) == layer_depth("projection/kernel", 12) == 13
    paths = ["patch_embed/kernel", "block_00_mlp_fc1/kernel", "block_01_norm1/gamma", "encoder_norm/beta"]
    assert layer_decay_multipliers(paths, 0.5) == [0.125, 0.25, 0.5, 1.0]
    with pytest.raises(ValueError, match=r"layer_decay must be in \(0, 1\]"):
        layer_decay_multipliers(paths, 1.5)


def test_options_linear_probe_adamw_layer_decay_bfloat16(tmp_path):
    import keras

    import vit_zoo
    from vit_zoo.train.finetuning import finetune

    result = finetune(toy_arrays(64), tiny_config(num_classes=4), steps=2, freeze_backbone=True, optimizer="adamw",
                      weight_decay=0.05, layer_decay=0.75, precision="mixed_bfloat16", cutmix=1.0, mixup=0.5,
                      output_dir=tmp_path, **RUN)
    model = result["model"]
    assert model.get_layer("patch_embed").dtype_policy.name == "mixed_bfloat16"
    keras.utils.set_random_seed(0)  # as finetune(seed=0) does: the same initial weights
    start = vit_zoo.load(config=tiny_config(num_classes=4), dtype="mixed_bfloat16")
    np.testing.assert_array_equal(model.get_layer("block_00_mlp_fc1").get_weights()[0],
                                  start.get_layer("block_00_mlp_fc1").get_weights()[0])
    assert not np.array_equal(model.get_layer("head").get_weights()[0], start.get_layer("head").get_weights()[0])
    reloaded = keras.models.load_model(tmp_path / "model.keras")  # reloads compiled: training can go on
    assert type(reloaded.optimizer).__name__ == "ViTAdamW" and reloaded.optimizer.layer_decay == 0.75


def test_training_batches_are_a_function_of_the_step():
    """Batch k is the same whether the stream starts at 0 or at k, and spans epochs seamlessly; crops
    follow torchvision's RandomResizedCrop draw."""
    from vit_zoo.train.data import resolve_data
    from vit_zoo.train.pipeline import EpochOrder, TrainingBatches, crop_box

    source = resolve_data(toy_arrays(40)).train
    batches = lambda first: TrainingBatches(source, num_classes=4, image_size=(16, 16), batch_size=16,  # noqa
                                            seed=3, first_batch=first, mixup=0.4)
    from_zero, from_four = batches(0), batches(4)
    np.testing.assert_array_equal(from_zero[4][0], from_four[0][0])
    np.testing.assert_array_equal(from_zero[5][1], from_four[1][1])
    images, targets = from_zero[0]
    assert images.shape == (16, 16, 16, 3) and images.dtype == np.float32 and targets.shape == (16, 4)
    np.testing.assert_allclose(targets.sum(axis=1), 1.0, atol=1e-6)
    order = EpochOrder(40, seed=3)
    first_two_epochs = order.examples(range(80))
    assert sorted(first_two_epochs[:40]) == list(range(40)) == sorted(first_two_epochs[40:])
    rng = np.random.default_rng(0)
    for _ in range(50):
        top, left, height, width = crop_box(30, 50, rng, (0.08, 1.0))
        assert 0 <= top and top + height <= 30 and 0 <= left and left + width <= 50
        assert 0.08 * 1500 * 0.9 <= height * width <= 1500


@pytest.mark.tensorflow_only("a tf.data.Dataset as the data")
def test_a_dataset_source_is_read_in_order_and_resumed_by_skipping():
    """A tf.data.Dataset can only be read in order: batch k from a stream started at batch k equals batch k
    of a stream started at 0, and a batch asked for again after it was dropped is read anew."""
    import tensorflow as tf

    from vit_zoo.train.data import resolve_data
    from vit_zoo.train.pipeline import TrainingBatches

    images, labels = toy_arrays(24, size=20)
    source = resolve_data(tf.data.Dataset.from_tensor_slices((images, labels)), class_names=NAMES).train
    assert source.kind == "dataset" and source.size == 24
    batches = lambda first: TrainingBatches(source, num_classes=4, image_size=(16, 16), batch_size=8,  # noqa
                                            seed=1, first_batch=first)
    from_zero = batches(0)
    later = [from_zero[k] for k in range(7)]  # spans the repeat at batch 3
    np.testing.assert_array_equal(batches(5)[0][0], later[5][0])
    np.testing.assert_array_equal(from_zero[0][1], later[0][1])  # dropped (more than 4 back), read again
    np.testing.assert_array_equal(from_zero[0][0], later[0][0])


def test_image_folder_classes_val_split_alpha_and_mixed_sizes(tmp_path):
    from PIL import Image

    from vit_zoo.train.finetuning import finetune

    write_folder(tmp_path / "data" / "train", counts=(8, 8), size=(40, 36))
    write_folder(tmp_path / "data" / "val", counts=(3, 3), size=(50, 30), seed=1)
    Image.new("RGBA", (64, 20), (0, 0, 0, 0)).save(tmp_path / "data" / "train" / "class_0" / "clear.png")
    result = finetune(tmp_path / "data", tiny_config(), steps=2, output_dir=tmp_path / "out",
                      **{**RUN, "batch_size": 8})
    assert result["classes"] == ["class_0", "class_1"] and result["model"].identity.labels == ("class_0", "class_1")
    assert result["metrics"]["val_examples"] == 6
    notes = result["data"]["train"]["notes"]
    assert any("sizes vary" in note for note in notes) and "1 image(s) have an alpha channel" in " ".join(notes)


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
        splits = resolve_data(tmp_path / "bad")
    assert splits.train.size + splits.val.size == 6
    for path in (tmp_path / "bad" / "class_0").iterdir():
        path.write_bytes(b"garbage")
    with pytest.raises(ValueError, match="(?s)class_0' has no usable images .*cannot decode"):
        resolve_data(tmp_path / "bad")
    with pytest.raises(ValueError, match="different sizes"):
        resolve_data(([np.zeros((8, 8, 3), np.uint8), np.zeros((9, 8, 3), np.uint8)], [0, 1]))
    with pytest.raises(ValueError, match="at least 2 classes"):
        resolve_data((np.zeros((4, 8, 8, 3), np.uint8), np.zeros(4, int)))
    with pytest.raises(ValueError, match="has label 3, but there are 2 classes"):
        resolve_data(toy_arrays(8), class_names=["a", "b"])
    with pytest.raises(FileNotFoundError, match="no such folder or TFRecord"):
        resolve_data(tmp_path / "missing.tfrecord")


@pytest.mark.tensorflow_only("TFRecord files, written and parsed with TensorFlow's protobufs")
def test_tfrecords_read_by_offset_with_their_class_names(tmp_path):
    from vit_zoo.train.data import resolve_data
    from vit_zoo.train.finetuning import finetune

    images, labels = toy_arrays(32, size=24)
    named = write_tfrecord(tmp_path / "named.tfrecord", images, labels, names=NAMES)
    splits = resolve_data(named)
    assert splits.class_names == list(NAMES) and splits.num_classes == 4 and splits.train.size == 32
    np.testing.assert_array_equal(splits.train.labels, labels)
    np.testing.assert_array_equal(splits.train.image(splits.train.raw(7)), images[7])  # PNG: lossless
    plain = write_tfrecord(tmp_path / "plain.tfrecord", images, labels, image_key="image", label_key="label")
    assert resolve_data(plain).class_names is None
    assert resolve_data(plain, class_names=list("abcd")).class_names == list("abcd")
    result = finetune(str(plain), tiny_config(num_classes=4), val_data=str(named), class_names=list("abcd"),
                      steps=2, output_dir=tmp_path / "out", **RUN)
    assert result["classes"] == list("abcd") and result["metrics"]["val_examples"] == 32
    (tmp_path / "cut.tfrecord").write_bytes(named.read_bytes()[:-10])
    with pytest.raises(ValueError, match="claims .* bytes, past the end of the file"):
        resolve_data(tmp_path / "cut.tfrecord")


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
    assert isinstance(keras.models.load_model(tmp_path / "model.keras").optimizer,
                      keras.optimizers.LossScaleOptimizer)


@pytest.mark.parametrize("checkpoint_format", ["npz", "timm"])
def test_starts_from_a_checkpoint_file_with_a_new_zero_head(tmp_path, checkpoint_format):
    """``model=PATH``: the backbone is the checkpoint's (frozen here, so it must stay exactly that), the
    head is new (4 classes instead of 10) and starts at zero, and the provenance records the start."""
    import vit_zoo
    from synth_checkpoints import npz_tensors, write_npz, write_timm
    from vit_zoo.train.finetuning import finetune

    if checkpoint_format == "npz":
        path = write_npz(tmp_path / "start.npz", npz_tensors(tiny_config(num_classes=10)))
    else:
        config = vit_zoo.ViTConfig.from_name("vit-tiny-16").replace(num_layers=1, image_size=32, num_classes=10)
        path = write_timm(tmp_path / "timm", config, architecture="vit_tiny_patch16_224")
    reference = vit_zoo.load(weights=str(path), num_classes=4)
    assert not np.any(reference.get_layer("head").get_weights()[0])
    result = finetune(toy_arrays(32), str(path), steps=1, freeze_backbone=True, output_dir=tmp_path / "out", **RUN)
    model = result["model"]
    assert model.output_shape == (None, 4)
    for name in ("patch_embed", "block_00_attn", "encoder_norm"):
        for got, want in zip(model.get_layer(name).get_weights(), reference.get_layer(name).get_weights()):
            np.testing.assert_array_equal(got, want)
    assert model.identity.provenance.finetuned_from == reference.identity.to_dict()["provenance"]
    assert model.identity.preprocessing == reference.identity.preprocessing


def test_starts_from_a_keras_file_with_another_class_count(tmp_path):
    """Needs ``vit_zoo.load(weights="m.keras", num_classes=N)`` (the loader's part of issue 11)."""
    import vit_zoo
    from vit_zoo.train.finetuning import finetune

    start = vit_zoo.build(tiny_config(num_classes=10))
    start.save(tmp_path / "start.keras")
    result = finetune(toy_arrays(32), str(tmp_path / "start.keras"), steps=1, freeze_backbone=True,
                      output_dir=tmp_path / "out", **RUN)
    np.testing.assert_array_equal(result["model"].get_layer("block_01_mlp_fc2").get_weights()[0],
                                  start.get_layer("block_01_mlp_fc2").get_weights()[0])
    assert result["model"].output_shape == (None, 4)


def test_demo_names_its_shapes_and_evaluating_it_reproduces_the_printed_top1(tmp_path):
    import keras

    import vit_zoo
    from vit_zoo.train.demo import SHAPES, run_demo

    result = run_demo(tmp_path, train_images=48, val_images=30, progress=False, steps=3, batch_size=12,
                      model=tiny_config(num_classes=6), jit_compile=False)
    saved = json.loads((tmp_path / "run.json").read_text())
    assert saved["classes"] == sorted(SHAPES) and saved["identity"]["labels"] == sorted(SHAPES)
    assert sorted(p.name for p in (tmp_path / "data" / "val").iterdir()) == sorted(SHAPES)
    reloaded = keras.models.load_model(tmp_path / "model.keras")
    evaluated = vit_zoo.evaluate(reloaded, tmp_path / "data" / "val", progress=False)
    assert evaluated["examples"] == 30
    assert evaluated["top1"] == result["metrics"]["val_top1"]
    assert evaluated["top5"] == result["metrics"]["val_top5"] < 1.0  # 6 classes: top-5 can miss, and does
    assert evaluated["loss"] == pytest.approx(result["metrics"]["val_loss"], abs=1e-6)
