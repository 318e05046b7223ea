"""The checkpoint-format registry (vit_zoo.model.checkpoint_formats) is the one list of format names: the
converters record exactly its names, the manifest and provenance refuse any other, naming the known ones."""
import pytest

from vit_zoo.converters import formats as format_modules, recorded_formats
from vit_zoo.model import checkpoint_formats
from vit_zoo.model.identity import Provenance
from vit_zoo.weights import hub
from vit_zoo.weights.manifest_schema import validate_entry


def test_registry_is_what_the_converters_record():
    # a new converter's format must be declared in the registry, and a declared format must have a converter
    assert set(checkpoint_formats.FORMATS) == recorded_formats() | {checkpoint_formats.BUILT}
    assert all(module.NAME in checkpoint_formats.FORMATS for module in format_modules())


def test_each_name_is_declared_once_with_a_description():
    assert len(set(checkpoint_formats.FORMATS)) == len(checkpoint_formats.FORMATS)
    assert set(checkpoint_formats.DESCRIPTIONS) == set(checkpoint_formats.FORMATS)
    assert all(description.strip() for description in checkpoint_formats.DESCRIPTIONS.values())


def test_manifest_and_hub_formats_come_from_the_registry():
    manifest = set(checkpoint_formats.MANIFEST_FORMATS)
    assert manifest == set(checkpoint_formats.URL_FORMATS) | set(checkpoint_formats.HUB_FORMATS)
    assert manifest <= recorded_formats()
    assert not set(checkpoint_formats.URL_FORMATS) & set(checkpoint_formats.HUB_FORMATS)
    assert set(hub.OPTIONAL_FILES) <= set(checkpoint_formats.HUB_FORMATS)


def test_an_unknown_format_is_refused_naming_the_known_ones():
    with pytest.raises(ValueError) as error:
        Provenance(format="onnx")
    message = str(error.value)
    assert message.startswith("provenance format must be one of") and "got 'onnx'" in message
    assert all(repr(name) in message for name in checkpoint_formats.FORMATS)
    _, problems = validate_entry({"format": "keras"})
    format_problem = next(problem for problem in problems if "field 'format'" in problem)
    assert all(name in format_problem for name in checkpoint_formats.MANIFEST_FORMATS)
    assert checkpoint_formats.check_format("timm") == "timm"
