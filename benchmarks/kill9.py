"""kill -9 at random moments of ``deepclust embed`` and ``deepclust cluster --method temi``
(with a checkpoint folder), each followed by a re-run: are the outputs identical to an
uninterrupted run?

Images: crops, flips and JPEG re-encodes of scikit-learn's two sample photos, in two class
folders. Features for TEMI: a seeded Gaussian mixture. For each of ``--times`` seeded random
moments (below), the command is started, killed
with SIGKILL (the main process only, as a crash would leave DataLoader workers orphaned),
re-run at once, and its output compared with the reference run's: the store's rows, ids and
labels for ``embed``, ``labels.npy`` for TEMI. Prints one table row per moment. Not a test.

Moments are set by progress, not by the clock (a loaded machine changes the clock): an
``embed`` kill waits for a random number of committed shards (all but the last two), then a
random part of one shard's time as the reference run timed it.

TEMI's kills are aimed at training by its progress, not by the clock (a loaded machine
changes the clock): each kill draws a checkpoint step uniformly among those of the step
budget (``--temi-steps``, a checkpoint every ``--checkpoint-every`` steps) but the last two,
waits for ``checkpoint.json`` to reach it, then a random part of one checkpoint period (as
the reference run timed it), so that it lands between two checkpoints. A kill counts as
mid-training when the last checkpoint it left is below the step budget and no labels were
written.

    python benchmarks/kill9.py --times 10
"""

from __future__ import annotations

import argparse
import io
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np


def make_images(root: Path, n_per_class: int) -> None:
    from PIL import Image
    from sklearn.datasets import load_sample_images

    rng = np.random.default_rng(0)
    for name, photo in zip(("china", "flower"), load_sample_images().images, strict=True):
        folder = root / name
        folder.mkdir(parents=True)
        img = Image.fromarray(photo)
        for i in range(n_per_class):
            x, y = int(rng.integers(0, img.width - 160)), int(rng.integers(0, img.height - 160))
            crop = img.crop((x, y, x + 160, y + 160))
            if i % 2:
                crop = crop.transpose(Image.FLIP_LEFT_RIGHT)
            buf = io.BytesIO()
            crop.save(buf, "JPEG", quality=int(rng.integers(60, 95)))
            (folder / f"{name}-{i:03d}.jpg").write_bytes(buf.getvalue())


def command_env() -> dict:
    env = dict(os.environ)
    root = str(Path(__file__).resolve().parents[1])
    env["PYTHONPATH"] = root + os.pathsep + env.get("PYTHONPATH", "")
    env["TQDM_DISABLE"] = "1"
    return env


def run(argv: list[str], env: dict, kill_after: float | None = None,
        wait_for=None) -> tuple[int, float]:
    """Run ``python -m deepclust argv``; SIGKILL the process ``kill_after`` seconds after its
    start, or after ``wait_for`` (a path that appears, or a function that becomes true).
    Returns (exit status, wall seconds); -9 when it was killed."""
    t = time.perf_counter()
    proc = subprocess.Popen([sys.executable, "-m", "deepclust", *argv], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    if kill_after is None:
        _, err = proc.communicate()
        if proc.returncode != 0:
            raise SystemExit(f"deepclust {' '.join(argv)} failed: {err.decode()[-2000:]}")
        return 0, time.perf_counter() - t
    if wait_for is not None:  # the moment counts from when this becomes true
        ready = wait_for.exists if isinstance(wait_for, Path) else wait_for
        while not ready() and proc.poll() is None:
            time.sleep(0.02)
    try:
        proc.wait(timeout=kill_after)
    except subprocess.TimeoutExpired:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
    proc.stderr.close()
    return proc.returncode, time.perf_counter() - t


def first_appearance(argv: list[str], env: dict, path: Path) -> tuple[float, float]:
    """Run ``argv`` to the end; (seconds until ``path`` first existed, total seconds)."""
    t = time.perf_counter()
    proc = subprocess.Popen([sys.executable, "-m", "deepclust", *argv], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    seen = None
    while proc.poll() is None:
        if seen is None and path.exists():
            seen = time.perf_counter() - t
        time.sleep(0.02)
    err = proc.stderr.read()
    proc.stderr.close()
    if proc.returncode != 0:
        raise SystemExit(f"deepclust {' '.join(argv)} failed: {err.decode()[-2000:]}")
    total = time.perf_counter() - t
    if seen is None:
        raise SystemExit(f"{path} never appeared: no checkpoint was written during training")
    return seen, total


def store_state(path: Path) -> str:
    """What a killed embed left: committed shards, or nothing."""
    shards = path / "shards"
    if not path.exists():
        return "before the store existed"
    done = len(list(shards.glob("*.parquet"))) if shards.exists() else 0
    npy = len(list(shards.glob("*.npy"))) if shards.exists() else 0
    if (path / "index.parquet").exists():
        return f"after finalise ({done} shards)"
    return f"{done} shards committed, {npy} .npy written"


def store_output(path: Path):
    from deepclust.store import open_store

    st = open_store(path)
    return np.asarray(st.X), np.asarray(st.ids).astype(str), np.asarray(st.labels)


def checkpoint_step(state: Path) -> int:
    """The step ``checkpoint.json`` records (-1 before the first; it is replaced atomically)."""
    import json

    try:
        return int(json.loads(state.read_text()).get("step", -1))
    except (OSError, ValueError):
        return -1


def checkpoint_state(folder: Path, out: Path, n_steps: int) -> tuple[str, bool]:
    """What a killed TEMI run left, and whether the kill landed during training."""
    if (out / "labels.npy").exists():
        return "after labels were written", False
    state = folder / "heads" / "checkpoint.json"  # TEMI's phase folder
    if not state.exists():
        return "before the first checkpoint", False
    import json

    step = json.loads(state.read_text()).get("step")
    return f"training, last checkpoint step {step} of {n_steps}", step < n_steps


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--times", type=int, default=10, help="moments per command")
    ap.add_argument("--images", type=int, default=150, help="images per class folder")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--commands", default="embed,temi", help="which: embed, temi or both")
    ap.add_argument("--temi-steps", type=int, default=3000, help="TEMI's step budget")
    ap.add_argument("--checkpoint-every", type=int, default=50, help="TEMI's checkpoint period")
    args = ap.parse_args()
    rng = np.random.default_rng(args.seed)
    env = command_env()
    work = Path(tempfile.mkdtemp(prefix="kill9-"))
    rows = []
    try:
        photos = work / "photos"
        make_images(photos, args.images)
        embed_times = args.times if "embed" in args.commands.split(",") else 0
        embed = ["embed", str(photos), "--encoder", "effnet-lite0", "--shard-size", "8",
                 "--batch-size", "8", "--workers", "1", "--no-progress"]
        if embed_times:
            t_first, t_ref = first_appearance([*embed, "--out", str(work / "ref-store")], env,
                                              work / "ref-store" / "shards")
            ref = store_output(work / "ref-store")
            print(f"embed reference: shards folder at {t_first:.1f} s, done at {t_ref:.1f} s",
                  flush=True)
        n_shards = len(list((work / "ref-store" / "shards").glob("*.parquet")))
        period = (t_ref - t_first) / max(1, n_shards)  # about one shard
        for i in range(embed_times):
            out = work / f"store-{i}"
            # after a random number of committed shards, then part of one shard's time
            target = int(rng.integers(0, max(1, n_shards - 2)))
            after = float(rng.uniform(0.0, 1.0) * period)
            rc, _ = run([*embed, "--out", str(out)], env, kill_after=after,
                        wait_for=lambda shards=out / "shards", t=target: shards.is_dir() and
                        len(list(shards.glob("*.parquet"))) >= t)
            what = store_state(out) if rc == -9 else f"finished before the kill (exit {rc})"
            run([*embed, "--out", str(out)], env)
            got = store_output(out)
            same = all(np.array_equal(a, b) for a, b in zip(ref, got, strict=True))
            rows.append(("embed", f"{target} shards + {after:4.1f} s (run {t_ref:.1f} s)", what,
                         same))
            print(*rows[-1], sep=" | ", flush=True)

        rng_x = np.random.default_rng(1)
        centres = rng_x.normal(0, 4, (5, 16))
        X = (centres[rng_x.integers(0, 5, 1500)] + rng_x.normal(0, 1, (1500, 16)))
        np.save(work / "X.npy", X.astype(np.float32))

        def temi(out: Path, ckpt: Path) -> list[str]:
            return ["cluster", str(work / "X.npy"), "--method", "temi", "--k", "5",
                    "--no-label-free", "--quiet", "--out", str(out),
                    "--param", f"checkpoint_dir={ckpt}",
                    "--param", f"checkpoint_every={args.checkpoint_every}",
                    "--param", f"n_steps={args.temi_steps}", "--param", "n_heads=2",
                    "--param", "hidden_dim=64",
                    "--param", "bottleneck_dim=32", "--param", "n_neighbors=10",
                    "--param", "batch_size=128"]

        temi_times = args.times if "temi" in args.commands.split(",") else 0
        landed = 0
        if temi_times:
            first = work / "ckpt-ref" / "heads" / "checkpoint.json"
            t_first, t_ref = first_appearance(temi(work / "temi-ref", work / "ckpt-ref"), env,
                                              first)
            ref_labels = np.load(work / "temi-ref" / "labels.npy")
            print(f"TEMI reference: first checkpoint at {t_first:.1f} s, done at {t_ref:.1f} s "
                  f"({args.temi_steps} steps)", flush=True)
        every = args.checkpoint_every
        period = (t_ref - t_first) / max(1, args.temi_steps // every - 1)  # one checkpoint
        for i in range(temi_times):
            out, ckpt = work / f"temi-{i}", work / f"ckpt-{i}"
            target = every * int(rng.integers(1, max(2, args.temi_steps // every - 1)))
            after = float(rng.uniform(0.0, 1.0) * period)
            rc, _ = run(temi(out, ckpt), env, kill_after=after,
                        wait_for=lambda state=ckpt / "heads" / "checkpoint.json", t=target:
                        checkpoint_step(state) >= t)
            if rc == -9:
                what, during = checkpoint_state(ckpt, out, args.temi_steps)
            else:
                what, during = f"finished before the kill (exit {rc})", False
            landed += during
            shutil.rmtree(out, ignore_errors=True)
            run(temi(out, ckpt), env)
            same = np.array_equal(np.load(out / "labels.npy"), ref_labels)
            rows.append(("cluster --method temi",
                         f"checkpoint {target} + {after:4.1f} s (run {t_ref:.1f} s)", what, same))
            print(*rows[-1], sep=" | ", flush=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print("\n| command | moment | what was interrupted | identical |")
    print("| --- | --- | --- | --- |")
    for command, moment, what, same in rows:
        print(f"| {command} | {moment} | {what} | {'yes' if same else 'NO'} |")
    if temi_times:
        print(f"\nTEMI kills that landed during training: {landed} of {temi_times}")
    print(f"identical after the re-run: {sum(r[3] for r in rows)} of {len(rows)}")


if __name__ == "__main__":
    main()
