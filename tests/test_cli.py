"""The command line, called in-process as ``cli.main([...])``; one test runs the installed ``vit-zoo``
entry point in a fresh process (TensorFlow's start-up notes are only visible there)."""
import json
import os
import shutil
import subprocess
import sys

import pytest

from conftest import to_numpy
from vit_zoo import cli
from vit_zoo.cli import models


def run(capsys, *args):
    """(exit code, stdout, stderr) of ``vit-zoo ARGS``, in this process."""
    code = cli.main([str(arg) for arg in args])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def entry_point():
    """The ``vit-zoo`` console script beside this Python (``python -m vit_zoo.cli`` where none is installed)."""
    script = shutil.which("vit-zoo", path=os.path.dirname(sys.executable))
    return [script] if script else [sys.executable, "-m", "vit_zoo.cli"]


def test_list_shows_every_variant_with_parameters(capsys):
    assert cli.main(["list"]) == 0
    out = capsys.readouterr().out
    rows = {line.split()[1]: line.split()[2] for line in out.splitlines()[2:]}
    assert (rows["vit-base-16"], rows["vit-huge-14"], rows["vit-giant-14"]) == (
        "86,567,656", "632,045,800", "1,012,611,432")


def test_info_prints_config_parameters_and_flops(capsys):
    assert cli.main(["info", "ViT-B_16", "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["model"] == "vit-base-16"
    assert info["parameters"] == 86_567_656
    assert info["parameters_with_21k_pre_logits_head"] == 103_186_515
    assert info["gflops_per_image"] == pytest.approx(35.1, abs=0.1)
    assert info["config"]["num_heads"] == 12


def test_unknown_model_is_one_line_and_exit_1(capsys):
    code, out, err = run(capsys, "info", "vit-bas-16")
    assert code == 1
    assert err.strip().splitlines() == [
        "vit-zoo info: error: unknown model name 'vit-bas-16'; closest: vit-base-16, vit-base-14, deit-base-16. "
        "Aliases such as 'ViT-B_16', 'B/16', 'vit_base_patch16_224', 'google/vit-base-patch16-224', "
        "'deit_small_distilled_patch16_224', 'vit_small_patch14_reg4_dinov2', 'facebook/dinov2-base' and "
        "'dinov2_vitb14' are accepted too"]
    assert "Traceback" not in err


def test_usage_error_exits_2(capsys):
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["info"])
    assert exit_info.value.code == 2
    assert "the following arguments are required: name" in capsys.readouterr().err


@pytest.mark.parametrize("argv", [["--debug", "info", "vit-bas-16"], ["info", "vit-bas-16", "--debug"],
                                  ["info", "--debug", "vit-bas-16"]])
def test_debug_anywhere_shows_the_traceback(argv):
    with pytest.raises(ValueError, match="unknown model name 'vit-bas-16'"):
        cli.main(argv)


def test_ctrl_c_exits_130_with_one_line(monkeypatch, capsys):
    def interrupted(args):
        raise KeyboardInterrupt
    monkeypatch.setattr(models, "_command_list", interrupted)
    assert run(capsys, "list") == (130, "", "vit-zoo list: interrupted\n")


def test_weights_table_has_a_row_per_entry_and_marks_default(capsys):
    import vit_zoo

    code, out, _ = run(capsys, "weights", "vit-huge-14")
    lines = out.splitlines()
    entries = vit_zoo.list_weights("vit-huge-14")
    assert code == 0
    assert lines[0].split() == ["weights", "format", "res", "outputs", "top1", "size", "source"]
    assert set(lines[1]) == {"-", " "}
    assert len(lines) == 3 + len(entries)
    assert lines[-1] == f"{len(entries)} checkpoint(s); * marks the default of its model (pretrained=True)"
    row = next(line for line in lines if line.startswith("vit-huge-14.orig-in21k* (zero head)"))
    assert row.split()[3:7] == ["google-npz", "224", "21843", "-"]  # format, res, classes, top-1
    assert row.endswith("  gs://vit_models/imagenet21k/ViT-H_14.npz")


def test_cache_lists_and_clears(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("VIT_ZOO_HOME", str(tmp_path))
    assert run(capsys, "cache") == (0, f"nothing cached under {tmp_path}\n", "")
    for relative, size in (("downloads/gcs/vit_models/x/B_16.npz", 3 * 2**20 // 2),
                           ("downloads/gcs/vit_models/x/L_16.npz.partial", 10)):
        (tmp_path / relative).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / relative).write_bytes(b"x" * size)
    code, out, _ = run(capsys, "cache")
    assert code == 0
    assert out.splitlines()[2:] == ["1.5 MiB  download  downloads/gcs/vit_models/x/B_16.npz",
                                    "10 B     partial   downloads/gcs/vit_models/x/L_16.npz.partial",
                                    f"1.5 MiB in 2 item(s) under {tmp_path}"]
    assert run(capsys, "cache", "--clear", "L_16") == (0, f"removed 1 item(s), 10 B, from {tmp_path}\n", "")
    assert run(capsys, "cache", "--clear")[1] == f"removed 1 item(s), 1.5 MiB, from {tmp_path}\n"
    assert not (tmp_path / "downloads").exists()


def test_convert_writes_a_keras_model(tmp_path, capsys):
    import keras
    import numpy as np

    import vit_zoo
    from conftest import tiny_config

    model = vit_zoo.build(tiny_config())
    source = tmp_path / "tiny.weights.h5"
    model.save_weights(source)  # its identity record travels inside the file
    output = tmp_path / "tiny.keras"
    code, out, err = run(capsys, "convert", source, "-o", output)
    assert code == 0, err
    assert f"→ {output}" in out
    images = np.random.default_rng(0).uniform(0, 255, (1, 32, 32, 3)).astype("float32")
    converted = keras.models.load_model(output)
    np.testing.assert_array_equal(to_numpy(converted(images)), to_numpy(model(images)))
    assert converted.identity == model.identity


@pytest.fixture(scope="module")
def local_weights(tmp_path_factory):
    """A tiny model with ImageNet-1k class names, saved as .weights.h5 (its identity inside)."""
    import vit_zoo
    from conftest import tiny_config
    from vit_zoo.model.identity import Identity

    folder = tmp_path_factory.mktemp("weights")
    config = tiny_config(num_classes=1000)
    model = vit_zoo.build(config, identity=Identity(config, labels="imagenet1k"))
    model.save_weights(folder / "tiny.weights.h5")
    return folder / "tiny.weights.h5", model


SAMPLE = os.path.join(os.path.dirname(__file__), "..", "samples", "grace_hopper.jpg")


def test_predict_through_the_entry_point_prints_the_top_classes_and_no_start_up_noise(local_weights):
    import numpy as np

    import vit_zoo

    path, model = local_weights
    env = {key: value for key, value in os.environ.items() if key != "TF_CPP_MIN_LOG_LEVEL"}
    done = subprocess.run([*entry_point(), "predict", SAMPLE, "--weights", str(path), "--top", "3", "--json"],
                          capture_output=True, text=True, env=env, timeout=300)
    code, out, err = done.returncode, done.stdout, done.stderr
    assert code == 0, err
    assert err == ""  # TensorFlow's start-up notes stay out of the output
    (result,) = json.loads(out)
    pixels = vit_zoo.preprocess([SAMPLE], weights=model)
    logits = to_numpy(model(pixels))[0]
    assert [entry["index"] for entry in result["top"]] == list(np.argsort(-logits)[:3])
    labels = vit_zoo.imagenet1k_labels()
    assert [entry["label"] for entry in result["top"]] == [labels[i] for i in np.argsort(-logits)[:3]]


def test_predict_of_a_missing_image_is_one_line_and_exit_1(local_weights, capsys):
    path, _ = local_weights
    code, _, err = run(capsys, "predict", "no_such.jpg", "--weights", path)
    assert code == 1
    assert err.strip().startswith("vit-zoo predict: error:") and "no_such.jpg" in err
    assert "Traceback" not in err


def test_attention_writes_an_overlay_picture(local_weights, tmp_path, capsys):
    path, _ = local_weights
    output = tmp_path / "overlay.png"
    code, out, err = run(capsys, "attention", SAMPLE, "--weights", path, "-o", output)
    assert code == 0, err
    assert output.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_embed_writes_embeddings_of_a_folder(local_weights, tmp_path, capsys):
    import shutil

    import h5py

    path, _ = local_weights
    images = tmp_path / "images"
    images.mkdir()
    shutil.copy(SAMPLE, images / "a.jpg")
    shutil.copy(os.path.join(os.path.dirname(SAMPLE), "chelsea.png"), images / "b.png")
    output = tmp_path / "out.h5"
    code, out, err = run(capsys, "embed", images, "--weights", path, "-o", output, "--quiet")
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
    code, out, err = run(capsys, "finetune", data, "--model", start, "--steps", "2", "--batch-size", "4",
                         "--output-dir", tmp_path / "run", "--quiet")
    assert code == 0, err
    run_json = json.loads((tmp_path / "run" / "run.json").read_text())
    assert run_json["steps"] == 2 and run_json["classes"] == ["class_0", "class_1"]
    top1 = run_json["metrics"]["val_top1"]
    assert f"saved {tmp_path / 'run' / 'model.keras'}: val top-1 {top1:.3%}  top-2 " in out
    results = tmp_path / "results.csv"
    code, out, err = run(capsys, "evaluate", data / "val", "--weights", tmp_path / "run" / "model.keras",
                         "--quiet", "--results", results)
    assert code == 0, err
    assert f"top-1 {top1:.3%}  top-2 " in out and "6 images scored" in out
    assert results.read_text().splitlines()[1].split(",")[3] == f"{100 * top1:.3f}"
    exported = tmp_path / "model.tflite"
    code, out, err = run(capsys, "export", tmp_path / "run" / "model.keras", "--format", "tflite", "-o", exported)
    assert code == 0, err
    result = json.loads(out)
    assert result["max_abs_diff"] < 1e-4 and exported.stat().st_size > 0
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["finetune"])
    assert exit_info.value.code == 2 and "DATA is required" in capsys.readouterr().err
    # a saved classifier embeds what its head sees: the (B, D) pooled features, not the logits
    import h5py

    code, _, err = run(capsys, "embed", data / "class_0", "--weights", tmp_path / "run" / "model.keras",
                       "-o", tmp_path / "e.h5", "--quiet")
    assert code == 0, err
    with h5py.File(tmp_path / "e.h5") as store:
        assert store["embeddings"].shape == (6, 32)


def test_download_converts_published_weights_into_the_cache_once(tmp_path, monkeypatch, capsys):
    import hashlib

    import vit_zoo
    from fixtures_http import FaultServer, use_loopback_cache
    from synth_checkpoints import npz_tensors, write_npz
    from vit_zoo.weights import cache, pretrained

    config = vit_zoo.ViTConfig.from_name("vit-tiny-16", image_size=32, num_classes=1000)
    data = write_npz(tmp_path / "tiny.npz", npz_tensors(config, seed=1)).read_bytes()
    entry = dict(tag="tiny", model="vit-tiny-16", format="google-npz", sha256=hashlib.sha256(data).hexdigest(),
                 url="https://storage.googleapis.com/vit_models/test/tiny.npz", size=len(data), image_size=32,
                 num_classes=1000, labels="imagenet1k", default=True, mean=[0.5] * 3, std=[0.5] * 3,
                 pooling="token", license="apache-2.0", source="tests")
    (tmp_path / "manifest.json").write_text(json.dumps({"schema_version": 1, "entries": [entry]}))
    monkeypatch.setenv("VIT_ZOO_MANIFEST", str(tmp_path / "manifest.json"))
    with FaultServer() as server:
        use_loopback_cache(monkeypatch, tmp_path / "home", server.url)
        server.add("/vit_models/test/tiny.npz", data)
        for _ in range(2):
            code, out, err = run(capsys, "download", "vit-tiny-16:tiny", "--quiet")
            assert code == 0, err
        assert len(server.gets("/vit_models/test/tiny.npz")) == 1
    path = tmp_path / "home" / "converted" / "vit-tiny-16" / "tiny" / \
        f"32x32-v{pretrained.CONVERTED_FORMAT_VERSION}.weights.h5"
    assert out == f"vit-tiny-16:tiny: converted weights at {path}\n"
    assert cache.is_valid(path, source="vit-tiny-16.tiny")


@pytest.fixture(scope="module")
def shapes_model(tmp_path_factory):
    """A tiny 3-class model with shape names in its identity, saved as .keras; and a labels file."""
    import keras

    import vit_zoo
    from conftest import tiny_config
    from vit_zoo.model.identity import Identity

    folder = tmp_path_factory.mktemp("shapes")
    keras.utils.set_random_seed(3)
    config = tiny_config(num_classes=3)
    model = vit_zoo.build(config, identity=Identity(config, labels=("circle", "square", "ring")))
    kernel, bias = model.get_layer("head").get_weights()
    model.get_layer("head").set_weights([kernel * 20, bias])
    model.save(folder / "model.keras")
    (folder / "labels.txt").write_text("rond\ncarré\nanneau\n", encoding="utf-8")
    return folder, model


def top_classes(capsys, *args):
    code, out, err = run(capsys, "predict", SAMPLE, "--top", "3", "--json", *args)
    assert code == 0, err
    return [(entry["index"], entry["label"]) for entry in json.loads(out)[0]["top"]]


def test_predict_uses_the_model_class_names_and_labels_file(shapes_model, capsys):
    import numpy as np

    import vit_zoo

    folder, model = shapes_model
    logits = np.asarray(model(vit_zoo.preprocess([SAMPLE], weights=model)))[0]
    order = [int(i) for i in np.argsort(-logits)]
    assert top_classes(capsys, "--weights", folder / "model.keras") == \
        [(i, ("circle", "square", "ring")[i]) for i in order]
    assert top_classes(capsys, "--weights", folder / "model.keras", "--labels", folder / "labels.txt") == \
        [(i, ("rond", "carré", "anneau")[i]) for i in order]
    (folder / "two.txt").write_text("a\nb\n")
    code, _, err = run(capsys, "predict", SAMPLE, "--weights", folder / "model.keras", "--labels", folder / "two.txt")
    assert code == 1 and err.strip() == (
        f"vit-zoo predict: error: labels file '{folder / 'two.txt'}' has 2 class names (one per line), but the "
        f"model's head has 3 classes; give one name per class, in class-index order")


def test_predict_with_the_exported_model_same_classes(shapes_model, tmp_path, capsys):
    folder, _ = shapes_model
    expected = top_classes(capsys, "--weights", folder / "model.keras")
    for format, name in (("tflite", "m.tflite"), ("saved_model", "m_saved")):
        code, _, err = run(capsys, "export", folder / "model.keras", "--format", format, "-o", tmp_path / name,
                           "--no-verify")
        assert code == 0, err
        assert top_classes(capsys, "--weights", tmp_path / name) == expected
    relabelled = top_classes(capsys, "--weights", tmp_path / "m.tflite", "--labels", folder / "labels.txt")
    assert relabelled == [(i, ("rond", "carré", "anneau")[i]) for i, _ in expected]
    (tmp_path / "images").mkdir()
    shutil.copy(SAMPLE, tmp_path / "images")  # the folder is checked first: it must hold an image
    code, _, err = run(capsys, "embed", tmp_path / "images", "--weights", tmp_path / "m.tflite", "-o", tmp_path / "e.h5")
    assert code == 1 and "is an exported model, which only `vit-zoo predict` runs" in err


def test_attention_names_the_top_class_and_embed_refuses_an_empty_folder(shapes_model, tmp_path, capsys):
    folder, _ = shapes_model
    _, top_name = top_classes(capsys, "--weights", folder / "model.keras")[0]
    code, out, err = run(capsys, "attention", SAMPLE, "--weights", folder / "model.keras", "-o", tmp_path / "a.png")
    assert code == 0, err
    assert out.startswith(f"attention rollout overlay of {SAMPLE} → {tmp_path / 'a.png'} (top class: {top_name}, ")
    (tmp_path / "empty").mkdir()
    code, _, err = run(capsys, "embed", tmp_path / "empty", "--weights", folder / "model.keras",
                       "-o", tmp_path / "e.h5")
    assert code == 1 and f"no image files in folder '{tmp_path / 'empty'}'" in err
    assert not (tmp_path / "e.h5").exists()
