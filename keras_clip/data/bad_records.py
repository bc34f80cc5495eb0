"""Bad records: the error, the thread-safe report and the Keras callback.

A bad record (missing or empty file, corrupt or truncated image, empty or
non-UTF-8 caption, oversized image, ...) is never dropped silently: the data
pipeline either records it in a `BadRecordReport` (count per reason plus the
first few file names) and skips it, or, with `strict=True`, raises a
`BadRecordError` naming the file and the reason.
"""

import collections
import logging
import threading

import keras

logger = logging.getLogger("keras_clip.data")

# Reasons (the keys of `BadRecordReport.counts`), with a human description.
MISSING_FILE = "missing_file"
UNREADABLE_FILE = "unreadable_file"
EMPTY_FILE = "empty_file"
CORRUPT_IMAGE = "corrupt_image"
TRUNCATED_IMAGE = "truncated_image"
TOO_LARGE = "too_large"
EMPTY_CAPTION = "empty_caption"
NON_UTF8_CAPTION = "non_utf8_caption"
MISSING_CAPTION = "missing_caption"
MISSING_IMAGE = "missing_image"
INVALID_LABEL = "invalid_label"
MALFORMED_ROW = "malformed_row"
CORRUPT_SHARD = "corrupt_shard"

REASONS = {
    MISSING_FILE: "file does not exist",
    UNREADABLE_FILE: "file cannot be read",
    EMPTY_FILE: "file is empty (0 bytes)",
    CORRUPT_IMAGE: "not a decodable image (corrupt or unsupported format)",
    TRUNCATED_IMAGE: "image data is truncated",
    TOO_LARGE: "image has more pixels than max_pixels",
    EMPTY_CAPTION: "caption is empty",
    NON_UTF8_CAPTION: "caption is not valid UTF-8",
    MISSING_CAPTION: "image has no caption",
    MISSING_IMAGE: "caption has no image",
    INVALID_LABEL: "label is not an integer (or conflicts with another row)",
    MALFORMED_ROW: "manifest row cannot be parsed",
    CORRUPT_SHARD: "tar shard is corrupt or truncated (rest of it skipped)",
}


class BadRecordError(ValueError):
    """A bad record met with `strict=True`; names the file and the reason.

    Attributes:
        reason: str, one of the reason keys (e.g. `"truncated_image"`).
        name: str, the file (or `shard.tar:member`) at fault.
        detail: str, extra information (e.g. the decoder's message).
    """

    def __init__(self, reason, name, detail=""):
        self.reason = reason
        self.name = name
        self.detail = detail
        description = REASONS.get(reason, reason)
        message = f"Bad record {name!r}: {reason} ({description})"
        if detail:
            message += f": {detail}"
        message += (
            ". Fix or remove it, or pass strict=False to skip bad records "
            "and count them in a BadRecordReport."
        )
        super().__init__(message)

    def __reduce__(self):  # picklable with its arguments
        return (type(self), (self.reason, self.name, self.detail))


class BadRecordReport:
    """Thread-safe tally of skipped records: counts and first names per reason.

    The data pipeline calls `add` from its worker threads. Counts are kept
    twice: since the last `reset()` (`counts`, `names`: per epoch when used
    with `BadRecordLogger`) and since creation (`total_counts`,
    `total_names`).

    Args:
        max_names: int. How many file names to keep per reason.
        log: bool. Log a warning (logger `"keras_clip.data"`) the first time
            each reason is seen, so a problem shows even if nobody reads the
            report.

    Example:
    ```python
    report = BadRecordReport()
    dataset = image_text_dataset("data/train.csv", tokenizer, 224, 64,
                                 report=report)
    model.fit(dataset, callbacks=[BadRecordLogger(report)])
    print(report.summary())
    ```
    """

    def __init__(self, max_names=10, log=True):
        self.max_names = int(max_names)
        self.log = bool(log)
        self._lock = threading.Lock()
        self._counts = collections.Counter()
        self._names = collections.defaultdict(list)
        self._total_counts = collections.Counter()
        self._total_names = collections.defaultdict(list)
        self._seen_epoch = set()
        self._seen_total = set()

    def add(self, reason, name, detail=""):
        """Records one bad record (thread-safe)."""
        name = str(name)
        with self._lock:
            # A record is counted once per epoch and once in the run's totals,
            # however many times it is decoded: a prefetching iterator may
            # start the next pass before the epoch ends (Keras' PyTorch
            # adapter does), which would otherwise count it twice.
            key = (reason, name)
            if key in self._seen_epoch:
                return
            self._seen_epoch.add(key)
            first_ever = self._total_counts[reason] == 0
            self._counts[reason] += 1
            if key not in self._seen_total:
                self._seen_total.add(key)
                self._total_counts[reason] += 1
            entry = f"{name} ({detail})" if detail else name
            if len(self._names[reason]) < self.max_names:
                self._names[reason].append(entry)
            if len(self._total_names[reason]) < self.max_names and entry not in self._total_names[reason]:
                self._total_names[reason].append(entry)
        if first_ever and self.log:
            logger.warning(
                "Skipping bad record %r: %s (%s). Further records are "
                "counted in the BadRecordReport.",
                name,
                reason,
                detail or REASONS.get(reason, reason),
            )

    @property
    def counts(self):
        """dict reason -> count since the last `reset()`."""
        with self._lock:
            return dict(self._counts)

    @property
    def names(self):
        """dict reason -> first `max_names` names since the last `reset()`."""
        with self._lock:
            return {k: list(v) for k, v in self._names.items()}

    @property
    def total_counts(self):
        """dict reason -> count since creation."""
        with self._lock:
            return dict(self._total_counts)

    @property
    def total_names(self):
        with self._lock:
            return {k: list(v) for k, v in self._total_names.items()}

    @property
    def count(self):
        """Number of bad records since the last `reset()`."""
        with self._lock:
            return sum(self._counts.values())

    @property
    def total(self):
        """Number of bad records since creation."""
        with self._lock:
            return sum(self._total_counts.values())

    def __len__(self):
        return self.count

    def __bool__(self):
        return True  # a report is an object, even when empty

    def reset(self):
        """Clears the per-epoch counts and names; keeps the totals."""
        with self._lock:
            self._counts.clear()
            self._names.clear()
            self._seen_epoch.clear()

    def summary(self, cumulative=False):
        """A multi-line human-readable summary ("" parts skipped if none)."""
        with self._lock:
            counts = dict(self._total_counts if cumulative else self._counts)
            names = self._total_names if cumulative else self._names
            names = {k: list(v) for k, v in names.items()}
        total = sum(counts.values())
        if not total:
            return "No bad records."
        lines = [f"{total} bad record(s) skipped:"]
        for reason in sorted(counts):
            shown = names.get(reason, [])
            more = counts[reason] - len(shown)
            listing = ", ".join(shown) + (f", ... (+{more} more)" if more > 0 else "")
            lines.append(f"  {reason}: {counts[reason]} -- {listing}")
        return "\n".join(lines)

    def run_counts(self):
        """What a run skipped, named for what each figure counts (metrics.json):
        `skipped` (distinct bad records over the run), `skipped_by_reason`,
        and `first_skipped` (up to `max_names` names per reason)."""
        with self._lock:
            return {
                "skipped": sum(self._total_counts.values()),
                "skipped_by_reason": dict(self._total_counts),
                "first_skipped": {k: list(v) for k, v in self._total_names.items()},
            }

    def to_dict(self):
        """JSON-serialisable state: this epoch's figures (`count`, `counts`,
        `names`) and the run's (`total`, `total_counts`, `total_names`)."""
        with self._lock:
            return {
                "count": sum(self._counts.values()),  # this epoch
                "counts": dict(self._counts),
                "names": {k: list(v) for k, v in self._names.items()},
                "total": sum(self._total_counts.values()),  # distinct bad records in the run
                "total_counts": dict(self._total_counts),
                "total_names": {k: list(v) for k, v in self._total_names.items()},
            }

    def __repr__(self):
        return f"BadRecordReport(count={self.count}, total={self.total}, counts={self.counts})"


def report_bad_record(report, strict, reason, name, detail=""):
    """Raises `BadRecordError` when strict, else records it in `report`."""
    if strict:
        raise BadRecordError(reason, name, detail)
    if report is not None:
        report.add(reason, name, detail)


class BadRecordLogger(keras.callbacks.Callback):
    """Prints and logs the records skipped during each epoch.

    At each epoch end: adds `bad_records` (the number skipped this epoch) to
    the epoch logs (so it lands in `History` and CSV/TensorBoard loggers),
    prints the counts per reason and the first file names when there are
    any, then resets the per-epoch counts of the report (its
    `total_counts` keep the cumulative numbers).

    Records found while reading a manifest (empty or non-UTF-8 captions,
    ...) are found when the dataset is built, and so show in the first
    epoch (in every epoch when a dataset is built per epoch, as `keras-clip
    train` does); problems found while decoding (missing, empty, corrupt,
    truncated or oversized images) are found, and counted, every epoch.

    Args:
        report: the `BadRecordReport` given to (or attached as
            `dataset.bad_records` by) `image_text_dataset`.
        print_fn: callable used to print (default `print`).
        verbose: bool. Print (the log entry is always added).
        run_summary: bool. Print the whole run's summary when `fit` ends
            (turn off when `fit` is called once per epoch, and print
            `report.summary(cumulative=True)` after the last one).
        one_line: bool. Print one line of counts per epoch instead of the
            names (a log file then lists the bad records once, at the end).

    Example:
    ```python
    report = BadRecordReport()
    dataset = image_text_dataset("train.csv", tokenizer, 224, 64, report=report)
    model.fit(dataset, epochs=3, callbacks=[BadRecordLogger(report)])
    ```
    """

    def __init__(self, report, print_fn=None, verbose=True, run_summary=True, one_line=False):
        super().__init__()
        if not isinstance(report, BadRecordReport):
            raise TypeError(
                "BadRecordLogger needs a BadRecordReport; received "
                f"{report!r} of type {type(report).__name__}."
            )
        self.report = report
        self.print_fn = print_fn or print
        self.verbose = bool(verbose)
        self.run_summary = bool(run_summary)
        self.one_line = bool(one_line)

    def on_epoch_end(self, epoch, logs=None):
        count = self.report.count
        if logs is not None:
            logs["bad_records"] = count
        if count and self.verbose:
            if self.one_line:
                reasons = ", ".join(f"{k} {v}" for k, v in sorted(self.report.counts.items()))
                self.print_fn(f"Epoch {epoch + 1}: {count} bad record(s) skipped ({reasons}); listed at the end of the run.")
            else:
                self.print_fn(f"Epoch {epoch + 1}: {self.report.summary()}")
        self.report.reset()

    def on_train_end(self, logs=None):
        if self.verbose and self.run_summary and self.report.total:
            self.print_fn(
                "Bad records over the whole run: "
                + self.report.summary(cumulative=True)
            )
