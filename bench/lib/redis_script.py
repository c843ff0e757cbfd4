#!/usr/bin/env python3
"""Helpers for running tollgate's Redis scripts directly, without drifting from tollgate.

    redis_script.py SRC_DIR {acquire|buckets} OUT_FILE
    redis_script.py --seen MONITOR_FILE SHA FROM TO [FROM TO ...]

The first form writes the exact text of one of the Lua scripts tollgate's Redis backend runs, read
from the source tree at run time.
Looks, under SRC_DIR/backends/redis and then under SRC_DIR, first for a .lua file of that script
(acquire.lua, ...; used byte for byte, as a file embedded by CMake is), else for the C++ raw string
literal that holds it (kAcquireLua = R"lua(...)lua"; the text between the delimiters, byte for
byte: the SHA1 Redis computes for the script is then the one tollgate's EVALSHA uses). Prints
where it found the script on stdout; exit status 1 if it finds none or more than one.

The second form reads the output of `redis-cli MONITOR` and prints the arguments (one per line) of
the first EVALSHA of script SHA that has the first FROM in one of its arguments, each FROM replaced
by its TO in every argument: the call tollgate made, as a template (exit status 1 if there is none).
"""
import pathlib
import re
import sys

SCRIPTS = {
    # script: (file names, C++ identifier)
    "acquire": (("acquire.lua", "lease_acquire.lua", "lock_acquire.lua"), "kAcquireLua"),
    "buckets": (("buckets.lua", "bucket.lua", "token_buckets.lua", "token_bucket.lua",
                 "throttle.lua"), "kBucketsLua"),
}


def find(root: pathlib.Path, names, ident):
    found = [(str(f), f.read_bytes()) for f in sorted(root.rglob("*.lua")) if f.name in names]
    if found:
        return found
    # R"delim( ... )delim" -- the delimiter is at most 16 characters, none of ( ) \ or space.
    pat = re.compile(rb"\b" + ident.encode() + rb"\b[^=;{]*=\s*R\"([^()\\\s]{0,16})\((.*?)\)\1\"",
                     re.S)
    for f in sorted(p for ext in ("*.cc", "*.h", "*.inc", "*.hpp", "*.cpp") for p in root.rglob(ext)):
        for m in pat.finditer(f.read_bytes()):
            found.append((f"{f} ({ident})", m.group(2)))
    return found


def unrepr(s: str) -> str:
    """Undoes the quoting of MONITOR's output (sdscatrepr)."""
    out, i = [], 0
    simple = {"n": "\n", "r": "\r", "t": "\t", "a": "\a", "b": "\b", '"': '"', "\\": "\\"}
    while i < len(s):
        c = s[i]
        if c == "\\" and i + 1 < len(s):
            n = s[i + 1]
            if n == "x" and i + 3 < len(s):
                out.append(chr(int(s[i + 2:i + 4], 16)))
                i += 4
                continue
            out.append(simple.get(n, n))
            i += 2
            continue
        out.append(c)
        i += 1
    return "".join(out)


def seen(path: str, sha: str, subs) -> int:
    line_re = re.compile(r'^[0-9.]+ \[[0-9]+ [^\]]+\] (.*)$')
    arg_re = re.compile(r'"((?:[^"\\]|\\.)*)"')
    with open(path, encoding="latin-1") as f:
        for line in f:
            m = line_re.match(line.rstrip("\r\n"))
            if not m:
                continue
            args = [unrepr(a) for a in arg_re.findall(m.group(1))]
            if (len(args) < 3 or args[0].upper() != "EVALSHA" or args[1] != sha
                    or not any(subs[0][0] in a for a in args)):
                continue
            for a in args:
                for old, new in subs:
                    a = a.replace(old, new)
                if "\n" in a:
                    print("redis_script.py: an argument holds a newline", file=sys.stderr)
                    return 1
                print(a)
            return 0
    print(f"redis_script.py: no EVALSHA {sha} with {subs[0][0]} in {path}", file=sys.stderr)
    return 1


def main() -> int:
    if len(sys.argv) >= 6 and sys.argv[1] == "--seen" and len(sys.argv) % 2 == 0:
        pairs = sys.argv[4:]
        return seen(sys.argv[2], sys.argv[3], list(zip(pairs[0::2], pairs[1::2])))
    if len(sys.argv) != 4 or sys.argv[2] not in SCRIPTS:
        print(__doc__, file=sys.stderr)
        return 2
    src, which, out = pathlib.Path(sys.argv[1]), sys.argv[2], sys.argv[3]
    names, ident = SCRIPTS[which]
    for root in (src / "backends" / "redis", src):
        if not root.is_dir():
            continue
        found = find(root, names, ident)
        if len(found) == 1:
            where, text = found[0]
            pathlib.Path(out).write_bytes(text)
            print(where)
            return 0
        if len(found) > 1:
            print(f"redis_script.py: the {which} script is in more than one place: "
                  + ", ".join(w for w, _ in found), file=sys.stderr)
            return 1
    print(f"redis_script.py: no {which} script ({', '.join(names)} or {ident} = R\"...\") under {src}",
          file=sys.stderr)
    return 1


if __name__ == "__main__":
    sys.exit(main())
