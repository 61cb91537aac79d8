"""What the benches share: onnxruntime sessions, the mean cosine of two
batches of outputs, median latency, timed tool runs (with their peak RSS
and private memory), and the minilm_l6_v2 corpus data."""
import os
import subprocess
import time

import numpy as np
import onnxruntime as ort


def session(path, threads=1):
    opts = ort.SessionOptions()
    opts.log_severity_level = 3
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    return ort.InferenceSession(path, opts, providers=["CPUExecutionProvider"])


def cosine(a, b):
    """Mean cosine similarity of the rows of a and b (one row per sample)."""
    a = a.reshape(len(a), -1).astype(np.float64)
    b = b.reshape(len(b), -1).astype(np.float64)
    num = (a * b).sum(1)
    den = np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1)
    return float(np.mean(num / np.maximum(den, 1e-12)))


def latency(path, feeds, threads=1, runs=30, warmup=3):
    """Median milliseconds of one run of the model on feeds."""
    s = session(path, threads)
    for _ in range(warmup):
        s.run(None, feeds)
    t = []
    for _ in range(runs):
        start = time.perf_counter()
        s.run(None, feeds)
        t.append(time.perf_counter() - start)
    return 1000 * float(np.median(t))


def timed(cmd):
    """(wall seconds, completed process) of running cmd, output captured."""
    start = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True)
    return time.perf_counter() - start, proc


def status_kib(pid, key):
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith(key + ":"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def measured(cmd, timeout):
    """(seconds, peak RSS MiB, peak private MiB, error or None) of a fresh
    process. Both memories are sampled from /proc every 5 ms: VmHWM (the
    kernel's high-water mark, which a sample late in the run holds) and
    RssAnon (private pages; mapped weight files are not counted). A
    command that ends before the first sample shows 0. (The rusage of
    wait4 is no use here: a forked child keeps its parent's peak.)"""
    start = time.perf_counter()
    p = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    anon = rss = 0
    while p.poll() is None:
        anon = max(anon, status_kib(p.pid, "RssAnon"))
        rss = max(rss, status_kib(p.pid, "VmHWM"))
        if time.perf_counter() - start > timeout:
            p.kill()
            p.wait()
            return None, rss / 1024, anon / 1024, f"over {timeout:.0f} s"
        time.sleep(0.005)
    seconds = time.perf_counter() - start
    err = None if p.returncode == 0 else (p.stderr.read().strip().splitlines() or ["?"])[-1][:160]
    return seconds, rss / 1024, anon / 1024, err


REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CORPUS = os.environ.get("SCULPT_CORPUS", os.path.join(REPO, "..", "shared", "corpus"))


def minilm():
    """minilm_l6_v2: (model path, calib.npz path, eval feeds, the original's
    sentence embeddings on them)."""
    folder = os.path.join(CORPUS, "minilm_l6_v2")
    feeds = dict(np.load(os.path.join(folder, "eval.npz")))
    reference = np.load(os.path.join(folder, "eval_outputs.npz"))["sentence_embedding"]
    return os.path.join(folder, "model.onnx"), os.path.join(folder, "calib.npz"), feeds, reference
