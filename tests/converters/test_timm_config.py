"""timm's architecture names take their size names from the variants table (variants.size_group), so a
size is declared once; the refusal of an unknown architecture lists the names read from the same table."""
import re

import pytest

from vit_zoo.converters import timm_config
from vit_zoo.converters.errors import UnsupportedLayoutError
from vit_zoo.model import variants


def test_size_group_reads_the_table():
    assert variants.size_group("deit") == "(?P<size>tiny|small|base)"
    assert variants.size_group("vit") == f"(?P<size>{'|'.join(variants.SIZES)})"
    assert variants.size_group("vit", only=("base",)) == "(?P<size>base)"
    with pytest.raises(ValueError, match=r"sizes \['so400m'\] are not sizes of vit"):
        variants.size_group("vit", only=("so400m",))


def test_every_architecture_names_sizes_of_its_family():
    for pattern, (family, _) in timm_config.ARCHITECTURES.items():
        sizes = re.search(r"\(\?P<size>([^)]*)\)", pattern)[1].split("|")
        assert set(sizes) <= set(variants.FAMILIES[family].sizes), pattern
    families = {family for family, _ in timm_config.ARCHITECTURES.values()}
    for family in families - {"vit"}:  # a family's timm names cover its whole size table
        assert any(variants.size_group(family) in pattern for pattern, (found, _) in
                   timm_config.ARCHITECTURES.items() if found == family), family


@pytest.mark.parametrize("name, family, size", [("vit_giant_patch14_224", "vit", "giant"),
                                                ("deit3_medium_patch16_224", "deit3", "medium"),
                                                ("vit_so400m_patch14_siglip_384", "siglip", "so400m"),
                                                ("vit_gigantic_patch14_clip_224", "clip", "gigantic")])
def test_architecture_sizes(name, family, size):
    assert timm_config.architecture({"architecture": name}, "config.json")[:2] == (family, size)


def test_unknown_architecture_lists_the_known_names():
    assert "deit3_{small,base,large,huge,medium}_patch{14,16}_{224,384}" in timm_config.KNOWN_NAMES
    assert "vit_{base,large,huge,giant,gigantic}_patch{14,16,32}_clip[_quickgelu]_{image}" in timm_config.KNOWN_NAMES
    with pytest.raises(UnsupportedLayoutError, match=re.escape(f"known: {timm_config.KNOWN_NAMES})")):
        timm_config.architecture({"architecture": "vit_base_patch16_rpn_224"}, "config.json")
