"""Regenerate the gallery: docs/gallery/*.png and docs/gallery.md (run: python docs/make_gallery.py).

Each entry stylises a bundled example with the settings shown, puts content | style | result side by side,
and scores the result with styletx.metrics (backbone-free scores). The backbone each picture was made with
is written beside it: without ImageNet VGG19 weights, `auto` falls back to the weight-free backbone.
"""

from __future__ import annotations

import argparse
import datetime
import json
import platform
import warnings
from pathlib import Path

import torch
from PIL import Image, ImageDraw

import styletx
from styletx import metrics
from styletx.image import load_image, resize_longest

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "examples"
OUT = Path(__file__).resolve().parent / "gallery"

ENTRIES = [
    ("cat-swirls", "cat.jpg", "swirls.jpg", {}),
    ("astronaut-mosaic", "astronaut.jpg", "mosaic.jpg", {}),
    ("cat-mosaic-luminance", "cat.jpg", "mosaic.jpg", {"preserve_color": "luminance"}),
    ("astronaut-swirls-strong", "astronaut.jpg", "swirls.jpg", {"style_weight": 1000.0}),
]
BASE = {"size": 256, "iterations": 100, "seed": 0}


def strip(content: Path, style: Path, result: Image.Image, height: int = 240) -> Image.Image:
    """content | style | result, each scaled to ``height`` px, with a small label under each."""
    tiles = []
    for img in (Image.open(content).convert("RGB"), Image.open(style).convert("RGB"), result):
        w = round(img.width * height / img.height)
        tiles.append(img.resize((w, height), Image.Resampling.LANCZOS))
    sheet = Image.new("RGB", (sum(t.width for t in tiles) + 8 * 2, height + 18), "white")
    x = 0
    draw = ImageDraw.Draw(sheet)
    for tile, label in zip(tiles, ("content", "style", "result")):
        sheet.paste(tile, (x, 0))
        draw.text((x + 4, height + 3), label, fill=(40, 40, 40))
        x += tile.width + 8
    return sheet


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--only", nargs="*", help="names of entries to regenerate")
    args = parser.parse_args()
    OUT.mkdir(exist_ok=True)
    rows = []
    for name, content_name, style_name, extra in ENTRIES:
        if args.only and name not in args.only:
            continue
        content, style = EXAMPLES / content_name, EXAMPLES / style_name
        settings = {**BASE, **extra}
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            result = styletx.stylize(content, style, **settings)
        rec = result.record
        content_t = resize_longest(load_image(content).tensor, BASE["size"])
        scores = metrics.score(result.image, content_t, style)
        baseline = metrics.score(content_t, content_t, style)  # the untouched content, for comparison
        strip(content, style, result.image).save(OUT / f"{name}.png")
        rows.append({
            "name": name, "content": content_name, "style": style_name, "settings": settings,
            "backbone": rec.backbone.get("backbone"), "weights": rec.backbone.get("weights"),
            "steps": rec.steps, "seconds": round(rec.seconds, 1), "device": rec.device,
            "precision": rec.precision, "scores": scores, "content_scores": baseline,
        })
        print(name, json.dumps(scores))
    (OUT / "gallery.json").write_text(json.dumps(rows, indent=1, sort_keys=True))
    write_markdown(rows)


def write_markdown(rows: list) -> None:
    lines = [
        "# Gallery",
        "",
        f"Made by `python docs/make_gallery.py` on {datetime.date.today().isoformat()} "
        f"({platform.machine()} CPU, {torch.get_num_threads()} threads, torch {torch.__version__}, "
        f"styletx {styletx.__version__}).",
        "",
        "**Backbone:** every picture below names the backbone it was made with. Where it says `random`, it was made",
        "with the weight-free backbone (no ImageNet VGG19 weights were available on the machine that made it);",
        "results with ImageNet VGG19 are sharper and follow the style more closely. See [backbones.md](backbones.md).",
        "",
        "Scores (`styletx/metrics.py`, no neural network): `content_ssim` higher = more of the content's structure",
        "kept; `color_distance` and `texture_distance` lower = closer to the style. The *content* column scores the",
        "untouched content image against the same style, as the starting point.",
        "",
    ]
    for row in rows:
        s, c = row["scores"], row["content_scores"]
        settings = " ".join(f"--{k.replace('_', '-')} {v}" for k, v in row["settings"].items())
        lines += [
            f"## {row['name']}",
            "",
            f"![{row['name']}](gallery/{row['name']}.png)",
            "",
            f"`styletx run examples/{row['content']} examples/{row['style']} {settings}`  ",
            f"backbone **{row['backbone']}** ({row['weights']}), {row['steps']} steps in {row['seconds']} s on "
            f"{row['device']} ({row['precision']})",
            "",
            "| score | content image | result |",
            "| --- | --- | --- |",
            f"| content_ssim | {c['content_ssim']:.3f} | {s['content_ssim']:.3f} |",
            f"| color_distance | {c['color_distance']:.3f} | {s['color_distance']:.3f} |",
            f"| texture_distance | {c['texture_distance']:.3f} | {s['texture_distance']:.3f} |",
            "",
        ]
    (Path(__file__).resolve().parent / "gallery.md").write_text("\n".join(lines))


if __name__ == "__main__":
    main()
