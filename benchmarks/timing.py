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


def medians(calls, repeats, min_seconds, warmup=3):
    """``{name: median seconds per call}`` of each call in ``calls`` (a dict), timed in
    alternation round by round (machine noise hits all alike); warm-up calls compile first."""
    for fn in calls.values():
        for _ in range(warmup):
            fn()
    rounds = {name: [] for name in calls}
    for _ in range(repeats):
        for name, fn in calls.items():
            rounds[name].append(per_call_seconds(fn, min_seconds))
    return {name: statistics.median(values) for name, values in rounds.items()}


def compare(candidate, baseline, repeats, min_seconds, warmup=3):
    """``medians`` of two calls: ``(candidate seconds, baseline seconds)``."""
    timed = medians({"candidate": candidate, "baseline": baseline}, repeats, min_seconds, warmup)
    return timed["candidate"], timed["baseline"]


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
