"""The node library as a new user meets it: one id prefix, one category tree, a description on every node, and
the words users search for ("expression", "inpaint face", ...) in display names, which the frontend's node search
reads (it matches on the id and the display name only)."""
from __future__ import annotations

import pytest

SEARCH_WORDS = ("expression", "pose", "smile", "head turn", "inpaint face", "landmarks")
CATEGORIES = {"face edit/face", "face edit/landmarks", "face edit/lato", "face edit/ca-edit", "face edit/measure"}


@pytest.fixture(scope="module")
def catalogue():
    """The pack's nodes package under its own name: ComfyUI's `nodes` module may own that name in this process."""
    import importlib.util
    import sys

    from scripts.comfy_server import PACK_DIR
    name = "face_edit_node_catalogue"
    spec = importlib.util.spec_from_file_location(name, PACK_DIR / "nodes" / "__init__.py",
                                                  submodule_search_locations=[str(PACK_DIR / "nodes")])
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module.NODE_CLASS_MAPPINGS, module.NODE_DISPLAY_NAME_MAPPINGS


def test_one_prefix_and_one_category_tree(catalogue):
    classes, _ = catalogue
    assert all(node_id.startswith("FaceEdit") for node_id in classes), sorted(classes)
    assert {cls.CATEGORY for cls in classes.values()} <= CATEGORIES


@pytest.mark.parametrize("word", SEARCH_WORDS)
def test_search_words_find_a_node(catalogue, word):
    _, names = catalogue
    assert any(word in name.lower() for name in names.values()), word


def test_lato_and_caedit_nodes_describe_themselves_and_their_outputs(catalogue):
    classes, _ = catalogue
    for node_id, cls in classes.items():
        if "LaTo" in node_id or cls.CATEGORY == "face edit/ca-edit" or node_id in (
                "FaceEditLandmarkEditor", "FaceEditExpressionTransfer"):
            assert len(getattr(cls, "DESCRIPTION", "")) > 40, node_id
