"""A model's identity: the record itself, and that every save format keeps it (and the outputs)."""
import json
import os
import subprocess
import sys
import warnings

import h5py
import keras
import numpy as np
import pytest

import vit_zoo
from vit_zoo.converters.checkpoint import CheckpointError
from vit_zoo.model.identity import Identity, Preprocessing, Provenance

from conftest import random_images, tiny_config

NAMES = ("cat", "dog", "fox")


def tiny_identity(**config_changes):
    config = tiny_config(num_classes=3, **config_changes)
    return Identity(config, Preprocessing("timm", 0.875, "bicubic"), NAMES,
                    Provenance("timm", source="/data/x.safetensors", sha256="ab" * 32))


# ---- the record ----------------------------------------------------------------------------------------
def test_record_round_trips_through_json():
    identity = tiny_identity(gelu="tanh", layer_norm_epsilon=1e-12)
    record = json.loads(json.dumps(identity.to_dict()))
    assert Identity.from_dict(record) == identity
    assert record["preprocessing"] == {"recipe": "timm", "crop_pct": 0.875, "interpolation": "bicubic",
                                       "image_size": [32, 32], "mean": [0.5] * 3, "std": [0.5] * 3}
    assert record["labels"] == list(NAMES)


@pytest.mark.parametrize("labels, message", [
    (("a", "b"), "2 class names given for a head of 3 classes"),
    ("imagenet1k", "label set 'imagenet1k' has 1000 classes, but the head has 3"),
    ("cifar10", "unknown label set 'cifar10'"),
])
def test_labels_must_fit_the_head(labels, message):
    with pytest.raises(ValueError, match=message):
        Identity(tiny_config(num_classes=3), labels=labels)


def test_preprocessing_and_provenance_are_checked():
    with pytest.raises(ValueError, match="recipe 'google' resizes straight to the input size and takes no crop"):
        Preprocessing("google", 0.9)
    with pytest.raises(ValueError, match="recipe must be one of"):
        Preprocessing("squash")
    with pytest.raises(ValueError, match="provenance format must be one of"):
        Provenance("onnx")
    with pytest.raises(ValueError, match="not a vit_zoo identity record"):
        Identity.from_dict({"labels": None})


def test_build_gives_every_model_an_identity():
    model = vit_zoo.build(tiny_config())
    assert model.identity == Identity(tiny_config())
    assert (model.identity.labels, model.identity.provenance.format) == (None, "built")
    with pytest.raises(ValueError, match="identity.config differs from config in .'num_classes'."):
        vit_zoo.build(tiny_config(), identity=tiny_identity())


# ---- save formats keep identity and outputs -------------------------------------------------------------
def numerics_model():
    """Not vit_zoo's defaults anywhere: tanh GELU, eps 1e-12, ImageNet mean/std (the issue's case)."""
    config = tiny_config(num_classes=3, gelu="tanh", layer_norm_epsilon=1e-12, mean=(0.485, 0.456, 0.406),
                         std=(0.229, 0.224, 0.225))
    identity = Identity(config, Preprocessing("timm", 0.9, "bicubic"), NAMES, Provenance("built"))
    model = vit_zoo.build(config, identity=identity)
    rng = np.random.default_rng(0)
    model.set_weights([rng.normal(0, 0.3, w.shape).astype("float32") for w in model.get_weights()])
    return model


def test_weights_file_keeps_identity_and_outputs(tmp_path, rng):
    model = numerics_model()
    path = tmp_path / "m.weights.h5"
    model.save_weights(path)
    with h5py.File(path) as handle:
        assert Identity.from_dict(json.loads(handle.attrs["vit_zoo_identity"])) == model.identity
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # nothing is assumed: the record states everything
        loaded = vit_zoo.load(weights=str(path))
    images = random_images(rng, 2, 32)
    np.testing.assert_array_equal(loaded.predict(images, verbose=0), model.predict(images, verbose=0))
    assert loaded.identity == model.identity


def test_keras_file_loads_as_weights_too_with_other_options(tmp_path, rng):
    model = numerics_model()
    model.save(tmp_path / "m.keras")
    images = random_images(rng, 2, 32)
    same = vit_zoo.load(weights=str(tmp_path / "m.keras"))
    np.testing.assert_array_equal(same.predict(images, verbose=0), model.predict(images, verbose=0))
    assert same.identity == model.identity
    retargeted = vit_zoo.load(weights=str(tmp_path / "m.keras"), num_classes=5, image_size=48)
    assert retargeted.output_shape == (None, 5) and retargeted.identity.labels is None
    assert not np.any(retargeted.get_layer("head").get_weights()[0])  # a new head starts at zero
    assert retargeted.identity.config.replace(num_classes=3, image_size=32) == model.identity.config
    assert retargeted.identity.preprocessing == model.identity.preprocessing


def test_weights_file_without_record_refuses_or_states_assumptions(tmp_path, rng):
    config = vit_zoo.ViTConfig.from_name("vit-tiny-16", image_size=32, num_classes=3, gelu="tanh",
                                         layer_norm_epsilon=1e-12)
    model = vit_zoo.build(config)
    path = tmp_path / "plain.weights.h5"
    keras.Model.save_weights(model, path)  # plain Keras: no identity record
    with pytest.raises(CheckpointError, match="without their identity record.*Pass config=.*or name="):
        vit_zoo.load(weights=str(path))
    with pytest.warns(UserWarning, match=r"assumed: gelu = exact; layer_norm_epsilon = 1e-06; mean = "):
        guessed = vit_zoo.load("vit-tiny-16", weights=str(path))
    assert {"gelu", "layer_norm_epsilon", "mean", "std", "pooling"} <= set(guessed.identity.provenance.assumed)
    # config= states every numeric value; only the evaluation transform remains assumed
    with pytest.warns(UserWarning, match=r"assumed: preprocessing = google recipe, bilinear \(") as caught:
        stated = vit_zoo.load(config=config, weights=str(path))
    assert len([w for w in caught if "assumed" in str(w.message)]) == 1
    images = random_images(rng, 2, 32)
    np.testing.assert_array_equal(stated.predict(images, verbose=0), model.predict(images, verbose=0))
    assert stated.identity.provenance.assumed == ("preprocessing",)


def test_interrupted_save_leaves_the_old_file(tmp_path, monkeypatch):
    model = vit_zoo.build(tiny_config())
    path = tmp_path / "model.keras"
    model.save(path)
    before = path.read_bytes()

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt
    monkeypatch.setattr(keras.Model, "save", interrupted)
    with pytest.raises(KeyboardInterrupt):
        model.save(path)
    assert path.read_bytes() == before and sorted(os.listdir(tmp_path)) == ["model.keras"]


RELOAD = """
import sys, numpy as np, keras, vit_zoo
model = keras.models.load_model(sys.argv[1])
print(type(model).__name__, model.identity.labels, int(model.optimizer.iterations.numpy()))
x = np.load(sys.argv[2]); before = model.optimizer.variables[-1].numpy().copy()
history = model.fit(x["images"], x["labels"], epochs=1, verbose=0)
print(int(model.optimizer.iterations.numpy()), bool(np.isfinite(history.history["loss"][0])))
"""


def test_compiled_model_reloads_compiled_in_a_fresh_process(tmp_path, rng):
    model = vit_zoo.build(tiny_config(num_classes=3), identity=Identity(tiny_config(num_classes=3), labels=NAMES))
    model.compile(optimizer=keras.optimizers.SGD(0.01, momentum=0.9),
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True), metrics=["accuracy"])
    images, labels = random_images(rng, 8, 32), np.arange(8) % 3
    model.fit(images, labels, batch_size=4, epochs=1, verbose=0)  # 2 steps of momentum state
    model.save(tmp_path / "m.keras")
    np.savez(tmp_path / "data.npz", images=images, labels=labels)
    done = subprocess.run([sys.executable, "-c", RELOAD, str(tmp_path / "m.keras"), str(tmp_path / "data.npz")],
                          capture_output=True, text=True, timeout=300,
                          env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"})
    assert done.returncode == 0, done.stderr[-2000:]
    first, second = done.stdout.strip().splitlines()[-2:]
    assert first == "VisionTransformer ('cat', 'dog', 'fox') 2"  # optimizer state came back with the model
    assert second == "3 True"  # fit continues from step 2
