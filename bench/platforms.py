"""Which versions of nn3's dependencies install as wheels on Windows, macOS and Linux.

    python bench/platforms.py > bench/platforms.md     # pip --dry-run per platform and Python
    python bench/platforms.py --pins                   # this environment's pins (constraints.txt)

For each platform and Python version, asks pip to resolve the dependencies in
pyproject.toml (with the test and plot extras) under constraints.txt, taking wheels only
(``--only-binary=:all: --platform ... --python-version ...``, with environment markers
evaluated as there); nothing is installed.
A platform whose set does not resolve is reported with pip's last line. ``--pins``
prints the dependency closure of nn3[test,plot,web] as installed here, package==version,
for constraints.txt.
"""
from __future__ import annotations

import argparse
import importlib.metadata as md
import json
import subprocess
import sys
import tempfile
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PLATFORMS = {  # name: (pip --platform tags, the environment markers see there)
    "Windows x86-64": (["win_amd64"], {"sys_platform": "win32", "platform_system": "Windows",
                                       "os_name": "nt", "platform_machine": "AMD64"}),
    "macOS arm64": (["macosx_14_0_arm64"], {"sys_platform": "darwin", "platform_system": "Darwin",
                                            "os_name": "posix", "platform_machine": "arm64"}),
    "Linux x86-64": ([f"manylinux_2_{y}_x86_64" for y in range(28, 4, -1)]
                     + ["manylinux2014_x86_64", "manylinux2010_x86_64", "manylinux1_x86_64"],
                     {"sys_platform": "linux", "platform_system": "Linux", "os_name": "posix",
                      "platform_machine": "x86_64"}),
}
# pip's --platform and --python-version pick wheels but leave environment markers
# (``uvloop; platform_system != "Windows"``) to this machine's values: run pip with the
# target's instead.
PIP_AS_THERE = """
import json, sys
from pip._vendor.packaging import markers
mine, there = markers.default_environment, json.loads(sys.argv[1])
markers.default_environment = lambda: {**mine(), **there}
from pip._internal.cli.main import main
sys.exit(main(sys.argv[2:]))
"""
PYTHONS = ("3.11", "3.12", "3.13", "3.14")
EXTRAS = ("test", "plot", "web")


def requirements(extras=EXTRAS) -> list[str]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    return project["dependencies"] + [r for e in extras for r in project["optional-dependencies"][e]]


def resolve(tags: list[str], markers: dict, python: str, extras=EXTRAS) -> dict[str, str] | str:
    """package -> version that pip would install there, or pip's complaint."""
    there = {**markers, "python_version": python, "python_full_version": f"{python}.0"}
    with tempfile.TemporaryDirectory() as tmp:
        report = Path(tmp) / "report.json"
        cmd = [sys.executable, "-c", PIP_AS_THERE, json.dumps(there),
               "install", "--dry-run", "--ignore-installed", "--quiet",
               "--only-binary=:all:", "--python-version", python, "--report", str(report),
               "-c", str(ROOT / "constraints.txt")]
        for tag in tags:
            cmd += ["--platform", tag]
        out = subprocess.run(cmd + requirements(extras), capture_output=True, text=True)
        if out.returncode != 0:
            lines = [l for l in out.stderr.splitlines() if l.strip() and "is ignored" not in l]
            return lines[-1] if lines else f"pip exited {out.returncode}"
        got = json.loads(report.read_text(encoding="utf-8"))["install"]
        return {i["metadata"]["name"]: i["metadata"]["version"] for i in got}


def pins() -> list[str]:
    """The installed closure of nn3[test,plot,web]'s requirements, package==version."""
    from packaging.requirements import Requirement
    from packaging.utils import canonicalize_name
    todo, seen = [(Requirement(r), "") for r in requirements()], set()
    while todo:
        req, _ = todo.pop()
        key = (canonicalize_name(req.name), tuple(sorted(req.extras)))
        if key in seen:
            continue
        seen.add(key)
        for raw in md.distribution(req.name).requires or []:
            sub = Requirement(raw)
            if sub.marker is None or any(sub.marker.evaluate({"extra": e}) for e in ("", *req.extras)):
                todo.append((sub, ""))
    names = sorted({name for name, _ in seen})
    return [f"{md.distribution(n).metadata['Name']}=={md.version(n)}" for n in names]


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--pins", action="store_true", help="print this environment's pins")
    if p.parse_args().pins:
        print("\n".join(pins()))
        return
    print("# Wheels per platform\n")
    print(f"`python bench/platforms.py`: pip {md.version('pip')} `install --dry-run --only-binary=:all:` of "
          f"pyproject.toml's dependencies with the extras {', '.join(EXTRAS)}, under constraints.txt.\n")
    results = {(name, py): resolve(tags, env, py) for name, (tags, env) in PLATFORMS.items() for py in PYTHONS}
    sets = [set(got.items()) for got in results.values() if isinstance(got, dict)]
    common = set.intersection(*sets) if sets else set()
    show = lambda items: ", ".join(f"{k}=={v}" for k, v in sorted(items, key=lambda kv: kv[0].lower()))  # noqa: E731
    print(f"Resolved on every platform below ({len(common)} wheels): {show(common)}\n")
    for (name, py), got in results.items():
        tags = PLATFORMS[name][0][0] + (" and older" if len(PLATFORMS[name][0]) > 1 else "")
        if isinstance(got, str):
            print(f"- **{name}, Python {py}** (`{tags}`): does NOT resolve: {got}")
        else:
            extra = set(got.items()) - common
            print(f"- **{name}, Python {py}** (`{tags}`): {len(got)} wheels, the common set"
                  + (f" and {show(extra)}" if extra else ""))
    linux_tags, linux_env = PLATFORMS["Linux x86-64"]
    for py in PYTHONS:  # the GPU extra: Linux only (and Linux inside WSL2)
        got = resolve(linux_tags, linux_env, py, EXTRAS + ("cuda",))
        results[("cuda", py)] = got
        print(f"- **Linux x86-64 with the cuda extra, Python {py}**: "
              + (f"does NOT resolve: {got}" if isinstance(got, str) else
                 f"{len(got)} wheels, the common set and {show(set(got.items()) - common)}"))
    sys.exit(0 if all(isinstance(g, dict) for g in results.values()) else 1)


if __name__ == "__main__":
    main()
