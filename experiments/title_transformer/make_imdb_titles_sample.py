"""Writes movielab/data/samples/imdb_titles_sample.csv: ~400 INVENTED movies in the IMDB 5000
column format (movie_title with its trailing non-breaking space, imdb_score, genres, ...).

Titles are composed from word lists written for this project; each kind of title has its own
rating range (cheap monster sequels low, quiet dramas high), so a rating-conditioned model has
something to learn. Titles that happen to equal one in ../shared/data are dropped.

    python experiments/title_transformer/make_imdb_titles_sample.py
"""

from __future__ import annotations

import csv
import random
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
OUT = REPO / "movielab" / "data" / "samples" / "imdb_titles_sample.csv"
SHARED = REPO.parent / "shared" / "data"

NAMES = [
    "Wendell",
    "Marisol",
    "Okonkwo",
    "Tilda",
    "Bartholomew",
    "Ines",
    "Rafferty",
    "Juniper",
    "Casimir",
    "Dottie",
    "Lazlo",
    "Perpetua",
    "Hollis",
    "Agnieszka",
    "Fitz",
    "Oona",
    "Thaddeus",
    "Minnow",
]
PLACES = [
    "Kellerby",
    "Saltmarsh",
    "Port Aubrey",
    "Vintry Lane",
    "the Lower Fens",
    "Castel Morro",
    "Ashgrove",
    "Halloway Bay",
    "the Copper Hills",
    "Nettlefield",
    "Brannock",
    "Little Orme",
]
QUIET_NOUNS = [
    "Lantern",
    "Orchard",
    "Ferryman",
    "Harvest",
    "Lighthouse",
    "Letters",
    "Winter",
    "Tide",
    "Cartographer",
    "Beekeeper",
    "Glassblower",
    "Chorus",
    "Quarry",
    "Bellringer",
    "Ledger",
]
QUIET_ADJ = ["Quiet", "Distant", "Borrowed", "Patient", "Unfinished", "Silent", "Last", "Small", "Gentle"]
MONTHS = ["November", "March", "Late August", "the Dry Season", "Midwinter", "the Long Rains"]
MONSTERS = [
    "Swamp Leech",
    "Mothman",
    "Bonecrawler",
    "Shark Witch",
    "Gravemonger",
    "Slime Queen",
    "Mega Tick",
    "Scarecrow Brides",
    "Fungoid",
    "Ratking",
    "Cave Goblin",
    "Frost Ghoul",
]
SUBTITLES = [
    "Reawakening",
    "The Final Feeding",
    "Blood Harvest",
    "Back from the Pit",
    "Spring Break",
    "Origins",
    "The Reckoning",
    "Hive Mind",
    "In Space",
    "Revenge of the Nest",
]
CODE_WORDS = [
    "Obsidian",
    "Kingfisher",
    "Black Tern",
    "Zero Meridian",
    "Red Ledger",
    "Halcyon",
    "Iron Vesper",
    "Cold Harbor",
    "Paper Tiger",
    "Blind Orbit",
    "Glass Jaw",
    "Night Heron",
]
ACTION_NOUNS = ["Protocol", "Directive", "Extraction", "Contract", "Gambit", "Ultimatum", "Payload"]
RELATIVES = ["Uncle", "Grandma", "Stepdad", "Sister", "Landlord", "Neighbor", "Cousin"]
JOBS = [
    "Ventriloquist",
    "Dog Walker",
    "Astronaut",
    "Wedding Planner",
    "Substitute Teacher",
    "Mime",
    "Lifeguard",
    "Tax Inspector",
    "Clown",
    "Yodeler",
]
SILLY = [
    "Totally Accidental",
    "Very Loud",
    "Slightly Haunted",
    "Overbooked",
    "Extremely Secret",
    "Unlicensed",
    "Forty-Seven",
    "Semi-Professional",
]
SILLY_NOUNS = ["Honeymoon", "Road Trip", "Bake-Off", "Reunion", "Heist", "Vacation", "Wedding", "Talent Show"]
SPACE = ["Europa", "Kepler's Drift", "the Outer Belt", "Station Nine", "the Dark Orbit", "Hyperion Deep"]


PER_KIND = 80


def plural(noun: str) -> str:
    return noun if noun.endswith("s") else noun + "s"


def titles(rng: random.Random) -> list[tuple[str, str, float, float]]:
    """(title, genres, rating mean, rating spread) for each kind of title; titles repeat across
    draws, so `main` keeps the first PER_KIND distinct ones of each kind."""
    made = []
    pick = rng.choice
    for _ in range(400):  # quiet dramas: high ratings
        form = rng.randrange(5)
        title = [
            f"The {pick(QUIET_NOUNS)} of {pick(PLACES)}",
            f"{pick(QUIET_ADJ)} {pick(QUIET_NOUNS)}s",
            f"A {pick(QUIET_NOUNS)} in {pick(MONTHS)}",
            f"{pick(NAMES)}'s {pick(QUIET_NOUNS)}",
            f"The {pick(QUIET_ADJ)} {pick(QUIET_NOUNS)}",
        ][form]
        made.append((title, pick(["Drama", "Drama|Romance", "Drama|History", "Biography|Drama"]), 7.7, 0.5))
    for _ in range(400):  # monster sequels and creature features: low ratings
        form = rng.randrange(5)
        title = [
            f"{pick(MONSTERS)} {rng.randint(2, 6)}: {pick(SUBTITLES)}",
            f"Night of the {pick(MONSTERS)}",
            f"Attack of the {plural(pick(MONSTERS))}",
            f"{pick(MONSTERS)} vs. {pick(MONSTERS)}",
            f"The {pick(MONSTERS)} {pick(['Returns', 'Strikes Back', 'Rises', 'Lives'])}",
        ][form]
        made.append((title, pick(["Horror", "Horror|Sci-Fi", "Horror|Comedy", "Action|Horror"]), 3.6, 0.8))
    for _ in range(400):  # spy and action thrillers: middling
        form = rng.randrange(4)
        title = [
            f"The {pick(CODE_WORDS)} {pick(ACTION_NOUNS)}",
            f"Operation {pick(CODE_WORDS)}",
            f"{pick(CODE_WORDS)} at {pick(PLACES)}",
            f"{pick(CODE_WORDS)} {rng.choice(['II', 'III', '2'])}",
        ][form]
        made.append((title, pick(["Action|Thriller", "Action|Crime|Thriller", "Thriller|Mystery"]), 6.1, 0.6))
    for _ in range(400):  # broad comedies: below middling
        form = rng.randrange(4)
        title = [
            f"My {pick(RELATIVES)} the {pick(JOBS)}",
            f"The {pick(SILLY)} {pick(SILLY_NOUNS)}",
            f"{pick(NAMES)} and the {pick(SILLY)} {pick(SILLY_NOUNS)}",
            f"{pick(SILLY_NOUNS)} with {pick(['the', 'My'])} {pick(RELATIVES)}",
        ][form]
        made.append((title, pick(["Comedy", "Comedy|Romance", "Comedy|Family"]), 5.3, 0.7))
    for _ in range(400):  # science fiction: wide spread
        form = rng.randrange(4)
        title = [
            f"Beyond {pick(SPACE)}",
            f"The {pick(QUIET_NOUNS)} of {pick(SPACE)}",
            f"{pick(SPACE)}: {pick(['First Light', 'Signal', 'Drift', 'Descent', 'Exodus'])}",
            f"Lost on {pick(SPACE)}",
        ][form]
        title = title[0].upper() + title[1:]
        made.append((title, pick(["Sci-Fi", "Adventure|Sci-Fi", "Drama|Sci-Fi", "Mystery|Sci-Fi"]), 6.4, 1.1))
    return made


def real_titles() -> set[str]:
    seen = set()
    for path, column in [
        (SHARED / "imdb" / "movie_metadata.csv", "movie_title"),
        (SHARED / "letterboxd" / "movies.csv", "name"),
        (SHARED / "imdb1000" / "IMDB-Movie-Data.csv", "Title"),
    ]:
        if path.exists():
            with open(path, newline="", encoding="utf-8") as handle:
                seen |= {row[column].strip().casefold() for row in csv.DictReader(handle)}
    return seen


def main() -> None:
    rng = random.Random(20251125)
    taken = real_titles()
    rows, used, per_kind = [], set(), {}
    for title, genres, mean, spread in titles(rng):
        if title.casefold() in used or title.casefold() in taken or per_kind.get(mean, 0) >= PER_KIND:
            continue
        used.add(title.casefold())
        per_kind[mean] = per_kind.get(mean, 0) + 1
        score = min(9.4, max(1.6, round(rng.gauss(mean, spread), 1)))
        rows.append(
            [
                title + "\xa0",  # as in the real file
                rng.randint(1962, 2016),
                genres,
                "USA" if rng.random() < 0.7 else rng.choice(["UK", "Canada", "France", "Australia"]),
                score,
                rng.randint(80, 150),
                int(10 ** rng.uniform(2.5, 5.5)),
                "English",
            ]
        )
    rng.shuffle(rows)
    header = [
        "movie_title",
        "title_year",
        "genres",
        "country",
        "imdb_score",
        "duration",
        "num_voted_users",
        "language",
    ]
    with open(OUT, "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle, lineterminator="\r\n")
        writer.writerow(header)
        writer.writerows(rows)
    print(f"wrote {len(rows)} invented movies to {OUT}")


if __name__ == "__main__":
    main()
