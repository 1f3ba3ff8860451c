"""The results file of `omni-avsr transcribe --output`: JSON lines, append-only, resumable.

The rule (also in `omni-avsr transcribe --help` and the README):
- one JSON line per transcribed file is appended (and flushed) as soon as the file is done, so an interrupted run
  keeps every finished file;
- lines already in the file are never rewritten or removed: a rerun into the same file keeps them and transcribes
  only the files that have no line made with the same options (model, task, rates, beams, tokens), so rerunning an
  interrupted command finishes it, and a run with other options adds its own lines;
- a long file (transcribed a segment at a time) also gets a line per segment as soon as the segment is done,
  `{"path", "chunk": {"timestamp", "text"}, "options"}`; a rerun transcribes only the segments that have none, and
  the file's own line (with all its chunks) follows when the last one is done;
- a file that fails gets no line (the rerun tries it again);
- the output may not be one of the inputs or a file they read (a video's sibling `.wav`), and an existing file that
  is not such a results file is refused, never written into.
"""

import json
import os
import sys
from pathlib import Path

from .command_line import check_output_file
from .long_form import chunk_key
from .media import AUDIO_EXTENSIONS


RECORD_START = b'{"path": '


class TranscriptionResults:
    """An `--output` file checked against the inputs and read for earlier results; `append` adds one record."""

    def __init__(self, path: str | os.PathLike, inputs: list[str]):
        self.path = check_output_file(path, "--output")
        _refuse_if_read_by_inputs(self.path, inputs)
        self._done = set()
        self._chunks: dict[tuple, dict] = {}
        self._file = None
        self._newline_first = False  # the file ends with a record but no newline (edited by hand)
        if self.path.exists():
            self._read_earlier_results()

    def _read_earlier_results(self) -> None:
        data = self.path.read_bytes()
        *lines, last = data.split(b"\n")  # `last`: what follows the final newline (empty when the file ends with one)
        for number, line in enumerate([*lines, last], start=1):
            record = _parse_record(line)
            # Records start so; a last line that does and is cut short is a write that was interrupted.
            torn = record is None and number == len(lines) + 1 and line.startswith(RECORD_START)
            if record is None and line.strip() and not torn:
                raise ValueError(
                    f"--output {self.path} exists and is not a results file of omni-avsr transcribe (line {number} is "
                    "not one of its JSON records); expected a new file or an earlier results file. Nothing was written."
                )
            if record is not None:
                self._remember(record)
        if last.strip():
            if _parse_record(last) is None:
                # A write interrupted mid-line: not a result; its file is transcribed again.
                print(
                    f"omni-avsr: {self.path}: dropping its incomplete last line (an interrupted write); that file is "
                    "transcribed again.",
                    file=sys.stderr,
                )
                with open(self.path, "r+b") as file:
                    file.truncate(len(data) - len(last))
            else:
                self._newline_first = True

    def is_done(self, path: str, options: dict) -> bool:
        """Whether the file already has a line made with these options (then it is not transcribed again)."""
        return _key(path, options) in self._done

    def done_chunks(self, path: str, options: dict) -> dict:
        """The segments of a long file already transcribed with these options, keyed by `long_form.chunk_key`."""
        return dict(self._chunks.get(_key(path, options), {}))

    def append(self, record: dict) -> None:
        """Add one record (`path`, `text` or `chunk`, ..., `options`) and flush it to disk at once."""
        if self._file is None:
            self._file = open(self.path, "a", encoding="utf-8")
            if self._newline_first:
                self._file.write("\n")
        self._file.write(json.dumps(record) + "\n")
        self._file.flush()
        self._remember(record)

    def _remember(self, record: dict) -> None:
        key = _key(record["path"], record.get("options"))
        if "chunk" in record:
            chunk = record["chunk"]
            self._chunks.setdefault(key, {})[chunk_key(chunk["timestamp"])] = chunk
        else:
            self._done.add(key)

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None


def _parse_record(line: bytes) -> dict | None:
    try:
        record = json.loads(line)
    except ValueError:
        return None
    if not isinstance(record, dict) or not isinstance(record.get("path"), str):
        return None
    chunk = record.get("chunk")
    is_chunk = isinstance(chunk, dict) and isinstance(chunk.get("text"), str) and len(chunk.get("timestamp", ())) == 2
    return record if "text" in record or is_chunk else None


def _key(path: str, options: dict | None) -> tuple:
    return os.path.realpath(path), json.dumps(options, sort_keys=True)


def _refuse_if_read_by_inputs(output: Path, inputs: list[str]) -> None:
    """The output must be none of the inputs, nor the sibling `.wav` an input video takes its audio from."""
    for path in inputs:
        read = [(path, "one of the input files")]
        if not path.lower().endswith(AUDIO_EXTENSIONS):
            read.append((os.path.splitext(path)[0] + ".wav", f"the sibling .wav the input {path} takes its audio from"))
        for read_path, role in read:
            same = os.path.realpath(read_path) == os.path.realpath(output)
            if not same and output.exists() and os.path.exists(read_path):
                same = os.path.samefile(read_path, output)
            if same:
                raise ValueError(
                    f"--output {output} is {role} (a glob that matched it?); expected a results file that no input "
                    "reads. Nothing was written."
                )
