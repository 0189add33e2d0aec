"""Prompt sets: a file of prompts (.txt, .jsonl, .csv, .parquet) or a plain-text corpus cut into
openings and the human text that follows, read, checked and sliced (offset, limit, first or random)."""
import csv
import json
import random
import re
from dataclasses import dataclass
from pathlib import Path

from omegaconf import OmegaConf

from ..errors import UsageError

FORMATS = (".txt", ".jsonl", ".csv", ".parquet")
PICKS = ("first", "random")
OPENINGS = ("paragraph", "sentence")
# A sentence ends at . ! or ? (closing quotes and brackets included) before white space or the end.
SENTENCE_END = re.compile(r"[.!?][\"'”’)\]]*(?=\s|$)")
PASSAGE_BREAK = re.compile(r"\n[ \t\r\f\v]*\n")


@dataclass(frozen=True)
class Prompt:
    """One prompt of a set: its index in the whole file's set, its text and the human reference
    continuation (None where the set has none)."""

    index: int
    text: str
    reference: str | None = None

    def stored(self) -> dict:
        return {"index": self.index, "text": self.text, "reference": self.reference}


@dataclass(frozen=True)
class PromptSetOptions:
    path: Path
    column: str
    reference_column: str | None
    limit: int | None
    offset: int
    pick: str
    corpus: bool
    opening: str
    opening_tokens: int

    @property
    def shown(self) -> str:
        return f"prompts={str(self.path)!r}"


def text_option(value, key: str, nullable: bool = False):
    if (value is None and nullable) or (isinstance(value, str) and value.strip()):
        return value
    raise UsageError(f"{key}={value!r} is not allowed: a column name{' or null' if nullable else ''}")


def integer_option(value, key: str, lowest: int, nullable: bool = False, meaning: str = ""):
    if (value is None and nullable) or (isinstance(value, int) and not isinstance(value, bool) and value >= lowest):
        return value
    allowed = f"an integer >= {lowest}" + (" or null" if nullable else "")
    raise UsageError(f"{key}={value!r} is not allowed: {allowed}{meaning}")


def choice_option(value, key: str, choices: tuple) -> str:
    if value not in choices:
        raise UsageError(f"{key}={value!r} is not allowed: one of {', '.join(choices)}")
    return value


def read_prompt_set_options(cfg) -> PromptSetOptions | None:
    """prompts= and the prompt_set node, each value checked; None without prompts=FILE."""
    path = cfg.get("prompts")
    if path is None:
        return None
    if not isinstance(path, str) or not path.strip():
        raise UsageError(f"prompts={path!r} is not allowed: the path of a prompt file "
                         f"({', '.join(FORMATS)}) or null")
    if cfg.get("prompt") is not None:
        raise UsageError(f"prompt={cfg.get('prompt')!r} and prompts={path!r} cannot go together: give "
                         "one prompt (prompt=TEXT) or a prompt set (prompts=FILE)")
    node = cfg.get("prompt_set") or {}
    node = OmegaConf.to_container(node) if OmegaConf.is_config(node) else dict(node)
    corpus = node.get("corpus", False)
    if not isinstance(corpus, bool):
        raise UsageError(f"prompt_set.corpus={corpus!r} is not allowed: true or false")
    return PromptSetOptions(
        path=Path(path).expanduser(),
        column=text_option(node.get("column", "prompt"), "prompt_set.column"),
        reference_column=text_option(node.get("reference_column"), "prompt_set.reference_column", nullable=True),
        limit=integer_option(node.get("limit"), "prompt_set.limit", 1, nullable=True, meaning=" (null: every prompt)"),
        offset=integer_option(node.get("offset", 0), "prompt_set.offset", 0),
        pick=choice_option(node.get("pick", "first"), "prompt_set.pick", PICKS),
        corpus=corpus,
        opening=choice_option(node.get("opening", "paragraph"), "prompt_set.opening", OPENINGS),
        opening_tokens=integer_option(node.get("opening_tokens", 40), "prompt_set.opening_tokens", 1),
    )


# Reading: each format gives the set's records in file order, then the prompts are taken from them.

def read_text(options: PromptSetOptions) -> str:
    try:
        return options.path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise UsageError(f"{options.shown}: no such file") from None
    except IsADirectoryError:
        raise UsageError(f"{options.shown} is a directory: give a prompt file") from None
    except UnicodeDecodeError as error:
        raise UsageError(f"{options.shown} is not UTF-8 text ({error.reason} at byte {error.start})") from None
    except OSError as error:
        raise UsageError(f"{options.shown} cannot be read ({error.strerror})") from None


def text_lines(options: PromptSetOptions) -> list[dict]:
    """.txt: one prompt a line; blank lines are not prompts."""
    return [{options.column: line} for line in read_text(options).splitlines() if line.strip()]


def jsonl_records(options: PromptSetOptions) -> list[dict]:
    records = []
    for number, line in enumerate(read_text(options).splitlines(), start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except ValueError:
            record = None
        if not isinstance(record, dict):
            raise UsageError(f"{options.shown}: line {number} is not a JSON object")
        records.append(record)
    return records


def csv_records(options: PromptSetOptions) -> list[dict]:
    """.csv with a header line; every value read as text, as written."""
    return list(csv.DictReader(read_text(options).splitlines(keepends=True)))


def parquet_records(options: PromptSetOptions) -> list[dict]:
    import pyarrow.parquet as pq  # noqa: PLC0415 - only for .parquet sets

    if not options.path.is_file():
        read_text(options)  # the same one-line refusals
    try:
        return pq.read_table(options.path).to_pylist()
    except Exception as error:  # noqa: BLE001 - pyarrow raises several kinds for a bad file
        raise UsageError(f"{options.shown} is not a readable Parquet file ({error})") from None


READERS = {".txt": text_lines, ".jsonl": jsonl_records, ".csv": csv_records, ".parquet": parquet_records}


def read_records(options: PromptSetOptions) -> list[dict]:
    suffix = options.path.suffix.lower()
    if suffix not in READERS:
        raise UsageError(f"{options.shown}: unknown file type {suffix or '(none)'!r}: one of "
                         f"{', '.join(FORMATS)} (or prompt_set.corpus=true for a plain-text corpus)")
    return READERS[suffix](options)


def column_prompts(options: PromptSetOptions) -> list[Prompt]:
    """Each record's prompt (and reference) from the named columns; a value that is not text is refused."""
    records = read_records(options)
    if not records:
        raise UsageError(f"{options.shown} holds no prompt")
    for name, key in ((options.column, "prompt_set.column"), (options.reference_column, "prompt_set.reference_column")):
        if name is not None and name not in records[0]:
            raise UsageError(f"{key}={name!r}: {options.shown} has no such column; its columns: "
                             f"{', '.join(map(str, records[0]))}")
    prompts = []
    for index, record in enumerate(records):
        text = record.get(options.column)
        reference = record.get(options.reference_column) if options.reference_column else None
        for name, value, nullable in ((options.column, text, False), (options.reference_column, reference, True)):
            if not (isinstance(value, str) or (nullable and value is None)):
                raise UsageError(f"{options.shown}: prompt {index} has {value!r} in column {name!r}, "
                                 f"not text{' (or null)' if nullable else ''}")
        prompts.append(Prompt(index, text, reference))
    return prompts


def passages(text: str) -> list[str]:
    """A plain-text corpus cut at blank lines, each passage stripped."""
    return [passage.strip() for passage in PASSAGE_BREAK.split(text.replace("\r\n", "\n")) if passage.strip()]


def opening_of(passage: str, opening: str) -> str:
    """paragraph: the passage's first line; sentence: its first sentence (else its first line)."""
    first_line = passage.split("\n", 1)[0]
    if opening == "paragraph":
        return first_line
    end = SENTENCE_END.search(passage)
    return passage[:end.end()] if end else first_line


def cut_to_tokens(text: str, tokenizer, limit: int) -> str:
    """The longest start of text, cut at a token boundary, that encodes to at most `limit` tokens."""
    if len(tokenizer.encode(text)) <= limit:
        return text
    ends = [end for _, end in tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)["offset_mapping"]]
    for count in range(limit, 0, -1):
        cut = text[:ends[count - 1]]
        if len(tokenizer.encode(cut)) <= limit:
            return cut
    return ""


def corpus_cut(passage: Prompt, options: PromptSetOptions, tokenizer, new_tokens: int) -> Prompt:
    """Holtzman et al.'s cut: the passage's opening up to opening_tokens tokens is the prompt, the
    next `new_tokens` tokens of the passage the human reference ("" where nothing follows)."""
    prompt = cut_to_tokens(opening_of(passage.text, options.opening), tokenizer, options.opening_tokens)
    following = tokenizer.encode(passage.text[len(prompt):])[:new_tokens]
    return Prompt(passage.index, prompt, tokenizer.decode(following))


def corpus_passages(options: PromptSetOptions) -> list[Prompt]:
    """Each passage of the corpus as a Prompt of its whole text (the cut comes after the selection)."""
    found = passages(read_text(options))
    if not found:
        raise UsageError(f"{options.shown} holds no passage (prompt_set.corpus=true cuts it at blank lines)")
    return [Prompt(index, passage) for index, passage in enumerate(found)]


def selected(prompts: list[Prompt], options: PromptSetOptions, seed: int) -> list[Prompt]:
    """The prompts from index `offset` on: the first `limit`, or `limit` drawn with the seed (Python's
    random.Random(seed).sample), in file order."""
    candidates = prompts[options.offset:]
    if not candidates:
        raise UsageError(f"prompt_set.offset={options.offset} leaves no prompt: {options.shown} holds "
                         f"{len(prompts)}")
    if options.limit is None or options.limit >= len(candidates):
        return candidates
    if options.pick == "first":
        return candidates[:options.limit]
    drawn = random.Random(seed).sample(range(len(candidates)), options.limit)
    return [candidates[position] for position in sorted(drawn)]


def check_prompt_set(options: PromptSetOptions, seed: int) -> None:
    """What can be refused before the tokenizer loads: the file, its columns, an empty selection."""
    selected(corpus_passages(options) if options.corpus else column_prompts(options), options, seed)


def read_prompt_set(options: PromptSetOptions, seed: int, tokenizer, new_tokens: int) -> list[Prompt]:
    """The run's prompts, in file order, each with its index in the whole set."""
    if not options.corpus:
        return selected(column_prompts(options), options, seed)
    return [corpus_cut(passage, options, tokenizer, new_tokens)
            for passage in selected(corpus_passages(options), options, seed)]
