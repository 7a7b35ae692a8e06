"""Timing shared by the benchmarks: interleaved repetitions, medians, ratios in one process."""

import statistics
import time


def per_call_seconds(fn, min_seconds):
    """Seconds per call of ``fn``, averaged over as many calls as fill ``min_seconds``."""
    calls, start = 0, time.perf_counter()
    while True:
        fn()
        calls += 1
        elapsed = time.perf_counter() - start
        if elapsed >= min_seconds and calls >= 2:
            return elapsed / calls


def compare(candidate, baseline, repeats, min_seconds, warmup=3):
    """Median seconds per call of each, timed in alternation (machine noise hits both alike);
    warm-up calls compile first."""
    for fn in (candidate, baseline):
        for _ in range(warmup):
            fn()
    times = {0: [], 1: []}
    for _ in range(repeats):
        for index, fn in enumerate((candidate, baseline)):
            times[index].append(per_call_seconds(fn, min_seconds))
    return statistics.median(times[0]), statistics.median(times[1])


def compare_models(phase, candidate, baseline, x, y, repeats, min_seconds):
    """``compare`` of two Keras models' ``train_on_batch(x, y)`` (``phase="train"``) or
    ``predict_on_batch(x)`` (otherwise)."""
    if phase == "train":
        return compare(
            lambda: candidate.train_on_batch(x, y),
            lambda: baseline.train_on_batch(x, y),
            repeats,
            min_seconds,
        )
    return compare(
        lambda: candidate.predict_on_batch(x), lambda: baseline.predict_on_batch(x), repeats, min_seconds
    )


def litert_invoker(path, threads, image):
    """A call that runs the LiteRT model at ``path`` once on ``image``, in one interpreter."""
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_path=str(path), num_threads=threads)
    interpreter.allocate_tensors()
    interpreter.set_tensor(interpreter.get_input_details()[0]["index"], image)
    return interpreter.invoke
