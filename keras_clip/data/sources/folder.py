"""The "folder" kind: images with sidecar caption files (`cat.jpg` + `cat.txt`,
one caption per line), found recursively."""

import os

from keras_clip.data import bad_records as br
from keras_clip.data.sources.base import captions_from_lines, register_source
from keras_clip.data.sources.records import Collector, RecordSource

IMAGE_EXTENSIONS = ("jpg", "jpeg", "png", "bmp", "gif", "webp", "tif", "tiff")
FOLDER_OPTIONS = ("caption_extension", "image_extensions", "recursive")


class FolderSource(RecordSource):
    """A folder of images with sidecar captions.

    Options: `caption_extension=".txt"`, `image_extensions`
    (default `IMAGE_EXTENSIONS`), `recursive=True`. An image without its
    caption file, or with an empty or non-UTF-8 one, is a bad record.
    """

    @classmethod
    def open(cls, path, strict=False, caption_extension=".txt", image_extensions=IMAGE_EXTENSIONS, recursive=True):
        path = os.fspath(path)
        extensions = {"." + e.lower().lstrip(".") for e in image_extensions}
        caption_extension = "." + caption_extension.lstrip(".")
        images = []
        for directory, subdirs, files in os.walk(path):
            subdirs.sort()
            for file in sorted(files):
                if os.path.splitext(file)[1].lower() in extensions:
                    images.append(os.path.join(directory, file))
            if not recursive:
                break
        if not images:
            raise ValueError(
                f"Image folder {path!r} holds no images (looked for files ending "
                f"in {sorted(extensions)}{', recursively' if recursive else ''})."
            )
        collector = Collector(strict)
        for image_path in images:
            caption_path = os.path.splitext(image_path)[0] + caption_extension
            try:
                with open(caption_path, "rb") as handle:
                    data = handle.read()
            except FileNotFoundError:
                collector.problem(br.MISSING_CAPTION, image_path, f"no {os.path.basename(caption_path)}")
                continue
            except OSError as error:
                collector.problem(br.UNREADABLE_FILE, caption_path, str(error))
                continue
            for caption in captions_from_lines(data, caption_path, collector.problem):
                collector.add(image_path, caption, None, caption_path, False)
        records = collector.records()
        if not records:
            raise ValueError(
                f"Image folder {path!r} has {len(images)} image(s) but none with a "
                f"usable {caption_extension} caption file "
                f"({len(collector.problems)} bad record(s))."
            )
        return cls(path, records, False, collector.problems)


register_source(
    "folder", FolderSource,
    detect=lambda spec, options: isinstance(spec, (str, os.PathLike)) and os.path.isdir(spec),
)
