"""Install the Debian packages the cluster and integration suites need (as root), or say why not.

Run by `make test`. Only missing packages are installed, so a second run costs one dpkg query.
Without root the suites that need these packages skip with a printed reason.
"""
import os
import shutil
import subprocess
import sys


def missing(packages: list[str]) -> list[str]:
    """Packages that dpkg does not report as installed."""
    absent = []
    for name in packages:
        probe = subprocess.run(["dpkg-query", "-W", "-f=${Status}", name],
                               capture_output=True, text=True)
        if "install ok installed" not in probe.stdout:
            absent.append(name)
    return absent


def main(packages: list[str]) -> int:
    if not shutil.which("dpkg-query"):
        print("system-deps: not a Debian system; suites needing Slurm, Prometheus, Redis or "
              "Chromium will skip with a reason.")
        return 0
    absent = missing(packages)
    if not absent:
        return 0
    if os.geteuid() != 0:
        print(f"system-deps: not root, so not installing {' '.join(absent)}; the suites that "
              "need them will skip with a reason. Run 'sudo make system-deps' to install them.")
        return 0
    print(f"system-deps: installing {' '.join(absent)}")
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    subprocess.run(["apt-get", "update", "-qq"], check=True, env=env)
    subprocess.run(["apt-get", "install", "-y", "-qq", "--no-install-recommends", *absent],
                   check=True, env=env)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
