"""Token preparation at Letterboxd and IMDb scale: time and peak memory, beside a plain baseline.

    python experiments/bench_preparation.py generate DIR [--sizes 50000 930000 1860000]
        [--tsv-basics 10000000 --tsv-ratings 1500000]
    flock /tmp/movielab-cpu.lock python experiments/bench_preparation.py measure DIR
        [--sizes ...] [--repeats 3] [--tsv] [--tsv-repeats 1]
    rm -r DIR

`generate` writes the synthetic inputs, deterministically (the same bytes on every machine):
Letterboxd-format movies.csv files shaped like the bundled sample
(movielab/data/samples/letterboxd_sample.csv: quoted multi-line descriptions with doubled quotes,
empty taglines, ratings and descriptions, non-ASCII names and a long tail of rare characters), and
an IMDb title.basics.tsv / title.ratings.tsv pair with the real files' mix of title types.
`measure` needs no lock of its own but should run under the shared one (it is timing).

Each preparation runs in a subprocess of its own, so its peak resident memory (ru_maxrss of the
child) and wall time are its own. For every size the two programs alternate, movielab then the
baseline, for --repeats rounds (the machine is shared: compare them only as ratios within one run);
the table gives medians and the median of the per-round time ratios.
- movielab: `TextDataModule.prepare()` built from conf/data/letterboxd.yaml (or imdb_tsv.yaml) with a
  fresh cache folder, exactly what `python -m movielab.train data=letterboxd data.path=...` runs
  before training; then once more on the filled cache (the second run's load).
- plain: the csv module, the same template, a dict lookup per character into a list of ids, and
  one numpy array written to disk: no split, no train-only vocabulary, no cache.
Figures and what was tried: experiments/bench_preparation.md.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
SAMPLE = REPO / "movielab" / "data" / "samples" / "letterboxd_sample.csv"
TEMPLATE = "The description of the movie named '{title}' is:\n{description}\nEND_OF_MOVIE\n"
HEADER = [
    "movie_id",
    "original_id",
    "name",
    "date",
    "tagline",
    "description",
    "minute",
    "theatrical_release_age_rating",
    "rating",
]
# rare characters (Cyrillic, Greek, CJK, ...): the full dump has descriptions in many languages,
# so its character vocabulary has a long tail, some of it only in the validation split
RARE = "".join(chr(c) for r in ((0x391, 0x3C9), (0x410, 0x44F), (0x4E00, 0x4FFF)) for c in range(*r))


def sample_parts() -> tuple[list[str], list[str], list[str]]:
    with open(SAMPLE, newline="", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    sentences = [
        s.strip().rstrip(".") + "."
        for r in rows
        for s in r["description"].replace("\n", " ").split(". ")
        if s.strip()
    ]
    return [r["name"] for r in rows], [r["tagline"] for r in rows if r["tagline"]], sentences


def write_letterboxd(path: Path, n_rows: int, seed: int = 0) -> None:
    """~340 bytes a row (the full dump: 315 MB for 930k rows), generated in blocks of 10k rows."""
    names, taglines, sentences = sample_parts()
    rng = np.random.default_rng(seed)
    with open(path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(HEADER)
        for start in range(0, n_rows, 10_000):
            n = min(10_000, n_rows - start)
            name_ids = rng.integers(0, len(names), n)
            n_sentences = rng.choice([1, 2, 3], n, p=[0.4, 0.4, 0.2])  # ~270 characters
            sentence_ids = rng.integers(0, len(sentences), (n, 3))
            u = rng.random((n, 6))
            rare = rng.integers(0, len(RARE), (n, 4))
            ratings = rng.integers(5, 50, n) / 10
            years = rng.integers(1900, 2025, n)
            for i in range(n):
                row_id = start + i
                name = names[name_ids[i]] + ("" if u[i, 0] < 0.5 else f" {row_id % 97 + 2}")
                parts = [sentences[j] for j in sentence_ids[i, : n_sentences[i]]]
                separator = "\n" if u[i, 1] < 0.03 else " "  # a few multi-line descriptions
                description = "" if u[i, 2] < 0.02 else separator.join(parts)
                if u[i, 3] < 0.05:  # a word of rare characters
                    description += " " + "".join(RARE[k] for k in rare[i])
                writer.writerow(
                    [
                        row_id,
                        1_000_000 + row_id,
                        name,
                        "" if u[i, 4] < 0.01 else int(years[i]),
                        "" if u[i, 5] < 0.3 else taglines[row_id % len(taglines)],
                        description,
                        90 + row_id % 60,
                        "PG-13",
                        "" if u[i, 5] > 0.9 else f"{ratings[i]:.2f}",
                    ]
                )


# the real title.basics.tsv's mix (2024): mostly TV episodes, ~7% movies
TITLE_TYPES = ["tvEpisode", "short", "movie", "video", "tvSeries", "tvMovie", "tvMiniSeries", "videoGame"]
TYPE_SHARES = [0.75, 0.09, 0.07, 0.025, 0.025, 0.015, 0.01, 0.015]
GENRES = ["Drama", "Comedy", "Documentary", "Talk-Show", "Reality-TV", "Romance", "Family", "News"]


def write_imdb_tsv(folder: Path, n_basics: int, n_ratings: int, seed: int = 0) -> None:
    """title.basics.tsv with `n_basics` rows and title.ratings.tsv with about `n_ratings`: movies are
    rated more often than episodes, as in the real files (~45% vs ~13%)."""
    names, _, _ = sample_parts()
    rng = np.random.default_rng(seed)
    rated_share = n_ratings / n_basics
    movie = TITLE_TYPES.index("movie")
    # P(rated | movie) = 0.45 when it fits; the other types share what is left
    p_movie = min(0.45, rated_share / TYPE_SHARES[movie])
    p_other = (rated_share - p_movie * TYPE_SHARES[movie]) / (1 - TYPE_SHARES[movie])
    with (
        open(folder / "title.basics.tsv", "w", encoding="utf-8", newline="\n") as basics,
        open(folder / "title.ratings.tsv", "w", encoding="utf-8", newline="\n") as ratings,
    ):
        basics.write("tconst\ttitleType\tprimaryTitle\toriginalTitle\tisAdult\tstartYear\tendYear\t"
                     "runtimeMinutes\tgenres\n")  # fmt: skip
        ratings.write("tconst\taverageRating\tnumVotes\n")
        for start in range(0, n_basics, 100_000):
            n = min(100_000, n_basics - start)
            types = rng.choice(len(TITLE_TYPES), n, p=TYPE_SHARES)
            name_ids = rng.integers(0, len(names), n)
            u = rng.random((n, 4))
            years = rng.integers(1890, 2026, n)
            genre_ids = rng.integers(0, len(GENRES), (n, 3))
            n_genres = rng.integers(0, 4, n)
            scores, votes = rng.integers(10, 100, n) / 10, rng.integers(5, 50_000, n)
            basic_lines, rating_lines = [], []
            for i in range(n):
                tconst = f"tt{start + i + 1:07d}"
                kind = types[i]
                title = names[name_ids[i]] if u[i, 0] < 0.5 else f"Episode #{(start + i) % 5000}.{i % 30}"
                genres = ",".join(sorted({GENRES[g] for g in genre_ids[i, : n_genres[i]]})) or "\\N"
                year = "\\N" if u[i, 1] < 0.05 else str(years[i])
                fields = [tconst, TITLE_TYPES[kind], title, title, "0", year, "\\N", str(90 + i % 60), genres]
                basic_lines.append("\t".join(fields) + "\n")
                if u[i, 2] < (p_movie if kind == movie else p_other):
                    rating_lines.append(f"{tconst}\t{scores[i]:.1f}\t{votes[i]}\n")
            basics.write("".join(basic_lines))
            ratings.write("".join(rating_lines))


def letterboxd_file(folder: Path, n_rows: int) -> Path:
    return folder / f"movies_{n_rows}.csv"


# --- the measured programs, each run as `python -c PROGRAM ARGS` -------------------------------------

MOVIELAB = """
import json, sys, time
started = time.perf_counter()
from hydra import compose, initialize_config_dir
from hydra.utils import instantiate
from movielab import CONFIG_DIR
config, path, cache, root = sys.argv[1:5]
with initialize_config_dir(version_base="1.3", config_dir=CONFIG_DIR):
    cfg = compose("train", overrides=[f"data={config}", f"data.path={path}", f"data.cache_dir={cache}",
                                      f"paths.root_dir={root}", f"paths.output_dir={root}/run"])
datamodule = instantiate(cfg.data)
imported = time.perf_counter()
data = datamodule.prepare()
done = time.perf_counter()
print(json.dumps({"prepare_s": done - imported, "import_s": imported - started,
                  "train_tokens": data.stats["train_tokens"], "records": data.stats["records_read"]}))
"""

PLAIN_LETTERBOXD = """
import csv, json, sys, time
started = time.perf_counter()
import numpy as np
path, out = sys.argv[1:3]
imported = time.perf_counter()
template = "The description of the movie named '{title}' is:\\n{description}\\nEND_OF_MOVIE\\n"
stoi, ids = {}, []
with open(path, newline="", encoding="utf-8") as handle:
    rows = csv.reader(handle)
    header = next(rows)
    name, description = header.index("name"), header.index("description")
    for row in rows:
        if len(row) > description and row[name] and row[description]:
            text = template.format(title=row[name], description=row[description])
            ids.extend([stoi.setdefault(c, len(stoi)) for c in text])
np.array(ids, dtype=np.uint16).tofile(out)
done = time.perf_counter()
print(json.dumps({"prepare_s": done - imported, "import_s": imported - started, "train_tokens": len(ids)}))
"""

PLAIN_IMDB = """
import json, sys, time
started = time.perf_counter()
import numpy as np
basics, ratings, out = sys.argv[1:4]
imported = time.perf_counter()
rating = {}
with open(ratings, encoding="utf-8") as handle:
    next(handle)
    for line in handle:
        tconst, score, votes = line.rstrip("\\n").split("\\t")
        rating[tconst] = float(score)
stoi, ids = {}, []
with open(basics, encoding="utf-8") as handle:
    next(handle)
    for line in handle:
        fields = line.rstrip("\\n").split("\\t")
        if fields[1] == "movie" and fields[0] in rating and fields[2] != "\\\\N":
            ids.extend([stoi.setdefault(c, len(stoi)) for c in fields[2] + "<end>"])
np.array(ids, dtype=np.uint16).tofile(out)
done = time.perf_counter()
print(json.dumps({"prepare_s": done - imported, "import_s": imported - started, "train_tokens": len(ids)}))
"""

IMPORTS_ONLY = "from hydra.utils import instantiate; import movielab.data.datamodule"


def run_child(program: str, *args: object, log: Path | None = None) -> dict:
    """Run `program` in a fresh interpreter; its JSON line plus wall time and peak RSS (MB)."""
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    started = time.perf_counter()
    with open(log or os.devnull, "a") as stderr:
        child = subprocess.Popen(
            [sys.executable, "-c", program, *map(str, args)], stdout=subprocess.PIPE, stderr=stderr, env=env
        )
        out = child.stdout.read()
        _, status, usage = os.wait4(child.pid, 0)
    wall = time.perf_counter() - started
    if status != 0:
        raise SystemExit(f"child failed ({status}); see {log}")
    result = json.loads(out.decode().strip().splitlines()[-1]) if out.strip() else {}
    return {**result, "wall_s": wall, "rss_mb": usage.ru_maxrss / 1024}


def median(values: list[float]) -> float:
    return statistics.median(values)


def measure_pair(label: str, movielab: list, plain: list, repeats: int, log: Path) -> dict:
    """`repeats` rounds of: movielab on a fresh cache, movielab again on that cache, the baseline."""
    rows: dict[str, list[dict]] = {"movielab": [], "cached": [], "plain": []}
    for round_number in range(repeats):
        with tempfile.TemporaryDirectory(dir=log.parent) as work:
            cache = Path(work) / "cache"
            rows["movielab"].append(run_child(MOVIELAB, *movielab, cache, work, log=log))
            rows["cached"].append(run_child(MOVIELAB, *movielab, cache, work, log=log))
            rows["plain"].append(run_child(*plain, Path(work) / "plain.bin", log=log))
        figures = {name: (r[-1]["prepare_s"], r[-1]["rss_mb"]) for name, r in rows.items()}
        print(f"  {label} round {round_number + 1}: " + ", ".join(
            f"{name} {s:.1f} s {mb:.0f} MB" for name, (s, mb) in figures.items()), flush=True)  # fmt: skip
    ratios = [m["prepare_s"] / p["prepare_s"] for m, p in zip(rows["movielab"], rows["plain"], strict=True)]
    return {
        "label": label,
        "tokens": rows["movielab"][0]["train_tokens"],
        "plain_tokens": rows["plain"][0]["train_tokens"],
        **{
            f"{name}_{key}": median([r[key] for r in runs])
            for name, runs in rows.items()
            for key in ("prepare_s", "wall_s", "rss_mb")
        },
        "time_ratio": median(ratios),
        "rounds": rows,
    }  # fmt: skip


def print_table(results: list[dict]) -> None:
    print(
        "\n| input | train tokens | movielab s | plain s | movielab / plain | movielab peak RSS MB | "
        "plain peak RSS MB | cached load s (RSS MB) |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for r in results:
        print(
            f"| {r['label']} | {r['tokens']:,} | "
            f"{r['movielab_prepare_s']:.1f} ({r['movielab_wall_s']:.1f} wall) | "
            f"{r['plain_prepare_s']:.1f} ({r['plain_wall_s']:.1f} wall) | {r['time_ratio']:.2f} | "
            f"{r['movielab_rss_mb']:.0f} | {r['plain_rss_mb']:.0f} | "
            f"{r['cached_prepare_s']:.2f} ({r['cached_rss_mb']:.0f}) |"
        )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("step", choices=["generate", "measure"])
    parser.add_argument("folder", type=Path)
    parser.add_argument("--sizes", type=int, nargs="*", default=[50_000, 930_000, 1_860_000])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--tsv", action="store_true", help="measure the IMDb TSV join too (measure)")
    parser.add_argument("--tsv-basics", type=int, default=10_000_000)
    parser.add_argument("--tsv-ratings", type=int, default=1_500_000)
    parser.add_argument("--tsv-repeats", type=int, default=1)
    args = parser.parse_args()
    args.folder.mkdir(parents=True, exist_ok=True)
    if args.step == "generate":
        for n in args.sizes:
            if not letterboxd_file(args.folder, n).exists():
                write_letterboxd(letterboxd_file(args.folder, n), n)
        if args.tsv_basics and not (args.folder / "imdb" / "title.basics.tsv").exists():
            (args.folder / "imdb").mkdir(exist_ok=True)
            write_imdb_tsv(args.folder / "imdb", args.tsv_basics, args.tsv_ratings)
        for path in sorted(args.folder.rglob("*.*sv")):
            print(f"{path.relative_to(args.folder)}: {path.stat().st_size / 1e6:.0f} MB")
        return
    log = args.folder / "children.log"
    imports = run_child(IMPORTS_ONLY)
    print(f"Python {sys.version.split()[0]}, {os.cpu_count()} CPUs; importing the datamodule alone: "
          f"{imports['rss_mb']:.0f} MB peak RSS, {imports['wall_s']:.1f} s")  # fmt: skip
    results = []
    for n in args.sizes:
        path = letterboxd_file(args.folder, n)
        label = f"letterboxd {n:,} rows ({path.stat().st_size / 1e6:.0f} MB)"
        results.append(measure_pair(label, ["letterboxd", path], [PLAIN_LETTERBOXD, path], args.repeats, log))
    if args.tsv:
        basics, ratings = (
            args.folder / "imdb" / "title.basics.tsv",
            args.folder / "imdb" / "title.ratings.tsv",
        )
        label = (
            f"imdb_tsv {args.tsv_basics:,} / {args.tsv_ratings:,} rows ({basics.stat().st_size / 1e6:.0f} MB)"
        )
        results.append(
            measure_pair(label, ["imdb_tsv", basics], [PLAIN_IMDB, basics, ratings], args.tsv_repeats, log)
        )
    print_table(results)
    (args.folder / "results.json").write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
