"""The HTML report: its pieces, and the demo's report opened in headless Chromium."""

from __future__ import annotations

import json
import os
import re

import numpy as np
import pytest

from deepclust.report import (
    DEFAULT_SECTIONS,
    ReportContext,
    Section,
    load_run,
    render_report,
    write_report,
)
from deepclust.report.browser import body_attributes, dump_dom, find_chromium
from deepclust.report.data import cluster_order, cluster_summaries, store_images
from deepclust.report.images import sprite_sheet, thumbnail, tile_size_for
from deepclust.report.template import render

ALL_SECTIONS = ["overview", "pipelines", "scores", "sizes", "embedding", "confusion", "galleries"]


def _chromium_or_skip() -> str:
    exe = find_chromium()
    if exe is None:
        if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
            pytest.fail("chromium is required in CI (apt-get install chromium; "
                        "scripts/setup.sh installs it when run as root)")
        pytest.skip("chromium not installed (apt-get install chromium) - browser test skipped")
    return exe


# --------------------------------------------------------------------------- thumbnails


def test_tile_size_enlarges_small_images_by_whole_factors():
    assert tile_size_for((8, 8)) == 64
    assert tile_size_for((28, 28)) == 56
    assert tile_size_for((64, 40, 3)) == 64
    assert tile_size_for((480, 640, 3)) == 96


def test_thumbnail_is_nearest_neighbour_and_letterboxed():
    img = np.arange(64, dtype=np.uint8).reshape(8, 8)
    tile = thumbnail(img, 64)
    assert tile.shape == (64, 64, 3)
    assert (tile[8:16, 16:24] == img[1, 2]).all()  # each pixel became an 8x8 block
    wide = np.full((10, 40, 3), 200, dtype=np.uint8)
    tile = thumbnail(wide, 40)
    assert (tile[15:25, :] == 200).all() and (tile[0, 0] != 200).all()  # bars above and below
    big = np.zeros((300, 300), dtype=np.uint8)
    assert thumbnail(big, 96).shape == (96, 96, 3)
    assert thumbnail(None, 16).shape == (16, 16, 3)


def test_sprite_sheet_places_each_tile_in_its_box(tmp_path):
    colours = [(255, 0, 0), (0, 255, 0), (0, 0, 255)]
    solid = [np.full((4, 4, 3), c, dtype=np.uint8) for c in colours]
    sheet = sprite_sheet([solid[:2], solid[2:]], 8, gap=2)
    assert sheet.pixels.shape == (8 + 2 + 8, 8 + 2 + 8, 3)
    assert sheet.boxes == [[(0, 0), (10, 0)], [(0, 10)]]
    for (x, y), c in zip([b for row in sheet.boxes for b in row], colours, strict=True):
        assert (sheet.pixels[y : y + 8, x : x + 8] == c).all()
    assert (sheet.pixels[0:8, 8:10] == 255).all()  # the gap
    from PIL import Image

    path = sheet.save(tmp_path / "s.png")
    assert np.array_equal(np.asarray(Image.open(path).convert("RGB")), sheet.pixels)


# --------------------------------------------------------------------------- ordering


def test_hungarian_order_puts_matched_pairs_on_the_diagonal():
    rng = np.random.default_rng(0)
    y = np.repeat(np.arange(4), 50)
    pred = np.array([7, 2, 9, 4])[y]  # class c -> cluster perm[c]
    pred[rng.choice(200, 20, replace=False)] = 5  # an extra cluster, mostly class 0 ...
    pred[:15] = 5  # ... made so
    pred[-3:] = -1  # noise
    order, classes = cluster_order(y, pred)
    assert order == [7, 2, 9, 4, 5, -1]
    assert classes == [0, 1, 2, 3]
    # the diagonal of the ordered table is the matching: no other order of rows beats it
    table = np.array([[np.sum((pred == k) & (y == c)) for c in classes] for k in order[:4]])
    assert np.trace(table) == max(np.trace(table[list(p)]) for p in _perms(4))


def _perms(n):
    from itertools import permutations

    return permutations(range(n))


def test_cluster_order_with_more_classes_than_clusters_puts_unmatched_classes_last():
    y = np.array([0, 0, 1, 1, 2, 2])
    pred = np.array([3, 3, 3, 1, 1, 1])
    # Hungarian: 3 -> 0, 1 -> 2; class 1 is unmatched and comes last
    assert cluster_order(y, pred) == ([3, 1], [0, 2, 1])


def test_cluster_order_without_labels_is_by_size_with_noise_last():
    pred = np.array([2, 2, 0, -1, 1, 1, 1, -1])
    assert cluster_order(None, pred) == ([1, 2, 0, -1], [])
    assert cluster_order(np.full(8, -1), pred) == ([1, 2, 0, -1], [])


def test_cluster_summaries_majority_purity_and_match():
    y = np.array([0, 0, 0, 1, 1, 1, -1])
    pred = np.array([5, 5, 6, 6, 6, 6, 6])
    s = cluster_summaries(y, pred)
    assert s[5].majority_class == 0 and s[5].purity == 1.0 and s[5].matched_class == 0
    assert s[6].size == 5 and s[6].majority_class == 1 and s[6].purity == 0.75
    assert s[6].top_classes == [(1, 0.75), (0, 0.25)]


# --------------------------------------------------------------------------- sections


def test_sections_are_pluggable_and_a_failing_one_does_not_sink_the_report(tmp_path):
    from deepclust.report.figures import new_figure

    def curve_section(ctx: ReportContext) -> Section:
        fig = new_figure(3, 2)
        fig.add_subplot().plot([0, 1], [0.2, 0.9])
        saved = ctx.figure(fig, "nmi-curve")
        return Section("nmi-curve", "NMI between rounds",
                       render("{{ img }}<p>{{ n }} rounds</p>", img=saved.img("curve"),
                              n=ctx.extra["rounds"]), [saved.link])

    def broken_section(ctx: ReportContext) -> Section:
        raise RuntimeError("boom")

    ctx = ReportContext(tmp_path / "r", title="<custom>", extra={"rounds": 2}, log=lambda m: None)
    page = render_report(ctx, [*DEFAULT_SECTIONS, broken_section, curve_section])
    html = page.read_text()
    manifest = json.loads((page.parent / "report.json").read_text())
    # run sections skip themselves without run data; ours are there, escaped, with files
    assert [s["id"] for s in manifest["sections"]] == ["broken-error", "nmi-curve"]
    assert manifest["sections"][1]["files"] == ["assets/figures/nmi-curve.png"]
    assert (page.parent / "assets/figures/nmi-curve.png").is_file()
    assert 'data-section="nmi-curve"' in html and "2 rounds" in html
    assert "&lt;custom&gt;" in html and "<custom>" not in html
    assert manifest["errors"][0]["error"] == "RuntimeError: boom"
    assert "RuntimeError: boom" in html


def _blobs_npz(path, n_per=40):
    rng = np.random.default_rng(1)
    centres = np.array([[0, 0, 0], [8, 0, 0], [0, 8, 0]], dtype=np.float32)
    y = np.repeat(np.arange(3), n_per)
    X = centres[y] + rng.normal(size=(len(y), 3)).astype(np.float32)
    np.savez(path, X=X, y=y, class_names=np.array(["ant", "bee", "cat"]))


def test_cluster_report_of_a_feature_file_and_its_cached_umap(tmp_path, monkeypatch, capsys):
    from deepclust.cli import main

    _blobs_npz(tmp_path / "f.npz")
    out = tmp_path / "run"
    assert main(["cluster", str(tmp_path / "f.npz"), "--method", "kmeans", "--k", "3",
                 "--out", str(out), "--no-label-free", "--report"]) == 0
    assert "report.html" in capsys.readouterr().out
    page = out / "report" / "report.html"
    html = page.read_text()
    manifest = json.loads((out / "report" / "report.json").read_text())
    assert manifest["errors"] == []
    # every cluster run now writes assignments.parquet: its duplicates and outliers show too
    assert [s["id"] for s in manifest["sections"]] == \
        [s for s in ALL_SECTIONS if s != "pipelines"] + ["duplicates", "outliers"]
    assert "No images are available" in html and "feature file" in html
    assert "bee" in html  # class names reach the page
    assert (out / "umap2d.npy").is_file()

    import deepclust.reduce

    def no_umap(*a, **k):
        raise AssertionError("the cached 2-D UMAP should have been used")

    monkeypatch.setattr(deepclust.reduce, "umap_embedding", no_umap)
    assert main(["report", str(out), "--out", str(tmp_path / "again")]) == 0
    assert (tmp_path / "again" / "assets" / "figures" / "umap.png").is_file()


def test_store_images_resolve_index_paths_against_the_source_root(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq
    from PIL import Image

    root = tmp_path / "pics"
    (root / "a").mkdir(parents=True)
    for i in range(3):
        Image.new("RGB", (20, 10), (i * 100, 0, 0)).save(root / "a" / f"{i}.png")
    store = tmp_path / "store"
    store.mkdir()
    (store / "meta.json").write_text(json.dumps({"source": {"kind": "folder", "root": str(root)}}))
    pq.write_table(pa.table({"id": ["a/0.png", "a/1.png", "a/2.png", "gone.png"],
                             "label": [0, 0, 0, 0],
                             "path": ["a/0.png", str(root / "a/1.png"), "a/2.png", "gone.png"]}),
                   store / "index.parquet")
    images, why = store_images(store)
    assert why is None and len(images) == 4
    assert images.image(1).shape == (10, 20, 3) and images.image(2)[0, 0, 0] == 200
    assert images.image(3) is None  # a missing file is a blank tile, not an error


def test_cluster_report_of_an_embedding_store_shows_its_images(tmp_path):
    from PIL import Image

    from deepclust.cli import main

    rng = np.random.default_rng(0)
    for name, colour in (("red", (220, 40, 40)), ("blue", (40, 60, 220))):
        (tmp_path / "pics" / name).mkdir(parents=True)
        for i in range(6):
            pixels = np.clip(np.array(colour) + rng.normal(0, 20, (12, 18, 3)), 0, 255)
            Image.fromarray(pixels.astype(np.uint8)).save(tmp_path / "pics" / name / f"{i}.png")
    store, out = tmp_path / "store", tmp_path / "run"
    assert main(["embed", str(tmp_path / "pics"), "--encoder", "raw", "--out", str(store),
                 "--no-progress"]) == 0
    assert main(["cluster", str(store), "--method", "kmeans", "--k", "2", "--no-label-free",
                 "--out", str(out), "--report"]) == 0
    manifest = json.loads((out / "report" / "report.json").read_text())
    gallery = next(s for s in manifest["sections"] if s["id"] == "galleries")
    assert len(gallery["files"]) == 2  # one sprite per cluster, read from the image files
    html = (out / "report" / "report.html").read_text()
    assert "No images are available" not in html and "blue" in html


def test_demo_report_needs_out():
    from deepclust.cli import main

    assert main(["demo", "--report"]) == 2


# --------------------------------------------------------------------------- end to end


@pytest.fixture(scope="module")
def demo_run(tmp_path_factory):
    """The digits demo with --report, on pixels only: embedding digits with EfficientNet on
    a CPU takes minutes, and the report does not depend on which features were clustered."""
    import deepclust.embed
    from deepclust.demo import run_demo
    from deepclust.errors import DataNotFoundError

    def no_embeddings(*a, **k):
        raise DataNotFoundError("skipped in the report test")

    out = tmp_path_factory.mktemp("demo")
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(deepclust.embed, "builtin_embeddings", no_embeddings)
        assert run_demo(dataset="digits", out=str(out), as_json=True, report=True) == 0
    return out


def test_demo_rows_name_their_labels_file(demo_run):
    from deepclust.metrics import ami

    run = json.loads((demo_run / "run.json").read_text())
    data = load_run(demo_run, pipeline=3)
    row = next(r for r in run["rows"] if r["rank"] == 3)
    assert data.pipeline["pipeline"] == row["pipeline"]
    assert ami(data.y, data.labels) == pytest.approx(row["ami"])


@pytest.fixture(scope="module")
def chromium() -> str:
    """Chromium's path; requested before ``demo_run`` so a skip costs no demo."""
    return _chromium_or_skip()


def test_demo_report_opens_in_chromium_with_every_section_and_no_broken_image(chromium, demo_run):
    page = demo_run / "report" / "report.html"
    manifest = json.loads((page.parent / "report.json").read_text())
    assert manifest["errors"] == []
    assert [s["id"] for s in manifest["sections"]] == ALL_SECTIONS
    html = page.read_text()
    # self-contained: no URL leaves the folder
    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:|//)""", html)
    assert not re.search(r"url\(\s*['\"]?(https?:|//)", html)
    files = [f for s in manifest["sections"] for f in s["files"]]
    assert all((page.parent / f).is_file() for f in files)

    dom = dump_dom(page)
    attrs = body_attributes(dom)
    assert attrs.get("data-ready") == "true", "the page's self-check did not run"
    assert attrs["data-broken-images"] == "0", f"broken images: {attrs['data-broken-list']}"
    n_clusters = len(set(load_run(demo_run).labels.tolist()))
    assert int(attrs["data-images"]) == 4 + n_clusters  # 4 figures, one sprite per cluster
    for section in ALL_SECTIONS:
        assert f'data-section="{section}"' in dom, section
    assert dom.count('class="gcard"') == n_clusters
    assert "nearest the centre" in dom and "purity" in dom


def test_second_report_reuses_the_umap_and_replaces_old_assets(demo_run, monkeypatch):
    import deepclust.reduce

    monkeypatch.setattr(deepclust.reduce, "umap_embedding",
                        lambda *a, **k: pytest.fail("UMAP recomputed"))
    stale = demo_run / "report" / "assets" / "thumbs" / "cluster-9999.png"
    stale.write_bytes(b"")
    page = write_report(demo_run, pipeline=2, log=lambda m: None)
    assert not stale.exists()
    assert "rank 2" in page.read_text()


def test_class_names_with_dollar_signs_are_drawn_as_written(tmp_path):
    """Names are data, not TeX: "$\\frac{$" once broke the report's figures (mathtext)."""
    from deepclust.report.figures import confusion_figure, save_png

    fig = confusion_figure(np.array([[3, 1], [0, 4]]), [0, 1], ["$\\frac{$ bad", "cost $5"])
    assert save_png(fig, tmp_path / "c.png").stat().st_size > 0
    labels = [t.get_text() for t in fig.axes[0].get_xticklabels()]
    assert labels == ["$\\frac{$ bad", "cost $5"]
