"""Local cost of tui-tuner's model download path vs writing the same bytes to a plain file.

    PYTHONPATH=. python bench/model_download.py               # 512 MiB, 8 MiB chunks, 3 repeats
    PYTHONPATH=. python bench/model_download.py --mib 2048

There is no hub here, so the transfer is the only fake: `http_get` hands over in-memory chunks
as fast as they can be written. What is measured is everything else `ensure_model` does
(the plan, the per-file lock, appending to `.incomplete`, progress accounting, the rename
and snapshot link). The ratio (ours / plain write) should stay near 1: a real download is
bounded by the network, tens to hundreds of MB/s. A plain write runs first to warm the disk.
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from pathlib import Path
from types import SimpleNamespace

CHUNK = 8 << 20


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mib", type=int, default=512)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    os.environ.pop("HF_HUB_OFFLINE", None)
    from huggingface_hub import HfApi, file_download

    from tui_tuner.models import download

    size = args.mib << 20
    block = os.urandom(CHUNK)

    def listing(self, repo_id, **_):
        return SimpleNamespace(sha="a" * 40, siblings=[
            SimpleNamespace(rfilename="config.json", size=2, blob_id="c" * 40, lfs=None),
            SimpleNamespace(rfilename="model.safetensors", size=size, blob_id="b" * 40,
                            lfs=SimpleNamespace(sha256="d" * 64, size=size))])

    def transfer(url, fh, *, resume_size=0, tqdm_class=None, expected_size=None, **_):
        bar = tqdm_class(total=expected_size, initial=resume_size)
        if url.endswith("config.json"):
            fh.write(b"{}")
            bar.update(2)
            return
        for start in range(0, size, CHUNK):
            piece = block[: min(CHUNK, size - start)]
            fh.write(piece)
            bar.update(len(piece))

    HfApi.model_info = listing
    file_download.http_get = transfer

    def plain() -> float:
        with tempfile.TemporaryDirectory() as d:
            t = time.perf_counter()
            with open(Path(d) / "raw", "wb") as fh:
                for start in range(0, size, CHUNK):
                    fh.write(block[: min(CHUNK, size - start)])
            return time.perf_counter() - t

    def ours() -> float:
        with tempfile.TemporaryDirectory() as d:
            t = time.perf_counter()
            download.ensure_model("bench/model", cache_dir=Path(d), progress=lambda p: None)
            return time.perf_counter() - t

    plain()
    a = statistics.median(ours() for _ in range(args.repeats))
    b = statistics.median(plain() for _ in range(args.repeats))
    print(f"{args.mib} MiB  ensure_model {a:.2f}s ({args.mib / a:.0f} MiB/s)  plain write {b:.2f}s "
          f"({args.mib / b:.0f} MiB/s)  ratio {a / b:.2f}")


if __name__ == "__main__":
    main()
