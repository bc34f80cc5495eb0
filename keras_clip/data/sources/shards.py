"""The "shards" kind: WebDataset-style tar shards, streamed sample by sample.

A sample is the run of consecutive tar members sharing a key (the member
path up to the first "." of its file name): `KEY.jpg|jpeg|png|...` for the
image and `KEY.txt` (one caption per line) or `KEY.json` (a `"caption"`
field: a string or a list of strings) for the captions; with `labels=True`,
`KEY.cls` (an int) or the json's `"label"` field. Shards are read while
streaming (never unpacked to disk), so their problems go to the report
given to `iter_shard`.
"""

import bz2
import collections
import contextlib
import glob
import gzip
import json
import lzma
import os
import re
import tarfile

from keras_clip.data import bad_records as br
from keras_clip.data import dataset as builder
from keras_clip.data.bad_records import BadRecordReport
from keras_clip.data.sources.base import DataSource, Sample, captions_from_lines, parse_label, register_source
from keras_clip.data.sources.folder import IMAGE_EXTENSIONS

SHARD_SUFFIXES = (".tar", ".tar.gz", ".tgz", ".tar.bz2", ".tar.xz")
_BLOCK = tarfile.BLOCKSIZE  # 512


# ---------------------------------------------------------------------- #
# Brace patterns
# ---------------------------------------------------------------------- #
def _matching_brace(text, start):
    depth = 0
    for index in range(start, len(text)):
        if text[index] == "{":
            depth += 1
        elif text[index] == "}":
            depth -= 1
            if depth == 0:
                return index
    return -1


def _split_top_level(text):
    parts, depth, begin = [], 0, 0
    for index, char in enumerate(text):
        if char == "{":
            depth += 1
        elif char == "}":
            depth -= 1
        elif char == "," and depth == 0:
            parts.append(text[begin:index])
            begin = index + 1
    parts.append(text[begin:])
    return parts


def expand_braces(pattern):
    """Expands shell-style braces: `"a-{000..002}.tar"`, `"{x,y}.tar"`.

    Numeric ranges keep zero padding (`{000..002}` -> 000, 001, 002; a
    negative step is allowed: `{3..1}`). Several and nested groups expand
    as the shell does, left to right.
    """
    start = pattern.find("{")
    while start != -1:
        end = _matching_brace(pattern, start)
        if end == -1:
            break
        body = pattern[start + 1 : end]
        prefix, suffix = pattern[:start], pattern[end + 1 :]
        match = re.fullmatch(r"(-?\d+)\.\.(-?\d+)", body)
        if match:
            first, last = match.group(1), match.group(2)
            padded = first.lstrip("-").startswith("0") or last.lstrip("-").startswith("0")
            width = max(len(first), len(last)) if padded else 0
            a, b = int(first), int(last)
            step = 1 if b >= a else -1
            options = [str(i).zfill(width) for i in range(a, b + step, step)]
        else:
            options = _split_top_level(body)
            if len(options) == 1:  # "{abc}" is literal, look further on
                start = pattern.find("{", start + 1)
                continue
        return [expanded for option in options for expanded in expand_braces(prefix + option + suffix)]
    return [pattern]


def is_shard_path(path):
    return os.fspath(path).lower().endswith(SHARD_SUFFIXES)


# ---------------------------------------------------------------------- #
# Reading a tar stream and checking how it ends
# ---------------------------------------------------------------------- #
class _TailReader:
    """A read-only file over the (decompressed) tar bytes that remembers its
    last chunks, to look at the block where tarfile stopped reading."""

    def __init__(self, raw):
        self.raw = raw
        self.position = 0
        self.chunks = collections.deque(maxlen=4)  # (start, bytes)

    def read(self, size=-1):
        data = self.raw.read(size)
        if data:
            self.chunks.append((self.position, data))
            self.position += len(data)
        return data

    def block_at(self, offset):
        """Up to 512 bytes from `offset`, reading on when needed."""
        while self.position < offset + _BLOCK and self.read(1 << 16):
            pass
        data = b"".join(chunk for _, chunk in self.chunks)
        begin = offset - self.chunks[0][0] if self.chunks else 0
        return data[begin : begin + _BLOCK] if begin >= 0 else None

    def size(self):
        """Total length, reading the rest of the stream."""
        while self.read(1 << 16):
            pass
        return self.position


def _open_raw(path, stack):
    """The shard's tar bytes (gzip, bzip2 and xz decompressed), closed by `stack`."""
    raw = stack.enter_context(open(path, "rb"))
    magic = raw.read(6)
    raw.seek(0)
    if magic[:2] == b"\x1f\x8b":
        return stack.enter_context(gzip.GzipFile(fileobj=raw))
    if magic[:3] == b"BZh":
        return stack.enter_context(bz2.BZ2File(raw))
    if magic == b"\xfd7zXZ\x00":
        return stack.enter_context(lzma.LZMAFile(raw))
    return raw


def _end_problem(reader, end_offset):
    """Why a tar stream that tarfile read to its end is truncated, or None.

    A complete archive ends with a zero block (tar's end-of-archive marker;
    writers add two and pad to a record) and is a whole number of 512-byte
    blocks long. tarfile itself stops quietly at a shard cut between two
    members or inside a header."""
    block = reader.block_at(end_offset)
    size = reader.size()
    if size % _BLOCK:
        return f"ends inside a 512-byte block ({size} bytes)"
    if block is None or len(block) < _BLOCK:
        return f"ends at byte {size} without tar's end-of-archive blocks"
    if block.count(0) != _BLOCK:
        return f"invalid tar header at byte {end_offset}"
    return None


class ShardSource(DataSource):
    """WebDataset-style tar shards (see the module docstring).

    Options: `labels=False` (read an int label from `KEY.cls` or the json's
    `label_field`), `caption_field="caption"`, `label_field="label"`,
    `image_extensions`.

    Attributes:
        shards: list of str, the tar paths (brace patterns and globs expanded).
        has_labels: bool (the `labels` option).
    """

    def __init__(self, shards, labels=False, caption_field="caption", label_field="label",
                 image_extensions=IMAGE_EXTENSIONS):
        self.shards = list(shards)
        self.has_labels = bool(labels)
        self.caption_field = caption_field
        self.label_field = label_field
        self.image_extensions = tuple(e.lower().lstrip(".") for e in image_extensions)
        self.problems = []
        self._counted = None

    @classmethod
    def open(cls, spec, strict=False, **options):
        patterns = [spec] if isinstance(spec, (str, os.PathLike)) else list(spec)
        if not patterns:
            raise ValueError("source is an empty list; pass at least one tar shard path.")
        not_tar = [p for p in patterns if not is_shard_path(p)]
        if not_tar:
            raise ValueError(
                "A list source must hold tar shard paths (ending in "
                f"{list(SHARD_SUFFIXES)}); received {not_tar[:3]}."
            )
        shards = []
        for pattern in patterns:
            for expanded in expand_braces(os.fspath(pattern)):
                if any(c in expanded for c in "*?["):
                    shards.extend(sorted(glob.glob(expanded)))
                else:
                    shards.append(expanded)
        if not shards:
            raise ValueError(f"Shard pattern(s) {list(map(os.fspath, patterns))} matched no files.")
        missing = [s for s in shards if not os.path.exists(s)]
        if len(missing) == len(shards):
            raise FileNotFoundError(f"None of the {len(shards)} tar shard(s) exist (first: {shards[0]!r}).")
        if missing and strict:
            raise br.BadRecordError(br.MISSING_FILE, missing[0], "tar shard does not exist")
        return cls(shards, **options)

    def __len__(self):
        return len(self.shards)

    def __repr__(self):
        return f"ShardSource(shards={len(self.shards)}, has_labels={self.has_labels})"

    @property
    def num_records(self):
        """None until a `captions()` pass has counted the samples (images
        still undecoded: a bad image is only found later)."""
        return self._counted

    def captions(self):
        """Every caption, in one streaming pass (bad records skipped quietly)."""
        captions, count = [], 0
        for sample in self.iter_samples(report=BadRecordReport(log=False)):
            captions.extend(sample.captions)
            count += 1
        self._counted = count
        return captions

    def iter_shard(self, shard, report=None, strict=False):
        """Yields the `Sample`s of one shard, streamed (no unpacking to disk).

        Samples lacking an image or a caption, with bad captions or labels
        are reported (`report`) and skipped, or raise with `strict=True`. A
        missing shard is reported once. A corrupt or truncated one (cut
        inside a member or a header, or between members: no end-of-archive
        blocks) is reported once as `corrupt_shard`, naming the shard and
        the samples read from it, which are kept; the sample being read
        when it ended is dropped.
        """
        shard = os.fsdecode(shard)
        if not os.path.exists(shard):
            br.report_bad_record(report, strict, br.MISSING_FILE, shard)
            return
        group_key, members, count = None, {}, 0
        problem = None
        try:
            with contextlib.ExitStack() as stack:
                reader = _TailReader(_open_raw(shard, stack))
                with tarfile.open(fileobj=reader, mode="r|") as archive:
                    for member in archive:
                        if not member.isfile():
                            continue
                        directory, base = os.path.split(member.name)
                        if "." not in base:
                            continue
                        stem, extension = base.split(".", 1)
                        key = os.path.join(directory, stem)
                        if key != group_key:
                            if group_key is not None:
                                sample = self._make_sample(shard, group_key, members, report, strict)
                                if sample is not None:
                                    count += 1
                                    yield sample
                            group_key, members = key, {}
                        members[extension.lower()] = archive.extractfile(member).read()
                    problem = _end_problem(reader, archive.offset)
        except (tarfile.TarError, EOFError, OSError, ValueError) as error:
            if isinstance(error, br.BadRecordError):
                raise
            problem = f"{type(error).__name__}: {error}"
        if problem is not None:
            br.report_bad_record(
                report, strict, br.CORRUPT_SHARD, shard,
                f"{problem}; {count} sample(s) read from it before",
            )
            return
        if group_key is not None:
            sample = self._make_sample(shard, group_key, members, report, strict)
            if sample is not None:
                yield sample

    def iter_samples(self, report=None, strict=False):
        """Yields the samples of all shards in order."""
        for shard in self.shards:
            yield from self.iter_shard(shard, report=report, strict=strict)

    def elements(self, training, seed, reshuffle, report, strict, shuffle_buffer, cycle_length):
        return builder.shard_elements(
            self.shards, lambda shard: self.iter_shard(shard, report=report, strict=strict),
            training, seed, shuffle_buffer, cycle_length, reshuffle,
        )

    def validate(self, report=None, strict=False, max_pixels=builder.DEFAULT_MAX_PIXELS, num_threads=None):
        report = BadRecordReport() if report is None else report
        builder.check_samples(self.iter_samples(report=report, strict=strict), max_pixels, report, strict)
        return report

    def _make_sample(self, shard, key, members, report, strict):
        def bad(reason, name, detail=""):
            br.report_bad_record(report, strict, reason, name, detail)

        image_ext = next((e for e in self.image_extensions if e in members), None)
        caption_ext = next((e for e in ("txt", "json") if e in members), None)
        if image_ext is None:
            if caption_ext is not None:  # neither: some other data, not ours
                bad(br.MISSING_IMAGE, f"{shard}:{key}.{caption_ext}", "no image member with the same key")
            return None
        name = f"{shard}:{key}.{image_ext}"
        if caption_ext is None:
            bad(br.MISSING_CAPTION, name, "no .txt or .json member with the same key")
            return None
        meta = None
        if caption_ext == "txt":
            captions = captions_from_lines(members["txt"], f"{shard}:{key}.txt", bad)
        else:
            try:
                meta = json.loads(members["json"].decode("utf-8"))
                raw = meta[self.caption_field] if isinstance(meta, dict) else None
                if raw is None:
                    raise KeyError(self.caption_field)
            except UnicodeDecodeError:
                bad(br.NON_UTF8_CAPTION, f"{shard}:{key}.json")
                return None
            except (ValueError, KeyError, TypeError) as error:
                bad(
                    br.MALFORMED_ROW, f"{shard}:{key}.json",
                    f"needs a JSON object with a {self.caption_field!r} field ({type(error).__name__}: {error})",
                )
                return None
            captions = []
            for caption in [raw] if isinstance(raw, str) else (raw if isinstance(raw, list) else [raw]):
                if not isinstance(caption, str) or not caption.strip():
                    bad(br.EMPTY_CAPTION, f"{shard}:{key}.json", f"caption {caption!r}")
                    continue
                captions.append(caption)
        if not captions:
            return None
        label = None
        if self.has_labels:
            value = None
            if "cls" in members:
                value = members["cls"].decode("utf-8", "replace").strip()
            elif isinstance(meta, dict):
                value = meta.get(self.label_field)
            label, problem = parse_label(value)
            if problem:
                bad(br.INVALID_LABEL, name, problem)
                return None
        return Sample(name, members[image_ext], tuple(captions), label)


register_source(
    "shards", ShardSource,
    detect=lambda spec, options: isinstance(spec, (list, tuple)) or is_shard_path(spec),
)
