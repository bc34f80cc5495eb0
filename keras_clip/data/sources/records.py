"""`RecordSource`: a source read up front into a list of `ImageRecord`s
(image files with their captions): the base of the manifest and folder kinds."""

from keras_clip.data import bad_records as br
from keras_clip.data import dataset as builder
from keras_clip.data.bad_records import BadRecordReport
from keras_clip.data.sources.base import DataSource, ImageRecord


class RecordSource(DataSource):
    """Image files and their captions, held in memory.

    A subclass only builds the records (in its `open`); batching, decoding,
    bad-record checks and evaluation arrays come from here.

    Args:
        path: the file or folder the records came from (for messages).
        records: list of `ImageRecord`, in file order.
        has_labels: bool, whether every record has an int label.
        problems: list of `(reason, name, detail)` skipped while reading
            (copied into each dataset's `BadRecordReport`).
    """

    def __init__(self, path, records, has_labels=False, problems=()):
        self.path = path
        self.records = list(records)
        self.has_labels = bool(has_labels)
        self.problems = list(problems)
        self._strict_checked = None

    def __len__(self):
        return len(self.records)

    @property
    def num_records(self):
        return len(self.records)

    @property
    def num_captions(self):
        return sum(len(r.captions) for r in self.records)

    def captions(self):
        return [c for r in self.records for c in r.captions]

    def __repr__(self):
        return (
            f"{type(self).__name__}(kind={self.kind!r}, path={self.path!r}, "
            f"images={len(self.records)}, captions={self.num_captions}, "
            f"has_labels={self.has_labels}, problems={len(self.problems)})"
        )

    def prepare(self, strict, report, max_pixels):
        for problem in self.problems:
            report.add(*problem)
        if strict and self._strict_checked != max_pixels:
            # Raise BadRecordError here, in record order, rather than from
            # inside tf.data (where it would arrive wrapped in a TF error).
            # Once per source: a run that builds a dataset per epoch does not
            # decode everything twice each epoch (the pipeline still raises
            # on a file that turns bad later).
            builder.check_records(self.records, max_pixels, report, strict)
            self._strict_checked = max_pixels

    def elements(self, training, seed, reshuffle, report, strict, shuffle_buffer, cycle_length):
        return builder.record_elements(self.records, self.has_labels, training, seed, shuffle_buffer, reshuffle)

    def validate(self, report=None, strict=False, max_pixels=builder.DEFAULT_MAX_PIXELS, num_threads=None):
        report = BadRecordReport() if report is None else report
        for problem in self.problems:
            report.add(*problem)
        builder.check_records(self.records, max_pixels, report, strict, num_threads)
        return report


class Collector:
    """Groups caption rows by image path, collecting problems."""

    def __init__(self, strict):
        self.strict = strict
        self.problems = []
        self.by_path = {}  # path -> [captions list, label]
        self.order = []

    def problem(self, reason, name, detail=""):
        br.report_bad_record(None, self.strict, reason, name, detail)
        self.problems.append((reason, name, detail))

    def add(self, path, caption, label, where, use_labels):
        entry = self.by_path.get(path)
        if use_labels and entry is not None and entry[1] != label:
            self.problem(
                br.INVALID_LABEL, f"{path} ({where})",
                f"label {label} differs from this image's earlier label {entry[1]}",
            )
            return
        if entry is None:
            entry = self.by_path[path] = [[], label]
            self.order.append(path)
        entry[0].append(caption)

    def records(self):
        return [
            ImageRecord(path, tuple(self.by_path[path][0]), self.by_path[path][1])
            for path in self.order
        ]
