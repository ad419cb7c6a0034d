#!/usr/bin/env python3
"""The quality-for-time frontier: style error against whole-process seconds, each way of painting run as a
user runs it (`nst-tf` in a fresh process), on photo x painting pairs, at --size.

    python scripts/frontier.py --photos=boston,chelsea,rocket --paintings=the_scream,shipwreck,seated_nude \\
        --pairs=diagonal --out=docs/frontier.png --json=frontier_tuning.json
    python scripts/frontier.py --photos=a.jpg,b.jpg --paintings=c.jpg,d.jpg --ways=budget15 --pairs=all

Ways: one_pass (`--network=demo`, LiteRT), adapt20 (`--adapt_steps=20`), budgetN (`--budget=N`), default
(the default optimisation). Style error and content error are `nst_tf.evaluate`'s (embedded VGG19
weights, at the output's size). Prints one line per run (per pair, not only means) and plots each way's
mean over the pairs with every pair behind it. Bundled names or paths are accepted.
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # run from a checkout

WAYS = {
    "one_pass": ["--network=demo"],
    "adapt20": ["--network=demo", "--adapt_steps=20"],
    "default": [],
}


def flags_of(way: str):
    if way.startswith("budget"):
        return [f"--budget={way[len('budget') :]}"]
    return WAYS[way]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--photos", default="boston,chelsea,rocket")
    parser.add_argument("--paintings", default="the_scream,shipwreck,seated_nude")
    parser.add_argument("--pairs", choices=("diagonal", "all"), default="diagonal")
    parser.add_argument("--ways", default="one_pass,budget15,budget30,adapt20,default")
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--out", help="the plot (PNG)")
    parser.add_argument("--json", help="the runs, as JSON")
    parser.add_argument("--from_json", help="plot the runs of an earlier --json instead of running")
    args = parser.parse_args()
    if args.from_json:
        with open(args.from_json) as f:
            saved = json.load(f)
        plot(saved["runs"], saved["means"], args.out, saved["size"])
        return 0

    from nst_tf import image_io, metrics

    def path(name):
        return name if os.path.isfile(name) else image_io.example_path(name)

    photos, paintings = [path(p) for p in args.photos.split(",")], [path(p) for p in args.paintings.split(",")]
    pairs = list(zip(photos, paintings)) if args.pairs == "diagonal" else [(c, s) for c in photos for s in paintings]
    command = [os.path.join(os.path.dirname(sys.executable), "nst-tf"), "--weights=embedded", "--noprogress"]
    model = metrics.feature_model("embedded")
    runs, folder = [], tempfile.mkdtemp(prefix="nst_tf-frontier-")
    print(f"{'way':<10}{'photo':<22}{'painting':<26}{'seconds':>8}{'style':>8}{'content':>9}  note", flush=True)
    for content, style in pairs:
        for way in args.ways.split(","):
            out = os.path.join(folder, f"{way}.png")
            start = time.perf_counter()
            done = subprocess.run(
                command
                + [f"--content={content}", f"--style={style}", f"--size={args.size}", f"--output={out}"]
                + flags_of(way),
                capture_output=True,
                text=True,
            )
            seconds = time.perf_counter() - start
            if done.returncode != 0:
                print(f"{way}: failed: {done.stderr.strip()[-300:]}", flush=True)
                continue
            report = metrics.evaluate(out, content, style, model=model)
            note = done.stdout.strip().splitlines()[-1][:90]
            run = dict(way=way, photo=os.path.basename(content), painting=os.path.basename(style), seconds=seconds)
            run.update(style=report["style"]["mean"], content=report["content"]["block4_conv2"], note=note)
            runs.append(run)
            print(
                f"{way:<10}{run['photo']:<22}{run['painting']:<26}{seconds:>8.2f}{run['style']:>8.3f}"
                f"{run['content']:>9.3f}  {note}",
                flush=True,
            )
    ways = sorted({r["way"] for r in runs}, key=lambda w: min(r["seconds"] for r in runs if r["way"] == w))
    print("\nmeans over the pairs:")
    means = {}
    for way in ways:
        mine = [r for r in runs if r["way"] == way]
        means[way] = {k: sum(r[k] for r in mine) / len(mine) for k in ("seconds", "style", "content")}
        means[way]["slowest"] = max(r["seconds"] for r in mine)
        m = means[way]
        print(
            f"{way:<10} seconds {m['seconds']:6.2f} (slowest {m['slowest']:.2f})  style {m['style']:.3f}  content {m['content']:.3f}"
        )
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"size": args.size, "runs": runs, "means": means}, f, indent=1)
    if args.out:
        plot(runs, means, args.out, args.size)
    return 0


def plot(runs, means, out, size) -> None:
    """Each way's runs (small) and mean (large) in one colour; the frontier (the means no other way
    beats in both time and style error) as a line."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ways = sorted(means, key=lambda w: means[w]["seconds"])
    pairs = len({(r["photo"], r["painting"]) for r in runs})
    fig, ax = plt.subplots(figsize=(7, 4.2), dpi=110)
    for k, way in enumerate(ways):
        colour = f"C{k}"
        mine = [r for r in runs if r["way"] == way]
        ax.scatter([r["seconds"] for r in mine], [r["style"] for r in mine], s=14, alpha=0.4, color=colour)
        ax.scatter([means[way]["seconds"]], [means[way]["style"]], s=70, color=colour, edgecolor="k", label=way)
    front, best = [], float("inf")
    for way in ways:  # by time: on the frontier when its error is the lowest so far
        if means[way]["style"] < best:
            front.append(way)
            best = means[way]["style"]
    ax.plot([means[w]["seconds"] for w in front], [means[w]["style"] for w in front], "k-", lw=1, alpha=0.5)
    ax.set_xscale("log")
    ax.set_xlabel("whole process, seconds (log)")
    ax.set_ylabel("style error (lower is better)")
    ax.set_title(f"nst-tf at {size} px, {pairs} pairs: each way's mean, every pair, the frontier")
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(out)
    print(f"wrote {out}")


if __name__ == "__main__":
    sys.exit(main())
