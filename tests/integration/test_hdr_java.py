"""Our .hlog and V2 encoding against the reference Java HdrHistogram: a JDK and the HdrHistogram
jar, which `make test` installs as root (Debian's default-jdk-headless, libhdrhistogram-java);
a jar in the local Maven repository serves as well."""
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from hpcbench.common.measure.histogram import Histogram
from hpcbench.common.measure.interval_log import IntervalLogWriter

SOURCE = Path(__file__).parent.parent / "support" / "java" / "HdrCheck.java"
JARS = [path for path in [Path("/usr/share/java/hdrhistogram.jar")] if path.is_file()] + sorted(
    Path.home().glob(".m2/repository/org/hdrhistogram/HdrHistogram/*/HdrHistogram-*.jar"))
pytestmark = pytest.mark.skipif(not (shutil.which("java") and shutil.which("javac") and JARS),
                                reason="needs a JDK and the HdrHistogram jar (as root, `make "
                                       "system-deps` installs both)")


@pytest.fixture(scope="module")
def java(tmp_path_factory):
    """Compile the checker once; return a function running it with arguments."""
    classes = tmp_path_factory.mktemp("hdrcheck")
    subprocess.run(["javac", "-cp", str(JARS[0]), "-d", str(classes), str(SOURCE)], check=True,
                   timeout=120)

    def run(*args: str) -> str:
        result = subprocess.run(["java", "-cp", f"{JARS[0]}:{classes}", "HdrCheck", *args],
                                capture_output=True, text=True, timeout=120)
        assert result.returncode == 0, result.stderr
        return result.stdout

    return run


def test_reference_reader_reads_our_interval_log(java, tmp_path):
    path = tmp_path / "histograms.hlog"
    rng = np.random.default_rng(3)
    expected = []
    with open(path, "w") as out:
        log = IntervalLogWriter(out, 1_700_000_000.0)
        for interval, tag in enumerate(("ttft", "itl", "ttft")):
            histogram = Histogram()
            histogram.record_many(rng.lognormal(15, 1.5, 10_000).astype(np.int64))
            log.write(tag, 1_700_000_000.0 + interval, 1.0, histogram)
            expected.append(f"{tag} {histogram.count} {histogram.percentile(50)} "
                            f"{histogram.percentile(99)}")
    assert java("read", str(path)).splitlines() == expected


def test_we_decode_what_the_reference_encodes(java):
    histogram = Histogram.decode(java("write").strip())
    values = np.arange(1_000, 1_000_001, 1_000, dtype=np.int64)
    ours = Histogram()
    ours.record_many(values)
    assert np.array_equal(histogram.counts, ours.counts)
    assert histogram.count == 1_000
