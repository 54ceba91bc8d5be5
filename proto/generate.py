"""Generates the Python modules for the .proto files into one flat package
directory (``generals_rl/_proto`` in the wheel).

Run by the build (CMakeLists.txt); also usable by hand::

    python proto/generate.py --out python/generals_rl/_proto
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

PROTO_ROOT = Path(__file__).resolve().parent
PROTOS = ["generals/experience/v1/experience.proto"]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", required=True, type=Path, help="the package directory to write")
    args = parser.parse_args(argv)

    import grpc_tools
    from grpc_tools import protoc

    out: Path = args.out
    out.mkdir(parents=True, exist_ok=True)
    well_known = Path(grpc_tools.__file__).parent / "_proto"
    for proto in PROTOS:
        # Generate into a scratch tree, then flatten: the modules import each
        # other relatively so the package can live anywhere.
        scratch = out / "_scratch"
        scratch.mkdir(exist_ok=True)
        code = protoc.main(
            [
                "grpc_tools.protoc",
                f"-I{PROTO_ROOT}",
                f"-I{well_known}",
                f"--python_out={scratch}",
                f"--pyi_out={scratch}",
                f"--grpc_python_out={scratch}",
                str(PROTO_ROOT / proto),
            ]
        )
        if code != 0:
            print(f"protoc failed on {proto} (exit {code})", file=sys.stderr)
            return 1
        package = proto.rsplit("/", 1)[0].replace("/", ".")
        stem = Path(proto).stem
        for generated in (scratch / Path(proto).parent).iterdir():
            text = generated.read_text()
            own_package = rf"^from {re.escape(package)} import "
            text = re.sub(own_package, "from . import ", text, flags=re.MULTILINE)
            (out / generated.name).write_text(text)
        for path in sorted(scratch.rglob("*"), reverse=True):
            path.unlink() if path.is_file() else path.rmdir()
        scratch.rmdir()
        if not (out / f"{stem}_pb2.py").exists():
            print(f"protoc wrote no {stem}_pb2.py", file=sys.stderr)
            return 1
    (out / "__init__.py").write_text(
        '"""Generated protocol buffer and gRPC modules (not edited by hand)."""\n'
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
