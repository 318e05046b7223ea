"""Issue 17: the command line as a new user meets it. Each test reproduces one of the issue's points (the
number in its name); fresh processes where signals, start-up output or warnings matter."""
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
import warnings

import numpy as np
import pytest

from vit_zoo import cli

SAMPLES = os.path.join(os.path.dirname(__file__), "..", "..", "samples")
SAMPLE = os.path.join(SAMPLES, "grace_hopper.jpg")


def run(capsys, *args):
    code = cli.main([str(arg) for arg in args])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def usage_error(capsys, *args):
    with pytest.raises(SystemExit) as exit_info:
        cli.main([str(arg) for arg in args])
    return exit_info.value.code, capsys.readouterr().err


def command_line():
    script = shutil.which("vit-zoo", path=os.path.dirname(sys.executable))
    return [script] if script else [sys.executable, "-m", "vit_zoo.cli"]


def fresh_env(tmp_path, **extra):
    env = {key: value for key, value in os.environ.items() if key != "TF_CPP_MIN_LOG_LEVEL"}
    env.update(VIT_ZOO_HOME=str(tmp_path / "home"), VIT_ZOO_OFFLINE="1", **extra)
    return env


@pytest.fixture(scope="module")
def fruit(tmp_path_factory):
    """Three class folders of 12 small images each."""
    from finetune_helpers import write_folder

    return write_folder(tmp_path_factory.mktemp("fruit") / "fruit", counts=(12, 12, 12), size=(40, 40))


@pytest.fixture(scope="module")
def shapes_model(tmp_path_factory):
    """A tiny 3-class model saved as .keras and as .weights.h5."""
    import vit_zoo
    from conftest import tiny_config
    from vit_zoo.model.identity import Identity

    folder = tmp_path_factory.mktemp("model")
    config = tiny_config(num_classes=3, image_size=40)
    model = vit_zoo.build(config, identity=Identity(config, labels=("class_0", "class_1", "class_2")))
    model.save(folder / "model.keras")
    model.save_weights(folder / "run.weights.h5")
    return folder, model


# ---------------------------------------------------------------------------------------------- point 1
def _as_in_a_terminal():
    """The child's Ctrl-C as a terminal's foreground job gets it: a suite started in the background of a
    non-interactive shell (``cmd &``) inherits SIGINT ignored, and Python then never installs its handler."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def test_1_finetune_prints_its_plan_first_and_answers_ctrl_c_within_seconds(fruit, tmp_path):
    process = subprocess.Popen([*command_line(), "finetune", str(fruit), "--image-size", "32", "--steps", "100000",
                                "--output-dir", str(tmp_path / "run")], stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True, env=fresh_env(tmp_path), cwd=tmp_path,
                               preexec_fn=_as_in_a_terminal)
    try:
        first = process.stdout.readline()
        assert first.startswith("plan: vit-tiny-16 at 32x32 px, 3 classes | batch 4 | 100000 steps = "), first
        assert "memory about " in first and "GiB available | recipe auto" in first
        while not process.stdout.readline().startswith("step "):  # training is under way
            assert process.poll() is None, process.stderr.read()
        # drain both pipes from here on, so a full pipe buffer can never hold the child up after the signal
        errors = []
        drains = [threading.Thread(target=lambda: process.stdout.read(), daemon=True),
                  threading.Thread(target=lambda: errors.append(process.stderr.read()), daemon=True)]
        for drain in drains:
            drain.start()
        process.send_signal(signal.SIGINT)
        started = time.time()
        code = process.wait(timeout=30)
        assert time.time() - started < 10
        for drain in drains:
            drain.join(timeout=10)
    finally:
        process.kill()
    assert code == 130
    assert errors[0].splitlines()[-1] == "vit-zoo finetune: interrupted"


def test_1_an_explicit_batch_that_does_not_fit_is_refused_before_training(fruit, tmp_path, capsys):
    from vit_zoo import ViTConfig, count_parameters
    from vit_zoo.train.finetuning import finetune
    from vit_zoo.train.plan import estimate_memory

    config = ViTConfig.from_name("vit-tiny-16", image_size=32, num_classes=3)
    estimate = estimate_memory(config, count_parameters(config))
    room_for_ten = int((estimate.fixed + 10.5 * estimate.per_image) / 0.8)
    with pytest.raises(MemoryError, match=r"^batch_size=16 needs about 1\.1 GiB at 32x32 px, .*; pass batch_size=8, "
                                          r"or grad_accumulation=2 to keep 16 images per step$"):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            finetune(fruit, "vit-tiny-16", image_size=32, batch_size=16, memory=room_for_ten,
                     output_dir=tmp_path / "run", progress=False)
    assert not (tmp_path / "run").exists()


# ---------------------------------------------------------------------------------------------- point 2
def test_2_exports_are_named_after_their_input_and_do_not_shadow_a_model_name(shapes_model, tmp_path, capsys,
                                                                               monkeypatch, fruit):
    from vit_zoo.exporting.formats import default_output

    assert [str(default_output(source, format)) for source, format in
            (("demo/model.keras", "saved_model"), ("run.weights.h5", "tflite"), ("demo/model.keras", "onnx"),
             ("vit-tiny-16:augreg", "keras"), ("hf/vit-base/", "saved_model"))] == \
        ["model_savedmodel", "run.tflite", "model.onnx", "vit-tiny-16.augreg.keras", "vit-base_savedmodel"]
    folder, _ = shapes_model
    monkeypatch.chdir(tmp_path)
    code, out, err = run(capsys, "export", folder / "model.keras", "--no-verify")
    assert code == 0, err
    assert json.loads(out)["path"] == "model_savedmodel"
    assert (tmp_path / "model_savedmodel" / "saved_model.pb").is_file()
    (tmp_path / "vit-tiny-16").mkdir()  # a stray folder named like the default model
    code, _, err = run(capsys, "finetune", fruit, "--image-size", "32", "--steps", "1", "--quiet")
    assert code == 1
    assert err == (f"vit-zoo finetune: error: model 'vit-tiny-16' is both a model name and a folder in the "
                   f"current folder ('{tmp_path / 'vit-tiny-16'}'); pass './vit-tiny-16' to start from the "
                   f"folder, or rename or move the folder to use the model name\n")


# ---------------------------------------------------------------------------------------------- point 3
def test_3_predict_checks_its_images_before_any_download(tmp_path, monkeypatch, capsys):
    import vit_zoo

    def no_download(*args, **kwargs):
        raise AssertionError("the model was loaded before the inputs were checked")
    monkeypatch.setattr(vit_zoo, "load", no_download)
    monkeypatch.setenv("VIT_ZOO_HOME", str(tmp_path))
    assert run(capsys, "predict", tmp_path / "missing.jpg") == \
        (1, "", f"vit-zoo predict: error: image file not found: '{tmp_path / 'missing.jpg'}'\n")
    assert run(capsys, "attention", tmp_path / "missing.jpg", "-o", tmp_path / "a.png")[0] == 1
    code, _, err = run(capsys, "evaluate", tmp_path / "nowhere")
    assert code == 1 and "evaluation data not found" in err
    code, _, err = run(capsys, "embed", tmp_path, "-o", tmp_path / "e.h5")
    assert code == 1 and f"no image files in folder '{tmp_path}'" in err
    assert list(tmp_path.iterdir()) == []  # nothing downloaded, nothing written


# ---------------------------------------------------------------------------------------------- point 4
def test_4_every_flag_of_every_command_has_help_with_its_default():
    import argparse

    parser = cli.build_parser()
    for name, sub in cli.subparsers(parser).items():
        text = sub.format_help()
        for action in sub._actions:
            if isinstance(action, argparse._HelpAction):
                continue
            assert action.help, f"{name} {action.option_strings or action.dest} has no help"
            shown = action.default is None or action.default is False or action.default == argparse.SUPPRESS
            if action.option_strings and not shown:
                assert f"(default: {action.default})" in " ".join(text.split()), \
                    f"{name} {action.option_strings}: default {action.default!r} not shown"
            if action.option_strings and action.default is None and not action.required \
                    and action.nargs != 0:
                assert "default" in action.help, f"{name} {action.option_strings}: what does no value mean?"
    finetune_help = " ".join(cli.subparsers(parser)["finetune"].format_help().split())
    for expected in ("--learning-rate LEARNING_RATE peak learning rate, reached after the warm-up, then cosine "
                     "decay to 0 (default: 0.01)", "--recipe {auto,paper}", "--batch-size BATCH_SIZE images per "
                     "optimizer step (default: what --recipe picks"):
        assert expected in finetune_help
    export_help = " ".join(cli.subparsers(parser)["export"].format_help().split())
    assert "-o OUTPUT, --output OUTPUT output file, or folder for saved_model (default: named after MODEL" in export_help
    assert ".weights.h5, .keras" in " ".join(cli.subparsers(parser)["convert"].format_help().split())


def test_4_the_command_line_defaults_are_the_library_defaults():
    import inspect

    from vit_zoo.cli.train import FINETUNE_OPTIONS
    from vit_zoo.train.finetuning import finetune

    defaults = {name: p.default for name, p in inspect.signature(finetune).parameters.items()}
    args = cli.build_parser().parse_args(["finetune", "data"])
    for option in FINETUNE_OPTIONS:
        given = getattr(args, option)
        assert given is None or given == defaults[option], (option, given, defaults[option])


# ---------------------------------------------------------------------------------------------- point 5
def test_5_evaluate_and_predict_skip_an_unreadable_image_with_a_count_strict_stops(shapes_model, tmp_path, capsys):
    folder, _ = shapes_model
    data = tmp_path / "data"
    for name in ("class_0", "class_1"):
        (data / name).mkdir(parents=True)
        shutil.copy(SAMPLE, data / name / "a.jpg")
    (data / "class_1" / "broken.jpg").write_bytes(open(SAMPLE, "rb").read()[:300])
    code, out, err = run(capsys, "evaluate", data, "--weights", folder / "model.keras", "--quiet")
    assert code == 0, err
    assert err.startswith(f"vit-zoo evaluate: warning: skipped 1 unreadable image(s) of 3; scored 2:\n  "
                          f"{data / 'class_1' / 'broken.jpg'}: cannot decode")
    assert " at 40x40 px: 2 images scored (1 unreadable skipped), " in out.splitlines()[0]
    code, _, err = run(capsys, "evaluate", data, "--weights", folder / "model.keras", "--quiet", "--strict")
    assert code == 1 and "broken.jpg" in err
    images = [SAMPLE, data / "class_1" / "broken.jpg", SAMPLE]
    code, out, err = run(capsys, "predict", *images, "--weights", folder / "model.keras", "--json", "--top", "2")
    assert code == 0, err
    assert [entry["image"] for entry in json.loads(out)] == [SAMPLE, SAMPLE]
    assert err.startswith("vit-zoo predict: warning: skipped 1 unreadable image(s) of 3; classified 2:")
    assert run(capsys, "predict", *images, "--weights", folder / "model.keras", "--top", "2", "--strict")[0] == 1


# ---------------------------------------------------------------------------------------------- point 6
def test_6_export_takes_every_checkpoint_weights_takes(shapes_model, tmp_path, capsys, monkeypatch):
    import keras

    folder, model = shapes_model
    monkeypatch.chdir(tmp_path)
    code, out, err = run(capsys, "export", folder / "run.weights.h5", "--format", "keras")
    assert code == 0, err
    assert json.loads(out)["path"] == "run.keras"
    images = np.random.default_rng(0).uniform(0, 255, (1, 40, 40, 3)).astype("float32")
    np.testing.assert_allclose(np.asarray(keras.models.load_model("run.keras")(images)), np.asarray(model(images)),
                               atol=1e-6)
    code, _, err = run(capsys, "export", "missing.weights.h5")
    assert (code, err) == (1, "vit-zoo export: error: no such checkpoint file or folder: 'missing.weights.h5'\n")
    code, err = usage_error(capsys, "export", folder / "model.keras", "--format", "keras", "-o", folder / "model.keras")
    assert code == 2 and "would overwrite it; pass -o OTHER.keras" in err


# ---------------------------------------------------------------------------------------------- point 7
def test_7_warnings_are_one_line_and_an_unknown_name_warns_nothing(fruit, capsys, monkeypatch):
    from vit_zoo.cli import models

    def noisy(args):
        warnings.warn("something to know", UserWarning)
        warnings.warn("a library's future", FutureWarning)
    monkeypatch.setattr(models, "_command_list", noisy)
    assert run(capsys, "list") == (0, "", "vit-zoo list: warning: something to know\n")
    code, _, err = run(capsys, "finetune", fruit, "--model", "vit-tny-16", "--quiet")
    assert code == 1
    assert err.splitlines() == ["vit-zoo finetune: error: unknown model name 'vit-tny-16'; closest: vit-tiny-16, "
                                "vit-tiny-14, deit-tiny-16. Aliases such as 'ViT-B_16', 'B/16', "
                                "'vit_base_patch16_224', 'google/vit-base-patch16-224', "
                                "'deit_small_distilled_patch16_224', 'vit_small_patch14_reg4_dinov2', "
                                "'facebook/dinov2-base' and 'dinov2_vitb14' are accepted too"]


@pytest.mark.parametrize("backend", ["jax", "torch"])
def test_7_finetune_quiet_prints_no_tensorflow_start_up_lines_on_other_backends(backend, fruit, tmp_path):
    done = subprocess.run([*command_line(), "finetune", str(fruit), "--image-size", "32", "--steps", "1",
                           "--output-dir", str(tmp_path / "run"), "--quiet"], capture_output=True, text=True,
                          env=fresh_env(tmp_path, KERAS_BACKEND=backend), cwd=tmp_path, timeout=400)
    assert done.returncode == 0, done.stderr
    assert [line for line in done.stderr.splitlines() if not line.startswith("vit-zoo finetune: warning: ")] == []
    assert done.stdout.startswith(f"saved {tmp_path / 'run' / 'model.keras'}: val top-1 ")


# ---------------------------------------------------------------------------------------------- point 8
def test_8_cut_short_files_are_incomplete_or_corrupt_files(shapes_model, tmp_path, capsys):
    folder, _ = shapes_model
    code, _, err = run(capsys, "export", folder / "model.keras", "--format", "tflite", "-o", tmp_path / "m.tflite",
                       "--no-verify")
    assert code == 0, err
    cut = {}
    for name in ("m.tflite", "model.keras"):
        source = tmp_path / name if name.endswith(".tflite") else folder / name
        cut[name] = tmp_path / f"cut_{name}"
        cut[name].write_bytes(source.read_bytes()[: source.stat().st_size // 2])
    (tmp_path / "cut.onnx").write_bytes(b"\x08\x07\x12\x07tf2onnx\x1a")  # an ONNX header, then nothing
    for path, kind in ((cut["m.tflite"], ".tflite"), (tmp_path / "cut.onnx", ".onnx"), (cut["model.keras"], ".keras")):
        code, _, err = run(capsys, "predict", SAMPLE, "--weights", path)
        assert code == 1
        assert err.startswith(f"vit-zoo predict: error: incomplete or corrupt {kind} file '{path}'"), err
    code, _, err = run(capsys, "export", cut["model.keras"], "--format", "tflite", "--no-verify")
    assert code == 1 and err.startswith(f"vit-zoo export: error: incomplete or corrupt .keras file "), err


# ---------------------------------------------------------------------------------------------- point 9
def test_9_flags_in_messages_usage_errors_exit_2_with_the_commands_usage(capsys):
    from vit_zoo.cli.wording import as_flags

    assert as_flags("checkpoint 'x.npz' is vit-large-16, not vit-base-16; drop name= or pass \"vit-large-16\"") == \
        "checkpoint 'x.npz' is vit-large-16, not vit-base-16; drop --model or pass \"vit-large-16\""
    assert as_flags("a flat folder needs ground_truth=; pass weights=PATH, keep model.identity.labels=x") == \
        "a flat folder needs --ground-truth; pass --weights PATH, keep model.identity.labels=x"
    code, err = usage_error(capsys, "finetune")
    assert code == 2
    assert err.startswith("usage: vit-zoo finetune ") and err.endswith(
        "vit-zoo finetune: error: DATA is required (an image-folder tree or TFRecord files), or --demo\n")
    code, err = usage_error(capsys, "finetune", "data", "--batchsize", "8")
    assert code == 2 and err.startswith("usage: vit-zoo finetune ")
    assert err.endswith("vit-zoo finetune: error: unrecognized arguments: --batchsize 8\n")


def test_9_finetune_and_evaluate_label_top_k_alike(fruit, tmp_path, capsys):
    code, out, err = run(capsys, "finetune", fruit, "--image-size", "32", "--steps", "2", "--model", "vit-tiny-16",
                         "--output-dir", tmp_path / "run")
    assert code == 0, err
    evaluation = next(line for line in out.splitlines() if line.startswith("eval after step 2: "))
    found = re.match(r"eval after step 2: top-1 (\d+\.\d{3})%  top-3 (\d+\.\d{3})%  loss \d\.\d{4}  \(3 images\)$",
                     evaluation)
    assert found, evaluation
    assert out.splitlines()[-1] == (f"saved {tmp_path / 'run' / 'model.keras'}: val top-1 {found[1]}%  "
                                    f"top-3 {found[2]}%")
    code, out, err = run(capsys, "evaluate", fruit, "--weights", tmp_path / "run" / "model.keras", "--quiet")
    assert code == 0, err
    assert re.match(r"top-1 \d+\.\d{3}%  top-3 \d+\.\d{3}%  loss ", out.splitlines()[1]), out


def test_7_onnx_export_leaks_no_future_warning(shapes_model, tmp_path):
    from vit_zoo.exporting import export

    folder, _ = shapes_model
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        export(folder / "model.keras", "onnx", tmp_path / "m.onnx", verify=False)
    assert [str(w.message) for w in caught if issubclass(w.category, FutureWarning)] == []
    assert (tmp_path / "m.onnx").stat().st_size > 0
