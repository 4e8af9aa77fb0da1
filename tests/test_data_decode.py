"""Robust decoding, the named transforms and the ImageNet-1k class index."""

import importlib.util
import io
import json

import numpy as np
import pytest
from PIL import Image, PngImagePlugin

from bench.data import classes, decode
from bench.data.base import DatasetError


def _png_bytes(im, **kw):
    buf = io.BytesIO()
    im.save(buf, format="PNG", **kw)
    return buf.getvalue()


def test_modes_become_rgb_with_white_behind_transparency(tmp_path):
    gray = Image.fromarray(np.full((6, 8), 100, np.uint8), "L")
    assert np.all(decode.decode(_png_bytes(gray)).getpixel((0, 0)) == (100, 100, 100))

    cmyk = Image.new("CMYK", (8, 6), (0, 255, 255, 0))                 # pure red in CMYK
    cmyk.save(tmp_path / "c.jpg")
    r, g, b = decode.decode(tmp_path / "c.jpg").getpixel((3, 3))
    assert r > 200 and g < 60 and b < 60

    rgba = np.zeros((6, 8, 4), np.uint8)
    rgba[..., 0] = 255                     # red under ...
    rgba[:, :4, 3] = 0                     # ... a transparent left half and an opaque right half
    rgba[:, 4:, 3] = 255
    im = decode.decode(_png_bytes(Image.fromarray(rgba, "RGBA")))
    assert im.mode == "RGB" and im.getpixel((0, 0)) == (255, 255, 255) and im.getpixel((7, 0)) == (255, 0, 0)

    la = np.zeros((4, 4, 2), np.uint8)     # black, half transparent -> mid grey on white
    la[..., 1] = 128
    assert decode.decode(_png_bytes(Image.fromarray(la, "LA"))).getpixel((1, 1))[0] in (127, 128)

    pal = Image.new("P", (4, 4), 1)
    pal.putpalette([0, 0, 0, 0, 0, 255] + [0] * 762)
    assert decode.decode(_png_bytes(pal)).getpixel((2, 2)) == (0, 0, 255)
    pal.info["transparency"] = 1           # palette entry 1 transparent -> white
    assert decode.decode(_png_bytes(pal, transparency=1)).getpixel((2, 2)) == (255, 255, 255)

    i16 = Image.fromarray(np.full((4, 4), 65535, np.uint16))
    assert decode.decode(_png_bytes(i16)).getpixel((0, 0)) == (255, 255, 255)


def test_exif_orientation_is_applied(tmp_path):
    arr = np.zeros((20, 40, 3), np.uint8)  # wide image, red on the left
    arr[:, :20] = (255, 0, 0)
    exif = Image.Exif()
    exif[0x0112] = 6                       # "rotate 90 CW to display"
    Image.fromarray(arr).save(tmp_path / "r.jpg", exif=exif.tobytes(), quality=95)
    im = decode.decode(tmp_path / "r.jpg")
    assert im.size == (20, 40)             # displayed upright: tall
    top, bottom = np.asarray(im)[2, 10], np.asarray(im)[-3, 10]
    assert top[0] > 200 and bottom[0] < 60  # red ends up on top after a 90-degree clockwise turn


def test_png_with_oversized_text_chunk_decodes():
    info = PngImagePlugin.PngInfo()
    info.add_text("comment", "x" * (2 * 1024 * 1024), zip=True)   # over PIL's default 1 MiB chunk limit
    data = _png_bytes(Image.new("RGB", (4, 4), (1, 2, 3)), pnginfo=info)
    assert decode.decode(data).getpixel((0, 0)) == (1, 2, 3)


def test_unreadable_data_raises_decode_error(tmp_path):
    with pytest.raises(decode.DecodeError, match="UnidentifiedImageError"):
        decode.decode(b"not an image")
    buf = io.BytesIO()
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (64, 64, 3), dtype=np.uint8)).save(buf, "JPEG")
    for check_only in (False, True):        # the scan's fast 1/8-scale JPEG decode catches truncation too
        with pytest.raises(decode.DecodeError, match="truncated"):
            decode.decode(buf.getvalue()[: len(buf.getvalue()) // 2], check_only=check_only)
    assert decode.decode(buf.getvalue(), check_only=True).size == (8, 8)
    with pytest.raises(decode.DecodeError):
        decode.decode(tmp_path / "missing.jpg")


def test_paper_squashes_and_adm_centre_crops():
    arr = np.zeros((100, 300, 3), np.uint8)  # 3:1 wide: blue left third, green middle, red right third
    arr[:, :100] = (0, 0, 255)
    arr[:, 100:200] = (0, 255, 0)
    arr[:, 200:] = (255, 0, 0)
    im = Image.fromarray(arr)
    paper = decode.apply(im, "paper", 32)
    adm = decode.apply(im, "adm", 32)
    assert paper.shape == adm.shape == (32, 32, 3) and paper.dtype == adm.dtype == np.uint8
    assert paper[16, 2, 2] > 200 and paper[16, -3, 0] > 200        # all three bands squeezed in
    assert (adm[:, :, 1] > 200).all() and (adm[:, :, [0, 2]] < 60).all()   # only the green centre survives
    np.testing.assert_array_equal(paper, np.asarray(im.resize((32, 32), Image.BICUBIC)))
    big = Image.fromarray(np.random.default_rng(1).integers(0, 255, (700, 530, 3), dtype=np.uint8))
    assert decode.apply(big, "adm", 64).shape == (64, 64, 3)       # BOX halving path (530 >= 2 * 64)
    with pytest.raises(DatasetError, match="options.transform"):
        decode.check_transform("center")


def test_class_index_file_and_name_variants(tmp_path):
    cls = classes.imagenet_classes()
    assert len(cls) == 1000 and cls[0]["synset"] == "n01440764" and cls[999]["synset"] == "n15075141"
    assert classes.class_names()[2] == "great_white_shark"
    assert classes.class_names("readable")[2] == "great white shark"
    assert all(" " not in n for n in classes.class_names())
    assert len(set(classes.synset_to_index())) == 1000
    with pytest.raises(DatasetError, match="class_names"):
        classes.class_names("pretty")
    # the shipped file is exactly what the generator script writes from timm's files
    if importlib.util.find_spec("timm") is None:
        pytest.skip("timm not installed")
    from bench.data import make_class_index
    out = tmp_path / "idx.json"
    make_class_index.main(["--out", str(out)])
    assert json.loads(out.read_text()) == json.loads(classes.INDEX_FILE.read_text())
    assert out.read_text() == classes.INDEX_FILE.read_text()


def test_class_name_normalisation_and_lookup():
    assert classes.normalize("Jack-O'-Lantern") == "jack_o__lantern"
    assert classes.id_for_name("jack_o__lantern") == 607
    assert classes.id_for_name("Great White Shark") == 2
    assert classes.id_for_name("man-eater") == 2                     # a later lemma, unique
    assert classes.id_for_name("crane") is None                      # two classes share it: ambiguous
    assert classes.id_for_name("not_a_class") is None
