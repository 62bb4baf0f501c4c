# ruff: noqa: E501 (the phrase tables read best one genre to a line)
"""Writes the bundled genre samples: 300 INVENTED movies in the IMDB-1000 format, and the first 120 of
them again in the IMDB 5000, Wikipedia movie-plots and CMU Movie Summary formats.

Every title, plot, name and number is made up here from genre-flavoured phrases written for the
project (nothing is taken from a dataset), so genre-conditioned models and the genre classifier run
out of the box, and a genre's words really do differ from another's. Rerun it to rebuild the sample:

    python experiments/genres/make_genre_sample.py
"""

from __future__ import annotations

import csv
import random
from pathlib import Path

SAMPLES = Path(__file__).resolve().parents[2] / "movielab" / "data" / "samples"
OUT = SAMPLES / "imdb1000_genre_sample.csv"
SMALL = 120  # movies in the other formats' samples
COLUMNS = [
    "Rank", "Title", "Genre", "Description", "Director", "Actors", "Year",
    "Runtime (Minutes)", "Rating", "Votes", "Revenue (Millions)", "Metascore",
]  # fmt: skip

# per genre: who the story is about, what sets it off, the turn it takes, words for titles
HEROES = {
    "Action": ["a retired getaway driver", "a disgraced bodyguard", "an ex-marine turned ferry pilot",
               "a stunt double with a grudge", "a border patrol sniper", "a demolition expert on parole"],
    "Adventure": ["a cartographer's daughter", "two rival treasure hunters", "a ship's cook",
                  "a mountain guide", "a boy with his grandfather's compass", "a balloonist"],
    "Animation": ["a lonely paper crane", "a teapot who wants to sing", "a raccoon night watchman",
                  "a toy robot left in a sandbox", "a family of cloud sheep", "a lighthouse mouse"],
    "Biography": ["a self-taught mathematician from Lagos", "the first woman to swim the strait",
                  "a forgotten jazz arranger", "a village doctor", "a chess prodigy", "an inventor of locks"],
    "Comedy": ["a wedding planner who hates weddings", "two feuding neighbours", "a substitute mime",
               "an accountant on his first holiday", "a failed magician", "three aunts on a road trip"],
    "Crime": ["a pawnbroker", "a night-shift detective", "a forger's apprentice", "a casino cashier",
              "a courier for the harbour syndicate", "an insurance investigator"],
    "Drama": ["a widowed piano teacher", "an estranged son", "a factory foreman", "a hospice nurse",
              "two sisters", "a small-town pastor"],
    "Family": ["a girl and her stubborn goat", "a father of five", "a boy who runs the school paper",
               "a grandmother who builds kites", "twins at summer camp", "a family of bakers"],
    "Fantasy": ["an apprentice bell-maker", "the last dragon keeper", "a witch who lost her name",
                "a knight made of river clay", "a prince cursed to speak only in rhyme", "a mapmaker of dreams"],
    "Horror": ["a young couple", "a night janitor", "a family of four", "a grieving radio host",
               "a group of cave divers", "a babysitter"],
    "Mystery": ["a retired crossword setter", "a village postmistress", "a blind archivist",
                "a hotel concierge", "a ferry captain", "an amateur astronomer"],
    "Romance": ["a florist", "a translator", "two rival bakers", "a wedding singer",
                "a lighthouse keeper", "a librarian on a night train"],
    "Sci-Fi": ["a colony engineer", "a cargo pilot", "an android nanny", "the crew of a mining barge",
               "a time-clerk", "a botanist on a frozen moon"],
    "Thriller": ["a court stenographer", "an air traffic controller", "a locksmith", "a hostage negotiator",
                 "a hotel night manager", "a whistle-blowing chemist"],
    "Western": ["a one-armed sheriff", "a travelling dentist", "a widow with a ranch",
                "a bounty hunter", "a stagecoach driver", "a railroad surveyor"],
    "War": ["a field medic", "a radio operator", "a bomb-disposal sergeant", "a pilot behind enemy lines",
            "a young conscript", "a code-breaker"],
    "Music": ["a busker", "a church organist", "a punk drummer", "a choir of retired miners",
              "a violin maker", "a girl band from a fishing town"],
    "Sport": ["a washed-up boxer", "a women's rugby team", "a hurdler with one good knee",
              "a chess-boxing champion", "a rowing coach", "a goalkeeper"],
}  # fmt: skip
INCIDENTS = {
    "Action": ["must outrun a convoy of armed mercenaries through the city", "is framed for a heist and has one night to clear his name",
               "has to fight through a hijacked train", "takes on a gang that has seized the dam",
               "races across three borders with a stolen drive", "is forced into one last explosive job"],
    "Adventure": ["sets out to find a lost city in the jungle", "follows an old map across the desert",
                  "sails to an island that appears on no chart", "climbs the mountain nobody has come back from",
                  "crosses the frozen sea on a dog sled", "searches for a sunken galleon"],
    "Animation": ["wants to see the ocean just once", "must save the toy shop before it closes",
                  "learns to fly with the help of a grumpy owl", "sets off to return a lost star to the sky",
                  "dreams of joining the circus", "befriends a thundercloud"],
    "Biography": ["rises from poverty to change her field", "fights the establishment for recognition",
                  "keeps a secret diary through the war years", "builds a career against every expectation",
                  "spends forty years on one invention", "is finally honoured late in life"],
    "Comedy": ["accidentally books the wrong holiday", "pretends to be a celebrity chef for a week",
               "has to plan a funeral and a wedding on the same day", "swaps houses with a stranger",
               "enters a dance contest to win back a goat", "inherits a failing clown school"],
    "Crime": ["plans a robbery of the city's oldest bank", "gets tangled in a money-laundering scheme",
              "witnesses a murder at the docks", "is blackmailed by a corrupt police captain",
              "runs a smuggling ring out of a laundromat", "tracks a serial arsonist"],
    "Drama": ["returns home to care for a dying father", "struggles to keep the family farm",
              "must decide whether to forgive an old betrayal", "faces the end of a long marriage",
              "tries to rebuild a life after prison", "loses a job after twenty years"],
    "Family": ["enters the county fair", "has to find a home for a litter of puppies",
               "saves the town's old carousel", "learns to share a room with a new stepbrother",
               "goes on the first camping trip together", "helps a lost penguin get back to the zoo"],
    "Fantasy": ["must return a stolen crown to the queen of the fae", "finds a door to a kingdom under the lake",
                "is chosen by an enchanted sword", "has to break a curse before the winter moon",
                "travels through a forest where the trees remember", "bargains with a spirit of the mountain"],
    "Horror": ["moves into an old farmhouse where the cellar door will not stay shut",
               "hears a voice on the baby monitor", "finds a tape that shows their own deaths",
               "is stalked by something in the fog", "wakes up in a hospital where every patient has vanished",
               "disturbs a grave in the woods"],
    "Mystery": ["finds a body in the locked reading room", "receives letters from a man who died years ago",
                "investigates a disappearance on the island", "follows a trail of coded notes",
                "suspects every guest at the manor", "uncovers a secret in the parish records"],
    "Romance": ["falls for the one person she cannot stand", "meets a stranger every Tuesday at the station",
                "writes love letters for someone else", "finds a second chance at first love",
                "agrees to a fake engagement", "shares one summer in Lisbon with a stranger"],
    "Sci-Fi": ["receives a signal from a dead star", "discovers the colony's air is running out",
               "wakes up from cryosleep fifty years too early", "finds a copy of herself on the space station",
               "must stop an artificial intelligence from shutting down the planet", "travels through a wormhole"],
    "Thriller": ["overhears a plot to kill the mayor", "is trapped in a building with an assassin",
                 "finds a hidden camera in the apartment", "is pursued by government agents",
                 "has twelve hours to find a kidnapped daughter", "uncovers a conspiracy at the airport"],
    "Western": ["rides into a town run by a cattle baron", "tracks a gang of outlaws across the plains",
                "defends a homestead from land grabbers", "escorts a prisoner to the gallows town",
                "searches for gold in the canyon", "faces a gunslinger at high noon"],
    "War": ["is trapped behind the front line", "carries a message through occupied territory",
            "defends a bridge against an advancing army", "survives the siege of a mountain town",
            "leads a rescue across the river", "is captured and plans an escape"],
    "Music": ["forms a band to win the regional contest", "writes one last song for a dying friend",
              "tours the country in a broken van", "auditions for the national orchestra",
              "loses her voice before the big concert", "records an album in a haunted studio"],
    "Sport": ["trains for one final championship", "coaches a team of misfits to the finals",
              "makes a comeback after a career-ending injury", "faces the reigning champion",
              "qualifies for the national games", "has one season to save the club"],
}  # fmt: skip
TWISTS = {
    "Action": ["and every exit is guarded by armed men", "while a bomb ticks under the stadium",
               "with the whole police force on their tail", "before the helicopter lifts off at dawn"],
    "Adventure": ["and the journey takes them across uncharted seas", "guided by a parrot that speaks an ancient tongue",
                  "with pirates one step behind", "before the rainy season closes the pass"],
    "Animation": ["with a chorus of singing vegetables", "helped by a squeaky band of friends",
                  "and the toys come alive at night", "while the moon watches and hums along"],
    "Biography": ["in a true story spanning four decades", "based on her own letters",
                  "in the years before the war", "told by the people who knew him"],
    "Comedy": ["and everything that can go wrong does", "while pretending nothing is wrong",
               "with a talking parrot as the only witness", "and the in-laws arrive a day early"],
    "Crime": ["while the mob closes in", "and a crooked detective wants a cut",
              "before the evidence disappears", "as the heist goes wrong"],
    "Drama": ["and old wounds reopen", "as the family falls apart", "and learns what it means to forgive",
              "while the town watches in silence"],
    "Family": ["and learns that family is what you make it", "with the help of a wise old dog",
               "and the whole neighbourhood joins in", "before the summer ends"],
    "Fantasy": ["and magic returns to the valley", "while a sorcerer hunts the last of the unicorns",
                "guided by a talking fox", "as the enchanted forest wakes"],
    "Horror": ["but something in the house is still awake", "and the dead will not stay buried",
               "while a demon whispers from the walls", "and no one who enters the woods returns"],
    "Mystery": ["and every clue points to a different suspect", "but the only witness has vanished",
                "and the answer lies in a forty-year-old secret", "while the killer may be among them"],
    "Romance": ["and falls hopelessly in love", "but love arrives at the worst possible time",
                "and finds a kiss at the end of the summer", "while the wedding day draws near"],
    "Sci-Fi": ["on a planet where the sun never sets", "as the robots begin to dream",
               "while the ship drifts toward a black hole", "and the future depends on it"],
    "Thriller": ["and trusts no one", "before the deadline at midnight",
                 "as the conspiracy reaches the top", "while a killer watches every move"],
    "Western": ["in the dust of the frontier", "before the railroad reaches the town",
                "with a posse of gunmen on the trail", "as the last of the wild horses run"],
    "War": ["as the bombs fall on the city", "while the enemy closes the ring",
            "in the last winter of the war", "with only a handful of soldiers left"],
    "Music": ["to the beat of a borrowed drum", "as the crowd starts to sing along",
              "and the song becomes an anthem", "on the night of the big show"],
    "Sport": ["in the final seconds of the game", "as the whole town cheers",
              "against impossible odds", "with a coach who never gives up"],
}  # fmt: skip
TITLE_WORDS = {
    "Action": ["Fury", "Velocity", "Firewall", "Breakpoint", "Ironclad", "Detonator"],
    "Adventure": ["Compass", "Horizon", "Expedition", "Lost Coast", "Summit", "Voyage"],
    "Animation": ["Whiskers", "Puddle", "Bumble", "Toybox", "Little Cloud", "Paper Wings"],
    "Biography": ["Portrait", "Testament", "A Life", "Her Own Words", "The Inventor", "The Prodigy"],
    "Comedy": ["Mix-Up", "Honeymoon", "Oops", "Family Reunion", "Chaos", "Holiday"],
    "Crime": ["Laundromat", "Ledger", "Blood Money", "Syndicate", "Alibi", "Pawn"],
    "Drama": ["Harvest", "Silence", "The Long Winter", "Homecoming", "Ashes", "Quiet Hours"],
    "Family": ["Pup", "Carousel", "Summer Camp", "Home", "Goat", "Kite"],
    "Fantasy": ["Crown", "Enchantment", "Dragon", "Spellbound", "The Fae", "Kingdom"],
    "Horror": ["The Cellar", "Hollow", "Whispers", "The Grave", "Nightfall", "Possession"],
    "Mystery": ["Cipher", "The Manor", "Locked Room", "Riddle", "The Letters", "Vanishing"],
    "Romance": ["Love Letters", "Tuesday", "Second Chance", "Sweetheart", "Lisbon", "Kiss"],
    "Sci-Fi": ["Signal", "Cryo", "Orbit", "Wormhole", "Colony", "Android"],
    "Thriller": ["Deadline", "Conspiracy", "Surveillance", "Pursuit", "Countdown", "Hostage"],
    "Western": ["High Noon", "Gold Canyon", "Outlaw", "Frontier", "Dust", "Gallows"],
    "War": ["Front Line", "Siege", "The Bridge", "Trenches", "Last Winter", "Dispatch"],
    "Music": ["Encore", "Anthem", "Backbeat", "Chorus", "Overture", "Setlist"],
    "Sport": ["Comeback", "Final Whistle", "Knockout", "Finish Line", "Underdogs", "Match Point"],
}  # fmt: skip
TITLE_PATTERNS = ["{w}", "The {w}", "{w} {n}", "{w} at {p}", "Return of the {w}", "{w}: {p}"]
PLACES = ["Blackwater", "Saltmarsh", "Ravenhill", "Port Elder", "Copper Creek", "Larkspur", "North Fen"]
NUMBERS = ["II", "III", "2", "Nine", "Zero"]
# genres that are often listed together, so combinations look like real listings
COMPANIONS = {
    "Action": ["Adventure", "Crime", "Thriller", "Sci-Fi", "Comedy", "War"],
    "Adventure": ["Action", "Family", "Fantasy", "Comedy", "Animation"],
    "Animation": ["Adventure", "Comedy", "Family", "Fantasy", "Music"],
    "Biography": ["Drama", "Sport", "Music", "War"],
    "Comedy": ["Romance", "Drama", "Family", "Crime", "Music"],
    "Crime": ["Drama", "Thriller", "Mystery", "Action", "Comedy"],
    "Drama": ["Romance", "Crime", "Biography", "War", "Family", "Music"],
    "Family": ["Comedy", "Adventure", "Animation", "Fantasy"],
    "Fantasy": ["Adventure", "Family", "Romance", "Horror"],
    "Horror": ["Mystery", "Thriller", "Comedy", "Sci-Fi"],
    "Mystery": ["Crime", "Thriller", "Horror", "Drama"],
    "Romance": ["Comedy", "Drama", "Music", "Fantasy"],
    "Sci-Fi": ["Action", "Thriller", "Adventure", "Horror"],
    "Thriller": ["Crime", "Mystery", "Action", "Horror"],
    "Western": ["Action", "Drama", "Adventure"],
    "War": ["Drama", "Action", "Biography"],
    "Music": ["Drama", "Comedy", "Romance", "Biography"],
    "Sport": ["Drama", "Biography", "Comedy", "Family"],
}
PRIMARY_WEIGHTS = {
    "Drama": 12, "Action": 9, "Comedy": 9, "Horror": 7, "Crime": 6, "Adventure": 6, "Sci-Fi": 6,
    "Thriller": 5, "Romance": 5, "Mystery": 4, "Fantasy": 4, "Animation": 4, "Biography": 3,
    "Family": 3, "Western": 2, "War": 2, "Music": 2, "Sport": 2,
}  # fmt: skip
FIRST = ["Ada", "Bruno", "Cleo", "Dmitri", "Esme", "Farid", "Greta", "Hiro", "Ines", "Jonah", "Kaia", "Lars",
         "Mina", "Nico", "Odile", "Pavel", "Rosa", "Soren", "Talia", "Umar", "Vera", "Wendel", "Yara", "Zeno"]  # fmt: skip
LAST = ["Abernathy", "Brightwater", "Castellanos", "Dunmore", "Eklund", "Fairweather", "Galloway", "Hollis",
        "Ivers", "Juniper", "Kettering", "Lindqvist", "Marchetti", "Nakamura-Reyes", "Okafor", "Pemberton",
        "Quill", "Rasmussen", "Stavros", "Thistlewood", "Underhill", "Valdivia", "Whitlock", "Yarrow"]  # fmt: skip


def person(rng: random.Random) -> str:
    return f"{rng.choice(FIRST)} {rng.choice(LAST)}"


def title(rng: random.Random, genre: str) -> str:
    pattern = rng.choice(TITLE_PATTERNS)
    return pattern.format(w=rng.choice(TITLE_WORDS[genre]), n=rng.choice(NUMBERS), p=rng.choice(PLACES))


def plot(rng: random.Random, genres: list[str]) -> str:
    primary, last = genres[0], genres[-1]
    hero, incident = rng.choice(HEROES[primary]), rng.choice(INCIDENTS[primary])
    text = f"{hero[0].upper()}{hero[1:]} {incident}, {rng.choice(TWISTS[last])}."
    if len(genres) > 2 or rng.random() < 0.4:
        middle = genres[1] if len(genres) > 1 else primary
        text += f" {rng.choice(HEROES[middle]).capitalize()} {rng.choice(INCIDENTS[middle])}."
    return text


def movie(rng: random.Random, rank: int) -> list[object]:
    primary = rng.choices(list(PRIMARY_WEIGHTS), weights=list(PRIMARY_WEIGHTS.values()))[0]
    count = rng.choices([1, 2, 3], weights=[2, 4, 4])[0]
    genres = [primary, *rng.sample(COMPANIONS[primary], k=count - 1)]
    listed = sorted(genres)  # IMDb lists genres alphabetically
    rating = round(rng.uniform(3.5, 8.9), 1)
    return [
        rank,
        title(rng, primary),
        ",".join(listed),
        plot(rng, genres),
        person(rng),
        ", ".join(person(rng) for _ in range(4)),
        rng.randint(2006, 2016),
        rng.randint(78, 165),
        rating,
        rng.randint(1000, 900000),
        "" if rng.random() < 0.15 else round(rng.uniform(0.1, 600.0), 2),
        "" if rng.random() < 0.1 else rng.randint(20, 95),
    ]


def keywords(rng: random.Random, row: list) -> str:
    words = [w.strip(".,").lower() for w in str(row[3]).split() if len(w.strip(".,")) > 5]
    return "|".join(dict.fromkeys(rng.sample(words, k=min(len(words), rng.randint(3, 5)))))


def write_imdb5000(rng: random.Random, rows: list[list]) -> None:
    """movie_metadata.csv layout: pipe-separated genres and keywords, a non-breaking space after titles."""
    columns = [
        "movie_title",
        "director_name",
        "title_year",
        "genres",
        "imdb_score",
        "plot_keywords",
        "language",
    ]
    with open(SAMPLES / "imdb5000_genre_sample.csv", "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(columns)
        for row in rows[:SMALL]:
            score = "" if rng.random() < 0.05 else row[8]
            words = "" if rng.random() < 0.05 else keywords(rng, row)
            writer.writerow(
                [f"{row[1]}\u00a0", row[4], row[6], row[2].replace(",", "|"), score, words, "English"]
            )


WIKI_SPELLINGS = {"Sci-Fi": "science fiction", "Biography": "biographical", "Animation": "animated"}


def write_wiki_plots(rng: random.Random, rows: list[list]) -> None:
    """wiki_movie_plots_deduped.csv layout: free-form lower-case genres, 'unknown' for none."""
    columns = ["Release Year", "Title", "Origin/Ethnicity", "Director", "Cast", "Genre", "Wiki Page", "Plot"]
    with open(SAMPLES / "wiki_plots_sample.csv", "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(columns)
        for row in rows[:SMALL]:
            names = [WIKI_SPELLINGS.get(g, g.lower()) for g in row[2].split(",")]
            genre = "unknown" if rng.random() < 0.08 else rng.choice([", ", "/", " / "]).join(names)
            slug = str(row[1]).replace(" ", "_")
            writer.writerow(
                [row[6], row[1], "American", row[4], row[5], genre, f"https://example.org/{slug}", row[3]]
            )


CMU_NAMES = {
    "Sci-Fi": "Science Fiction",
    "Romance": "Romance Film",
    "Crime": "Crime Fiction",
    "Family": "Family Film",
}


def write_cmu(rng: random.Random, rows: list[list]) -> None:
    """plot_summaries.txt (id, summary) and movie.metadata.tsv (nine columns, genres as a JSON map)."""
    import json

    summaries, metadata = [], []
    for i, row in enumerate(rows[:SMALL]):
        wiki_id = 900000 + 17 * i
        summaries.append(f"{wiki_id}\t{row[3]}\n")
        if i % 40 == 39:
            continue  # a summary without a metadata row, as in the real corpus
        genres = (
            {}
            if i % 25 == 24
            else {f"/m/0g{i}{j}": CMU_NAMES.get(g, g) for j, g in enumerate(row[2].split(","))}
        )
        date = f"{row[6]}-0{rng.randint(1, 9)}-1{rng.randint(0, 9)}" if i % 3 else str(row[6])
        revenue = "" if not row[10] else str(int(float(row[10]) * 1e6))
        cells = [
            str(wiki_id), f"/m/0x{i:04d}", str(row[1]), date, revenue, f"{row[7]}.0",
            json.dumps({"/m/02h40lc": "English Language"}), json.dumps({"/m/09c7w0": "United States of America"}),
            json.dumps(genres),
        ]  # fmt: skip
        metadata.append("\t".join(cells) + "\n")
    (SAMPLES / "cmu_plot_summaries.txt").write_text("".join(summaries), encoding="utf-8")
    (SAMPLES / "cmu_movie.metadata.tsv").write_text("".join(metadata), encoding="utf-8")


def main() -> None:
    rng = random.Random(2024)
    rows, seen = [], set()
    while len(rows) < 300:
        row = movie(rng, len(rows) + 1)
        if row[1] in seen:
            continue
        seen.add(row[1])
        rows.append(row)
    with open(OUT, "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(COLUMNS)
        writer.writerows(rows)
    write_imdb5000(rng, rows)
    write_wiki_plots(rng, rows)
    write_cmu(rng, rows)
    print(f"wrote {len(rows)} invented movies to {OUT}, and {SMALL} of them in three other formats")


if __name__ == "__main__":
    main()
