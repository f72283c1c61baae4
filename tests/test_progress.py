"""Progress of long computations (the IWAE scoring): the expected duration said once, from the
rate after the first batch, and log lines with an ETA, driven by a fake clock."""

import io

from rich.console import Console

from tuner.ui.progress import TaskProgress


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def _progress(clock: FakeClock) -> tuple[TaskProgress, io.StringIO]:
    text = io.StringIO()
    console = Console(file=text, width=200, force_terminal=False)
    return TaskProgress(
        "IWAE bound", "image-samples", console=console, live=False, hint="--k shortens it", clock=clock
    ), text


def test_expected_duration_is_said_once_from_the_rate_after_the_first_batch():
    clock = FakeClock()
    progress, text = _progress(clock)
    with progress:
        clock.now = 20.0  # the first batch holds 15 s of compilation
        progress.update(100, 10_000)
        clock.now = 25.0  # then 100 image-samples per 5 s
        progress.update(200, 10_000)
        clock.now = 30.0
        progress.update(300, 10_000)
    lines = text.getvalue().splitlines()
    expected = [line for line in lines if "expected to take" in line]
    # 20 s to the first update, then 9,900 image-samples at 0.05 s each: 515 s.
    assert expected == ["IWAE bound: expected to take about 8:35 on this machine; --k shortens it"]


def test_a_log_gets_a_line_every_tenth_or_every_minute_with_a_real_eta():
    clock = FakeClock()
    progress, text = _progress(clock)
    with progress:
        for step in range(1, 101):  # 100 batches of 1 s each: a line per tenth of the way
            clock.now = float(step)
            progress.update(step * 10, 1000)
    lines = [line for line in text.getvalue().splitlines() if "image-samples (" in line]
    assert len(lines) == 10
    assert lines[0] == "IWAE bound: 100/1,000 image-samples (10%; 10 s, eta 1:30)"
    assert lines[-1].startswith("IWAE bound: 1,000/1,000 image-samples (100%")

    clock, (progress, text) = FakeClock(), _progress(FakeClock())
    progress.clock = clock
    with progress:
        for step in range(1, 6):  # slow batches: 0.1 % each, 40 s apart
            clock.now = 40.0 * step
            progress.update(step, 1000)
    lines = [line for line in text.getvalue().splitlines() if "image-samples (" in line]
    assert len(lines) == 2  # at 80 s and 160 s: a line at least once a minute, not only per tenth
    assert "eta " in lines[0] and "2/1,000" in lines[0]
