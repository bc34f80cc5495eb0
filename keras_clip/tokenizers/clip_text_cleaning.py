"""OpenAI's CLIP text cleaning: exact in Python (ftfy, HTML unescaping twice,
whitespace, lower case), and in TensorFlow ops for graphs (tf.data, an
exported SavedModel), where ftfy cannot run (see `clean_text_graph`)."""

import html

import numpy as np
import tensorflow as tf


_WHITESPACE_PATTERN = (
    r"[\t\n\x{0b}\f\r\x{1c}-\x{1f} \x{85}\x{a0}\x{1680}\x{2000}-\x{200a}"
    r"\x{2028}\x{2029}\x{202f}\x{205f}\x{3000}]+"
)
# The HTML entities the graph path unescapes (one pass: these in order,
# `&amp;` last). As `html.unescape` reads them: lower-case, or upper-case
# where HTML5 defines it, `;` optional where HTML5 allows it.
_HTML_ENTITIES = (
    (r"&(?:lt|LT);?", "<"),
    (r"&(?:gt|GT);?", ">"),
    (r"&(?:quot|QUOT);?", '"'),
    (r"&apos;", "'"),
    (r"&#0*39;?", "'"),
    (r"&#[xX]0*27;?", "'"),
    (r"&nbsp;?", "\u00a0"),
    (r"&(?:amp|AMP);?", "&"),
)
# As ftfy reads them: `;` required, lower-case or all-caps.
_FTFY_ENTITIES = (
    (r"&(?:lt|LT);", "<"),
    (r"&(?:gt|GT);", ">"),
    (r"&(?:quot|QUOT);", '"'),
    (r"&(?:apos|APOS);", "'"),
    (r"&#0*39;", "'"),
    (r"&#[xX]0*27;", "'"),
    (r"&(?:nbsp|NBSP);", "\u00a0"),
    (r"&(?:amp|AMP);", "&"),
)
# ftfy's fix_latin_ligatures table (the typographic ligatures and digraphs).
_LIGATURES = {
    "\u0132": "IJ", "\u0133": "ij", "\u0149": "\u02bcn",
    "\u01f1": "DZ", "\u01f2": "Dz", "\u01f3": "dz",
    "\u01c4": "D\u017d", "\u01c5": "D\u017e", "\u01c6": "d\u017e",
    "\u01c7": "LJ", "\u01c8": "Lj", "\u01c9": "lj",
    "\u01ca": "NJ", "\u01cb": "Nj", "\u01cc": "nj",
    "\ufb00": "ff", "\ufb01": "fi", "\ufb02": "fl",
    "\ufb03": "ffi", "\ufb04": "ffl", "\ufb05": "\u017ft", "\ufb06": "st",
}  # fmt: skip


def clean_text_eager(text):
    """OpenAI's exact cleaning: ftfy, HTML unescape twice, whitespace, lower."""
    try:
        import ftfy
    except ImportError as e:  # pragma: no cover - ftfy is a dependency
        raise ImportError(
            "CLIPTokenizer needs `ftfy` to clean text exactly as OpenAI does "
            "(pip install 'ftfy>=6')."
        ) from e
    text = ftfy.fix_text(text)
    text = html.unescape(html.unescape(text)).strip()
    return " ".join(text.split()).lower()


def clean_text_graph(strings):
    """OpenAI's cleaning with TensorFlow ops only (tf.data / SavedModel).

    ftfy cannot run in a graph. This does the parts of it that are
    character-level and exact, then OpenAI's own steps:
    1. NFC normalisation, remove ftfy's control characters, fullwidth ASCII
       -> ASCII, curly quotes -> straight quotes, Latin ligatures split;
    2. HTML entities `&lt; &gt; &quot; &#39; &#x27; &apos; &nbsp; &amp;`
       unescaped as ftfy does (line by line until the first line with a
       `<`, nested up to 4 levels) and then twice as `html.unescape` does
       (OpenAI), each with its own rules on case and `;`; other entities
       are left as they are;
    3. whitespace runs (Python's definition) -> one space, stripped;
    4. Unicode lower-casing (`tf.strings.lower`).
    Not done: ftfy's mojibake repair (`Ã©`), C1 controls (U+0085 becomes a
    space here, an ellipsis in ftfy), the rarer HTML entities (`&eacute;`,
    `&#233;`), halfwidth katakana; such text tokenizes differently from
    OpenAI in a graph (eagerly it is exact).
    """
    import tensorflow_text as tf_text

    lines_with_tag = tf.strings.split(strings, sep="\n")  # ragged (B, lines)
    lines_with_tag = tf.ragged.map_flat_values(tf.strings.regex_full_match, lines_with_tag, r"(?s).*<.*")
    strings = tf_text.normalize_utf8(strings, "NFC")
    # Character-level maps on code points.
    cps = tf.strings.unicode_decode(strings, "UTF-8", errors="replace")  # ragged (B, None)
    flat = cps.flat_values
    flat = tf.where((flat >= 0xFF01) & (flat <= 0xFF5E), flat - 0xFEE0, flat)
    flat = tf.where((flat == 0x2BC) | ((flat >= 0x2018) & (flat <= 0x201B)), 0x27, flat)
    flat = tf.where((flat >= 0x201C) & (flat <= 0x201F), 0x22, flat)
    cps = cps.with_flat_values(flat)
    strings = tf.strings.unicode_encode(cps, "UTF-8")
    strings = tf.strings.regex_replace(
        strings, r"[\x{00}-\x{08}\x{0b}\x{0e}-\x{1f}\x{7f}\x{206a}-\x{206f}\x{fff9}-\x{fffc}\x{feff}]", ""
    )
    for ligature, letters in _LIGATURES.items():
        strings = tf.strings.regex_replace(strings, ligature, letters, replace_global=True)
    strings = _ftfy_unescape(strings, lines_with_tag)
    strings = _unescape(_unescape(strings, _HTML_ENTITIES), _HTML_ENTITIES)  # OpenAI
    strings = tf.strings.regex_replace(strings, _WHITESPACE_PATTERN, " ")
    strings = tf.strings.strip(strings)
    return tf.strings.lower(strings, encoding="utf-8")


def _unescape(strings, entities):
    """One unescaping pass over the (pattern, character) pairs `entities`."""
    for entity, char in entities:
        strings = tf.strings.regex_replace(strings, entity, char)
    return strings


def _ftfy_unescape(strings, lines_with_tag, depth=4):
    """ftfy's HTML step: line by line, until the first line holding a `<`
    (in the original text; from there on ftfy stops), unescape
    `_FTFY_ENTITIES` repeatedly (ftfy repeats its fixes until nothing changes;
    here up to `depth` nested levels such as `&amp;amp;lt;`)."""
    lines = tf.strings.split(strings, sep="\n")  # ragged (B, lines)
    row = lines.value_rowids()  # (L,)
    index_in_row = tf.range(tf.size(row, out_type=tf.int64)) - tf.gather(lines.row_starts(), row)  # (L,)
    big = tf.constant(np.iinfo(np.int64).max, tf.int64)
    first_tag = tf.math.unsorted_segment_min(
        tf.where(lines_with_tag.flat_values, index_in_row, big), row, lines.nrows()
    )  # (B,)
    keep = index_in_row >= tf.gather(first_tag, row)  # (L,)
    flat = lines.flat_values
    unescaped = flat
    for _ in range(depth):
        unescaped = _unescape(unescaped, _FTFY_ENTITIES)
    flat = tf.where(keep, flat, unescaped)
    return tf.strings.reduce_join(lines.with_flat_values(flat), axis=-1, separator="\n")
