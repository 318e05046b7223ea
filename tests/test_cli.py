"""The command line through its entry point, as a user runs it."""
import json
import os
import subprocess
import sys

import pytest

from vit_zoo import cli


def run(*args):
    """(exit code, stdout, stderr) of ``vit-zoo ARGS`` in a fresh process."""
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
    done = subprocess.run([sys.executable, "-m", "vit_zoo.cli", *args], capture_output=True, text=True,
                          env=env, timeout=300)
    return done.returncode, done.stdout, done.stderr


def test_list_shows_every_variant_with_parameters(capsys):
    assert cli.main(["list"]) == 0
    out = capsys.readouterr().out
    assert "vit-base-16   86,567,656" in out
    assert "vit-huge-14   632,045,800" in out
    assert "vit-giant-14  1,012,611,432" in out


def test_info_prints_config_parameters_and_flops(capsys):
    assert cli.main(["info", "ViT-B_16", "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["model"] == "vit-base-16"
    assert info["parameters"] == 86_567_656
    assert info["parameters_with_21k_pre_logits_head"] == 103_186_515
    assert info["gflops_per_image"] == pytest.approx(35.1, abs=0.1)
    assert info["config"]["num_heads"] == 12


def test_unknown_model_is_one_line_and_exit_1():
    code, out, err = run("info", "vit-bas-16")
    assert code == 1
    assert err.strip().splitlines() == [
        "vit-zoo info: error: unknown model name 'vit-bas-16'; closest: vit-base-16, vit-base-14, vit-base-8. Aliases such as "
        "'ViT-B_16', 'B/16', 'vit_base_patch16_224' and 'google/vit-base-patch16-224' are accepted too"]
    assert "Traceback" not in err


def test_usage_error_exits_2():
    code, _, err = run("info")
    assert code == 2
    assert "the following arguments are required: name" in err


def test_convert_writes_a_keras_model(tmp_path):
    import keras
    import numpy as np

    import vit_zoo
    from conftest import tiny_config

    model = vit_zoo.build(tiny_config())
    source = tmp_path / "tiny.weights.h5"
    model.save_weights(source)
    # a .weights.h5 has no numerics of its own; config.json beside it supplies them
    (tmp_path / "config.json").write_text(json.dumps({"vit_zoo_config": tiny_config().to_dict()}))
    output = tmp_path / "tiny.keras"
    code, out, err = run("convert", str(source), "-o", str(output))
    assert code == 0, err
    assert f"→ {output}" in out
    images = np.random.default_rng(0).uniform(0, 255, (1, 32, 32, 3)).astype("float32")
    np.testing.assert_array_equal(keras.models.load_model(output)(images), model(images))


@pytest.fixture(scope="module")
def local_weights(tmp_path_factory):
    """A tiny 1000-class model saved as .weights.h5 with its config.json, and its sample inputs."""
    import vit_zoo
    from conftest import tiny_config

    folder = tmp_path_factory.mktemp("weights")
    config = tiny_config(num_classes=1000)
    model = vit_zoo.build(config)
    model.save_weights(folder / "tiny.weights.h5")
    (folder / "config.json").write_text(json.dumps({"vit_zoo_config": config.to_dict()}))
    return folder / "tiny.weights.h5", model


SAMPLE = os.path.join(os.path.dirname(__file__), "..", "samples", "grace_hopper.jpg")


def test_predict_prints_the_top_classes_of_a_sample_image(local_weights):
    import numpy as np

    import vit_zoo

    path, model = local_weights
    code, out, err = run("predict", SAMPLE, "--weights", str(path), "--top", "3", "--json")
    assert code == 0, err
    (result,) = json.loads(out)
    pixels = vit_zoo.preprocess([SAMPLE], weights=model)
    logits = np.asarray(model(pixels))[0]
    assert [entry["index"] for entry in result["top"]] == list(np.argsort(-logits)[:3])
    labels = vit_zoo.imagenet1k_labels()
    assert [entry["label"] for entry in result["top"]] == [labels[i] for i in np.argsort(-logits)[:3]]


def test_predict_of_a_missing_image_is_one_line_and_exit_1(local_weights):
    path, _ = local_weights
    code, _, err = run("predict", "no_such.jpg", "--weights", str(path))
    assert code == 1
    assert err.strip().startswith("vit-zoo predict: error:") and "no_such.jpg" in err
    assert "Traceback" not in err


def test_attention_writes_an_overlay_picture(local_weights, tmp_path):
    path, _ = local_weights
    output = tmp_path / "overlay.png"
    code, out, err = run("attention", SAMPLE, "--weights", str(path), "-o", str(output))
    assert code == 0, err
    assert output.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_embed_writes_embeddings_of_a_folder(local_weights, tmp_path):
    import shutil

    import h5py

    path, _ = local_weights
    images = tmp_path / "images"
    images.mkdir()
    shutil.copy(SAMPLE, images / "a.jpg")
    shutil.copy(os.path.join(os.path.dirname(SAMPLE), "chelsea.png"), images / "b.png")
    output = tmp_path / "out.h5"
    code, out, err = run("embed", str(images), "--weights", str(path), "-o", str(output), "--quiet")
    assert code == 0, err
    with h5py.File(output) as store:
        assert store["embeddings"].shape == (2, 32)


def test_finetune_from_a_checkpoint_evaluate_and_export_through_the_command_line(tmp_path, capsys):
    """vit-zoo finetune DATA --model PATH (a vit_jax .npz of 10 classes; a new 2-class head), then evaluate
    the saved model on the validation split it held out (the top-1 fine-tuning printed), then export."""
    from conftest import tiny_config
    from finetune_helpers import write_folder
    from synth_checkpoints import npz_tensors, write_npz

    data = write_folder(tmp_path / "data", counts=(6, 6))
    write_folder(tmp_path / "data" / "val", counts=(3, 3), seed=1)
    start = write_npz(tmp_path / "start.npz", npz_tensors(tiny_config(num_classes=10)))
    assert cli.main(["finetune", str(data), "--model", str(start), "--steps", "2", "--batch-size", "4",
                     "--output-dir", str(tmp_path / "run"), "--quiet"]) == 0
    out = capsys.readouterr().out
    run_json = json.loads((tmp_path / "run" / "run.json").read_text())
    assert run_json["steps"] == 2 and run_json["classes"] == ["class_0", "class_1"]
    top1 = run_json["metrics"]["val_top1"]
    assert f"saved {tmp_path / 'run' / 'model.keras'} val_top1 {top1:.4f}" in out
    results = tmp_path / "results.csv"
    assert cli.main(["evaluate", str(data / "val"), "--weights", str(tmp_path / "run" / "model.keras"),
                     "--quiet", "--results", str(results)]) == 0
    out = capsys.readouterr().out
    assert f"top-1 {top1:.3%}  top-2 " in out and "6 images" in out
    assert results.read_text().splitlines()[1].split(",")[3] == f"{100 * top1:.3f}"
    exported = tmp_path / "model.tflite"
    assert cli.main(["export", str(tmp_path / "run" / "model.keras"), "--format", "tflite", "-o", str(exported)]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["max_abs_diff"] < 1e-4 and exported.stat().st_size > 0
    assert cli.main(["finetune"]) == 1 and "finetune needs DATA" in capsys.readouterr().err
    # a saved classifier embeds what its head sees: the (B, D) pooled features, not the logits
    import h5py

    code, _, err = run("embed", str(data / "class_0"), "--weights", str(tmp_path / "run" / "model.keras"),
                       "-o", str(tmp_path / "e.h5"), "--quiet")
    assert code == 0, err
    with h5py.File(tmp_path / "e.h5") as store:
        assert store["embeddings"].shape == (6, 32)
