"""The sentences of Mini-LRS: the GRID grammar, optionally mixed with free text, split so train and test share none.

GRID sentences are `command colour preposition letter digit adverb` ("bin blue at f two now"); every slot has a
closed vocabulary, so each spoken word has a known set of alternatives, which is what the lip-reading floor needs.
Free text draws 3 to 8 words uniformly from a built-in list of common English words; its one slot is `free`.
"""

from dataclasses import dataclass

import numpy as np


GRID_SLOTS = {
    "command": ("bin", "lay", "place", "set"),
    "colour": ("blue", "green", "red", "white"),
    "preposition": ("at", "by", "in", "with"),
    "letter": tuple("abcdefghijklmnopqrstuvxyz"),
    "digit": ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"),
    "adverb": ("again", "now", "please", "soon"),
}
GRID_SIZE = int(np.prod([len(words) for words in GRID_SLOTS.values()]))
FREE_TEXT_SLOT = "free"
FREE_TEXT_LENGTHS = (3, 8)
FREE_TEXT_WORDS = tuple(
    """
    about above across act add after afternoon again against age ago air all almost alone along already also always
    animal answer any apple area arm around art ask away baby back bad bag ball bank bear beautiful bed before begin
    behind believe bell below best better between big bird black blood boat body bone book both bottle box boy bread
    break bridge bright bring brother brown build busy buy call calm camera car card care carry cat catch cause
    center chair chance change cheap child choose city class clean clear clock close cloud coat cold colour come
    common cook cool corner count country course cover cow cup cut dance dark daughter day deep desk different
    dinner doctor dog door down draw dream dress drink drive dry early earth east easy eat egg empty end enough
    evening every eye face fall family far farm fast father field fight fill find fine finger fire first fish floor
    flower fly follow food foot forest forget free fresh friend front fruit full game garden gate gift girl give
    glass gold good grass great ground group grow hair half hand happy hard hat head hear heart heavy help high hill
    hold home hope horse hot hour house hundred idea inside island jump keep key kind king kitchen know lady lake
    land large last late laugh learn leave left letter light line lion listen little live long look loud love low
    machine make man many map market matter meet middle milk mind minute money month moon morning mother mountain
    mouth move music name near need never new news next nice night north nose note number ocean office old open
    orange other outside page paint paper park party pass people pick picture piece plant play pocket point poor
    pretty pull push queen question quick quiet rain read ready remember rest rich ride right river road rock room
    round run sad salt same sand school sea season second see sell send shape share sheep ship shoe short shout
    show side sign simple sing sister sit sky sleep slow small smile snow soft song sound south speak spring square
    stand star start station stay stone stop story street strong student study sugar summer sun sweet table tail
    take talk tall tea teacher tell thank thin thing think today together tomorrow tonight town train tree true turn
    under until use valley very village visit voice wait walk wall want warm wash watch water wave way weather week
    west wheel wide wind window winter wish woman wood word work world write year yellow young
    """.split()
)


@dataclass(frozen=True)
class Sentence:
    """A transcript and, for every word, the grammar slot whose words are its alternatives."""

    words: tuple[str, ...]
    slots: tuple[str, ...]

    @property
    def text(self) -> str:
        return " ".join(self.words)

    @property
    def spoken_text(self) -> str:
        """What espeak-ng is given: the transcript with every word in the form that makes it say that word."""
        return " ".join(spoken_form(word) for word in self.words)


def spoken_form(word: str) -> str:
    """espeak-ng reads a lone "a" as the article /ə/; GRID's letter A is said as its name, written here in
    espeak's phoneme notation `[[...]]` (the synthesiser enables it)."""
    return "[['eI]]" if word == "a" else word


def slot_vocabulary(slot: str) -> tuple[str, ...]:
    return FREE_TEXT_WORDS if slot == FREE_TEXT_SLOT else GRID_SLOTS[slot]


def grid_sentence(index: int) -> Sentence:
    """The `index`-th of the `GRID_SIZE` GRID sentences (mixed radix over the slots, last slot fastest)."""
    words = []
    for vocabulary in reversed(GRID_SLOTS.values()):
        index, position = divmod(index, len(vocabulary))
        words.append(vocabulary[position])
    return Sentence(tuple(reversed(words)), tuple(GRID_SLOTS))


def free_text_sentence(rng: np.random.Generator) -> Sentence:
    length = int(rng.integers(FREE_TEXT_LENGTHS[0], FREE_TEXT_LENGTHS[1] + 1))
    words = tuple(FREE_TEXT_WORDS[i] for i in rng.integers(0, len(FREE_TEXT_WORDS), size=length))
    return Sentence(words, (FREE_TEXT_SLOT,) * length)


def sample_sentences(
    num_train: int, num_test: int, free_text_ratio: float, rng: np.random.Generator
) -> tuple[list[Sentence], list[Sentence]]:
    """Draw the train and test sentences; no sentence is in both, and within a split none repeats while the
    grammar has sentences left (beyond that, train sentences repeat, as GRID's do across speakers).

    `round(free_text_ratio × n)` sentences of each split are free text, the rest GRID, in shuffled order.
    """
    if not 0.0 <= free_text_ratio <= 1.0:
        raise ValueError(f"free_text_ratio must be between 0 and 1, got {free_text_ratio}.")
    num_free_test = round(free_text_ratio * num_test)
    num_free_train = round(free_text_ratio * num_train)
    num_grid_test, num_grid_train = num_test - num_free_test, num_train - num_free_train
    if num_grid_test + min(num_grid_train, 1) > GRID_SIZE:
        raise ValueError(
            f"{num_grid_test} GRID test sentences leave none for training: the grammar has {GRID_SIZE} sentences."
        )
    grid_order = rng.permutation(GRID_SIZE)
    train_pool = grid_order[num_grid_test:]
    test = [grid_sentence(int(i)) for i in grid_order[:num_grid_test]]
    train = [grid_sentence(int(train_pool[i % len(train_pool)])) for i in range(num_grid_train)]

    seen = set(test)
    test += _distinct_free_text(num_free_test, rng, seen)
    train += _distinct_free_text(num_free_train, rng, seen)
    return [train[i] for i in rng.permutation(len(train))], [test[i] for i in rng.permutation(len(test))]


def _distinct_free_text(count: int, rng: np.random.Generator, seen: set[Sentence]) -> list[Sentence]:
    """`count` free-text sentences not in `seen` (which they join); with over 400 words, rejections are rare."""
    sentences = []
    while len(sentences) < count:
        sentence = free_text_sentence(rng)
        if sentence not in seen:
            seen.add(sentence)
            sentences.append(sentence)
    return sentences
