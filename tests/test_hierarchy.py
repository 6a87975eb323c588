"""Hierarchies: the ImageNet-21K-P tree format, user parent maps, the Fashion-MNIST tree."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from deepclust.data.hierarchy import (
    Hierarchy,
    builtin_hierarchy,
    load_hierarchy,
    load_imagenet21k_tree,
    load_parent_map,
)
from deepclust.errors import DataNotFoundError, InputError

# A small tree in the format of imagenet21k_miil_tree.pth (Ridnik et al., winter21 release):
# class_list in class-index order (deliberately not sorted), class_tree_list[i] =
# [i, parent, ..., top] as indices, child_2_parent by WordNet id, class_description.
WNIDS = {
    "n00015388": "animal",
    "n01471682": "vertebrate",
    "n02084071": "dog",
    "n02099601": "golden retriever",
    "n02121808": "domestic cat",
    "n03791235": "motor vehicle",
    "n02958343": "car",
    "n03100490": "convertible",
}
PARENT = {
    "n01471682": "n00015388",
    "n02084071": "n01471682",
    "n02099601": "n02084071",
    "n02121808": "n01471682",
    "n02958343": "n03791235",
    "n03100490": "n02958343",
}
CLASS_LIST = ["n02099601", "n00015388", "n02958343", "n02084071", "n03791235", "n01471682",
              "n03100490", "n02121808"]


def _tree_dict() -> dict:
    idx = {w: i for i, w in enumerate(CLASS_LIST)}
    tree_list = []
    for w in CLASS_LIST:
        chain = [idx[w]]
        while w in PARENT:
            w = PARENT[w]
            chain.append(idx[w])
        tree_list.append(chain)
    return {
        "class_list": list(CLASS_LIST),
        "child_2_parent": dict(PARENT),
        "class_tree_list": tree_list,
        "class_description": {w: WNIDS[w] for w in CLASS_LIST},
    }


@pytest.fixture
def tree_file(tmp_path):
    path = tmp_path / "imagenet21k_miil_tree.pth"
    torch.save(_tree_dict(), path)
    return path


def test_imagenet21k_tree_loader_reads_the_published_format(tree_file):
    h = load_imagenet21k_tree(tree_file)
    assert h.classes == CLASS_LIST  # class index order is kept
    assert h.ancestors("n02099601") == ["n02084071", "n01471682", "n00015388"]
    assert h.depth("n02099601") == 3 and h.depth("n00015388") == 0
    assert h.name("n02099601") == "golden retriever"
    assert sorted(h.roots) == ["n00015388", "n03791235"]
    # depth = len(class_tree_list[i]) - 1, as the semantic softmax of the release reads it
    for i, chain in enumerate(_tree_dict()["class_tree_list"]):
        assert h.depth(CLASS_LIST[i]) == len(chain) - 1
    mapping, names = h.coarsen(CLASS_LIST, depth=1)
    coarse = {CLASS_LIST[i]: names[mapping[i]] for i in range(len(CLASS_LIST))}
    assert coarse["n02099601"] == "n01471682"  # golden retriever -> vertebrate
    assert coarse["n03100490"] == "n02958343"  # convertible -> car
    assert coarse["n00015388"] == "n00015388"  # a root keeps itself
    assert load_hierarchy(tree_file).ancestors("n03100490") == ["n02958343", "n03791235"]


def test_imagenet21k_tree_child_2_parent_only_and_legacy_serialisation(tmp_path):
    tree = _tree_dict()
    del tree["class_tree_list"]
    path = tmp_path / "old.pth"
    torch.save(tree, path, _use_new_zipfile_serialization=False)
    h = load_imagenet21k_tree(path)
    for w in CLASS_LIST:
        assert h.parent(w) == PARENT.get(w)


def test_imagenet21k_tree_inconsistent_or_foreign_files_are_refused(tmp_path):
    tree = _tree_dict()
    tree["class_tree_list"][0] = [1, 0]  # must start with its own index
    bad = tmp_path / "bad.pth"
    torch.save(tree, bad)
    with pytest.raises(InputError, match="must start with 0"):
        load_imagenet21k_tree(bad)
    other = tmp_path / "weights.pth"
    torch.save({"state_dict": {"w": torch.zeros(2)}}, other)
    with pytest.raises(InputError, match="not an ImageNet-21K-P semantic tree"):
        load_imagenet21k_tree(other)
    with pytest.raises(DataNotFoundError, match="imagenet21k_miil_tree.pth"):
        load_imagenet21k_tree(tmp_path / "missing.pth")


class _NotData:
    pass


def test_imagenet21k_tree_is_loaded_without_running_pickled_code(tmp_path):
    path = tmp_path / "evil.pth"
    torch.save({"class_list": [_NotData()]}, path)
    with pytest.raises(InputError, match="could not be read"):
        load_imagenet21k_tree(path)


def test_fashion_mnist_hierarchy_groups():
    h = builtin_hierarchy("fashion-mnist")
    mapping, names = h.coarsen(h.classes, depth=0)
    groups: dict[str, set] = {}
    for fine, c in zip(h.classes, mapping, strict=True):
        groups.setdefault(names[c], set()).add(fine)
    assert groups == {
        "tops": {"T-shirt/top", "Pullover", "Coat", "Shirt"},
        "Trouser": {"Trouser"},
        "Dress": {"Dress"},
        "footwear": {"Sandal", "Sneaker", "Ankle boot"},
        "Bag": {"Bag"},
    }
    # one level up gives the same 5 classes; depth 1 keeps the 10 fine ones
    assert h.coarsen(h.classes, level=1)[1] == names
    assert len(h.coarsen(h.classes, depth=1)[1]) == 10


def test_parent_map_json_forms_agree(tmp_path):
    parents = {"cat": "animal", "dog": "animal", "car": "vehicle", "animal": None}
    ancestors = {"cat": ["animal"], "dog": ["animal"], "car": ["vehicle"]}
    a = tmp_path / "a.json"
    a.write_text(json.dumps(parents))
    b = tmp_path / "b.json"
    b.write_text(json.dumps(ancestors))
    c = tmp_path / "c.json"
    c.write_text(json.dumps({"parents": parents, "names": {"cat": "Felis catus"}}))
    for path in (a, b, c):
        h = load_parent_map(path)
        assert h.parent("cat") == "animal" and h.parent("car") == "vehicle"
        assert h.parent("vehicle") is None
    assert load_hierarchy(c).name("cat") == "Felis catus"


def test_parent_map_csv(tmp_path):
    path = tmp_path / "tree.csv"
    path.write_text("child,parent,description\ncat,animal,Felis\nkitten,cat,\nanimal,,\n")
    h = load_hierarchy(path)
    assert h.ancestors("kitten") == ["cat", "animal"]
    assert h.name("cat") == "Felis"
    bad = tmp_path / "bad.csv"
    bad.write_text("child,parent\ncat,animal\ncat,pet\n")
    with pytest.raises(InputError, match="two parents"):
        load_hierarchy(bad)
    noheader = tmp_path / "noheader.csv"
    noheader.write_text("cat,animal\n")
    with pytest.raises(InputError, match="child,parent"):
        load_hierarchy(noheader)


def test_cycles_and_unknown_classes_are_clear_errors():
    with pytest.raises(InputError, match="cycle"):
        Hierarchy({"a": "b", "b": "c", "c": "a"})
    h = Hierarchy({"a": "r", "b": "r"})
    with pytest.raises(InputError, match="'zebra'"):
        h.check_classes(["a", "zebra"])


def test_depth_and_level_differ_on_uneven_trees():
    h = Hierarchy({"leaf": "mid", "mid": "top", "short": "top"})
    assert h.ancestor_at_depth("leaf", 1) == "mid"
    assert h.ancestor_at_level("leaf", 1) == "mid"
    assert h.ancestor_at_depth("short", 1) == "short"  # not deeper than the cut: itself
    assert h.ancestor_at_level("short", 1) == "top"    # one step up
    mapping, names = h.coarsen(["leaf", "short"], level=5)  # stops at the root
    assert names == ["top"] and np.array_equal(mapping, [0, 0])
