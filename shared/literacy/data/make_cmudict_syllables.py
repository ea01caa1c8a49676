"""Writes cmudict-syllables.txt: one `word syllables` line per word of the CMU Pronouncing Dictionary.

    python make_cmudict_syllables.py path/to/cmudict.dict > cmudict-syllables.txt

`cmudict.dict` is the file shipped in the `cmudict` Python package (version 1.1.3 was used). Like
textstat (through nltk), a word's syllables are the stressed phones (those ending in a digit) of its
first pronunciation. Words with characters a textstat word can never contain (`.`, `-`, …) are left
out, as they are never looked up.
"""

import sys

counts = {}
with open(sys.argv[1], encoding="utf-8") as dictionary:
    for line in dictionary:
        line = line.split("#")[0].strip()
        if not line:
            continue
        label, phones = line.split(" ", 1)
        if "(" in label or label in counts:  # a second pronunciation
            continue
        if not all(c.isalnum() or c in "'_" for c in label):
            continue
        counts[label] = sum(1 for phone in phones.split() if phone[-1].isdigit())

print("# Syllables per word from the CMU Pronouncing Dictionary (see make_cmudict_syllables.py).")
print("# Copyright (C) 1993-2015 Carnegie Mellon University. All rights reserved. Licence: LICENSE-CMUDICT.")
for word in sorted(counts):
    print(word, counts[word])
