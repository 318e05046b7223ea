"""``describe_mapping`` / ``vit-zoo mapping FORMAT MODEL``: the rows the loader applies, readable one by
one, held to the layout tables of ``tests/layouts.py`` (read off each source's own code)."""
import json

import pytest

import layouts
from conftest import tiny_config
from synth_checkpoints import big_vision_tensors, write_npz
from vit_zoo import cli


@pytest.mark.parametrize("format_name, layout", [("timm", layouts.timm), ("google-npz", layouts.vit_jax),
                                                 ("hf", layouts.hf_torch)])
def test_the_rows_use_every_key_of_the_format_once(format_name, layout):
    from vit_zoo.converters.describe import mapping_rows

    config = tiny_config(num_layers=2)
    rows = mapping_rows(format_name, config)
    assert len({weight for weight, _, _ in rows}) == len(rows)  # each of our weights once
    assert {source for _, source, _ in rows} == {tensor.key for tensor in layout(config)}


def test_rows_name_their_transforms_with_arguments():
    from vit_zoo.converters.describe import mapping_rows

    rows = {weight: (source, transform) for weight, source, transform in mapping_rows("timm", "vit-tiny-16")}
    assert rows["patch_embed/kernel"] == ("patch_embed.proj.weight", "conv_to_keras")
    assert rows["block_11_attn/key_kernel"] == ("blocks.11.attn.qkv.weight",
                                                "fused_qkv_part(index=1, then=split_heads_in(num_heads=3))")
    assert rows["block_00_attn/output_kernel"] == ("blocks.0.attn.proj.weight", "merge_heads_out(num_heads=3)")
    assert rows["head/kernel"] == ("head.weight", "transpose") and rows["head/bias"] == ("head.bias", "as stored")
    assert len(rows) == 4 + 12 * 16 + 4  # stem, 16 variables per block, final norm and head


def test_big_vision_needs_its_checkpoint_and_then_shows_the_position_fix(tmp_path, capsys):
    from vit_zoo.converters.describe import describe_mapping, mapping_rows

    config = tiny_config(num_layers=1)
    with pytest.raises(ValueError, match=r"the big-vision-npz mapping depends on the checkpoint's layout .*"
                                         r"pass a checkpoint of that format \(checkpoint=PATH; --checkpoint PATH\)"):
        mapping_rows("big-vision-npz", config)
    path = write_npz(tmp_path / "bv.npz", big_vision_tensors(config, prefix=""))
    rows = {weight: (source, transform) for weight, source, transform in mapping_rows("big-vision-npz", config, path)}
    assert rows["pos_embed/embeddings"] == ("pos_embedding", "zero_class_position")
    assert {source for source, _ in rows.values()} == {t.key for t in layouts.big_vision(config, prefix="")}
    text = describe_mapping("big-vision-npz", config, str(path))
    assert "  zero_class_position: (1, h*w, D) → (1, 1 + h*w, D): a zero embedding for the class token" in text
    assert text.rstrip().endswith("opt/.*: the optimizer state of a big_vision training checkpoint (not a weight)")
    with pytest.raises(ValueError, match=r"unknown checkpoint format 'jax'; the formats are big-vision-npz, "
                                         r"google-npz, hf, keras, meta-dinov2, open-clip, timm"):
        mapping_rows("jax", config)


def test_the_command_prints_the_table_and_json(capsys):
    assert cli.main(["mapping", "timm", "vit-base-16"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == "timm mapping for vit-base-16 (12 blocks, width 768): 200 rows"
    assert lines[2].split() == ["our", "weight", "source", "key", "transform"]
    assert lines[9].split() == ["block_00_attn/query_kernel", "blocks.0.attn.qkv.weight",
                                "fused_qkv_part(index=0,", "then=split_heads_in(num_heads=12))"]
    assert "  transpose: PyTorch Linear (out, in) → Keras Dense (in, out)." in lines
    assert cli.main(["mapping", "hf", "ViT-B_16", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert rows[0] == {"weight": "patch_embed/kernel", "source": "vit.embeddings.patch_embeddings.projection.weight",
                       "transform": "conv_to_keras"}
    assert cli.main(["mapping", "big-vision-npz", "vit-base-16"]) == 1
    assert "--checkpoint PATH" in capsys.readouterr().err
