"""Seeded generators of varied test strings for the CLIP tokenizer parity tests."""

import random

WORDS = [
    "a", "photo", "of", "the", "cat", "Dog", "RED", "circle", "square", "blue", "tiny",
    "running", "quickly", "Butterfly", "dragonfly", "unbelievable", "antidisestablishmentarianism",
    "New", "York", "keras", "CLIP", "ViT", "tf.data", "e-mail", "well-known", "x", "I",
]
CONTRACTIONS = ["it's", "don't", "we're", "they've", "I'm", "you'll", "he'd", "IT'S", "DON'T", "o'clock", "'s"]
ACCENTED = ["café", "naïve", "Ångström", "Ñandú", "straße", "Crème brûlée", "Zürich", "façade", "ÉCOLE", "São Paulo"]
CJK = ["東京", "北京大学", "日本語のテキスト", "한국어", "中文", "カタカナ", "ひらがな", "漢字と仮名"]
EMOJI = ["🐱", "🐶", "👍🏽", "👨‍👩‍👧", "🇫🇷", "❤️", "😀😀", "🚀"]
ENTITIES_COMMON = ["&amp;", "&lt;", "&gt;", "&quot;", "&#39;", "&amp;amp;", "&amp;lt;b&amp;gt;", "&nbsp;", "&apos;"]
ENTITIES_RARE = ["&eacute;", "&#233;", "&hellip;", "&copy;", "&#x1F600;", "&mdash;", "&amp", "&lt"]
PUNCTUATION = ["!", "!!!", "...", "?!", "--", "(", ")", "[x]", '"', "''", "%", "$5", "@user", "#tag", ":)", "/", "\\", "*_*"]
WHITESPACE_SAFE = [" ", "  ", "\t", "\n", " \n\t ", "\u00a0", "\u3000", "\u2009", "\r\n"]
# Characters the graph path's cleaning handles like ftfy does.
FTFY_SIMPLE = ["ＡＢＣ", "ｆｕｌｌ", "“quoted”", "‘single’", "ﬁne", "ﬂag", "e\u0301", "A\u030a"]
# Characters where cleaning or casing may differ between the paths.
HARD = [
    "\u0130stanbul", "ΣΑΣ", "ΟΔΟΣ", "ẞ", "Ǆ", "ﾊﾝｶｸ", "\x00\x07", "\u200b", "\u200d", "\ufeff",
    "Ã©", "â€™", "\x85", "\u2028", "\u1680", "\u00ad", "ᏣᎳᎩ", "\U0001d400",
]
DIGITS = ["0", "7", "42", "2024", "3.14159", "1,000,000", "१२३", "٣٤", "६", "½", "²", "Ⅻ"]
SPECIALS = ["<start_of_text>", "<end_of_text>", "<|endoftext|>", "</w>"]

SAFE_POOLS = [WORDS, WORDS, WORDS, CONTRACTIONS, ACCENTED, CJK, EMOJI, ENTITIES_COMMON, PUNCTUATION, DIGITS, SPECIALS]
ALL_POOLS = SAFE_POOLS + [ENTITIES_RARE, FTFY_SIMPLE, HARD]


def _random_number(rng):
    return str(rng.randint(0, 10 ** rng.randint(1, 12)))


def _random_text(rng, pools, whitespace, long_ok=True):
    n = rng.choice([0, 1, 2, 3, 5, 8, 12]) if (not long_ok or rng.random() < 0.85) else rng.randint(40, 120)
    pieces = []
    for _ in range(n):
        if rng.random() < 0.08:
            piece = _random_number(rng)
        else:
            piece = rng.choice(rng.choice(pools))
        if rng.random() < 0.15:
            piece = piece.upper()
        pieces.append(piece)
        pieces.append(rng.choice(whitespace) if rng.random() < 0.8 else "")
    if rng.random() < 0.2:
        pieces.insert(0, rng.choice(whitespace))
    return "".join(pieces)


def varied_strings(n=2000, seed=0):
    """`n` strings mixing every pool: the eager path must match them all."""
    rng = random.Random(seed)
    fixed = ["", " ", "\t\n", "A", "a" * 500, "hello " * 100]
    texts = fixed + [_random_text(rng, ALL_POOLS, WHITESPACE_SAFE) for _ in range(n - len(fixed))]
    return texts


def graph_safe_strings(n=500, seed=1):
    """Strings whose cleaning the graph path does exactly like ftfy + OpenAI:
    ASCII, precomposed accents, CJK, emoji, the common HTML entities,
    Unicode whitespace, digits, punctuation, fullwidth ASCII, curly quotes,
    ligatures, combining accents."""
    rng = random.Random(seed)
    pools = SAFE_POOLS + [FTFY_SIMPLE]
    return [""] + [_random_text(rng, pools, WHITESPACE_SAFE) for _ in range(n - 1)]
