"""Proves scripts/debian-packages.txt complete: every file that the build
resolved, every program that the Makefile and the scripts under bench/,
tests/ and scripts/ call, and every Python module that tools/, bench/ and
tests/ import must belong to a Debian package that is either listed or
pulled in by a listed package (Depends/Pre-Depends, recursively), or is part
of Debian's essential base.

Run through scripts/check-deps.sh. Exit 0 when complete, 1 with one line per
missing package (naming the files that need it and where they are used),
2 on a usage or environment error.
"""

import argparse
import ast
import os
import re
import shutil
import subprocess
import sys
from collections import defaultdict

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SYSTEM_PYTHON = "/usr/bin/python3"

# Words in a command position that are not programs on PATH.
# (Words PREFIX_WORDS skips, such as `if` and `time`, never get here.)
SHELL_WORDS = {
    "fi", "for", "done", "case", "esac", "in", "function", "select", "}", "[[", "]]",
    "local", "export", "declare", "readonly", "return", "exit", "set", "unset",
    "shift", "trap", "cd", "source", ".", "eval", "wait", "mapfile",
    "read", "echo", "printf", "true", "false", "test", "[", "break", "continue",
    "type", "kill", "pushd", "popd", "let", "builtin", "ulimit",
}
# Prefixes whose next word is the program that runs.
PREFIX_WORDS = {"env", "exec", "nice", "nohup", "sudo", "$SUDO", "command", "time", "if", "then",
                "else", "elif", "while", "until", "do", "!", "{"}


def fail(message):
    print(f"check-deps: {message}", file=sys.stderr)
    sys.exit(2)


def read_package_list(path):
    try:
        with open(path) as handle:
            text = handle.read()
    except OSError as error:
        fail(f"cannot read the package list {path}: {error.strerror}")
    packages = set()
    for line in text.splitlines():
        packages.update(line.split("#", 1)[0].split())
    if not packages:
        fail(f"{path} lists no packages")
    return packages


def inside_project(path, build_dirs):
    real = os.path.realpath(path)
    for top in [ROOT] + build_dirs:
        top = os.path.realpath(top)
        if real == top or real.startswith(top + os.sep):
            return True
    return False


# --- what the build resolved -------------------------------------------------

def cmake_cache_entries(build_dir):
    entries = []
    path = os.path.join(build_dir, "CMakeCache.txt")
    with open(path) as handle:
        for line in handle:
            match = re.match(r"^([A-Za-z0-9_.+-]+):([A-Z]+)=(.*)$", line.rstrip("\n"))
            if match:
                entries.append(match.groups())
    return entries


def config_file_in(directory, package_name):
    for candidate in (f"{package_name}Config.cmake", f"{package_name.lower()}-config.cmake",
                      f"{package_name}-config.cmake"):
        path = os.path.join(directory, candidate)
        if os.path.isfile(path):
            return path
    return None


# CMake probes for these helpers and takes whatever it finds (llvm-ar beside
# clang, say), falling back to binutils, which build-essential brings: what
# they resolved to is a preference, not a dependency.
OPPORTUNISTIC_TOOLS = re.compile(
    r"^CMAKE_(?:[A-Z]+_COMPILER_)?(?:AR|RANLIB|LINKER|NM|OBJCOPY|OBJDUMP|READELF|STRIP|"
    r"ADDR2LINE|DLLTOOL|MT|CLANG_SCAN_DEPS)$")


def build_tree_files(build_dir, build_dirs):
    """(file, where) pairs: config files, libraries and programs CMake found,
    pkg-config modules, every header the compiler read, every shared library
    the built binaries load."""
    found = []
    where = os.path.join(os.path.relpath(build_dir, ROOT), "CMakeCache.txt")
    for name, kind, value in cmake_cache_entries(build_dir):
        if kind == "PATH" and name.endswith("_DIR") and os.path.isdir(value):
            config = config_file_in(value, name[:-len("_DIR")])
            if config and not inside_project(config, build_dirs):
                found.append((config, f"{where}: find_package({name[:-4]})"))
        elif (kind == "FILEPATH" and os.path.isabs(value) and os.path.isfile(value)
              and not OPPORTUNISTIC_TOOLS.match(name)):
            if not inside_project(value, build_dirs):
                found.append((value, f"{where}: {name}"))
        elif kind == "INTERNAL" and name.endswith("_MODULE_NAME") and value:
            pc = subprocess.run(["pkg-config", "--path", value], capture_output=True, text=True)
            if pc.returncode == 0 and pc.stdout.strip():
                found.append((pc.stdout.strip(), f"{where}: pkg_check_modules({value})"))

    if os.path.isfile(os.path.join(build_dir, "build.ninja")):
        deps = subprocess.run(["ninja", "-C", build_dir, "-t", "deps"], capture_output=True,
                              text=True)
        if deps.returncode != 0:
            fail(f"ninja -t deps failed in {build_dir}: {deps.stderr.strip()}")
        target = "?"
        headers = {}
        for line in deps.stdout.splitlines():
            if line and not line.startswith(" "):
                target = line.split(":", 1)[0]
            elif line.strip():
                path = line.strip()
                if not os.path.isabs(path):
                    path = os.path.join(build_dir, path)
                if path not in headers and not inside_project(path, build_dirs):
                    headers[path] = target
        found.extend((path, f"compiling {target}") for path, target in headers.items())

    for directory, _, names in os.walk(build_dir):
        if "CMakeFiles" in directory.split(os.sep):
            continue
        for name in names:
            path = os.path.join(directory, name)
            if not os.access(path, os.X_OK) or os.path.islink(path):
                continue
            with open(path, "rb") as handle:
                if handle.read(4) != b"\x7fELF":
                    continue
            ldd = subprocess.run(["ldd", path], capture_output=True, text=True)
            where = f"loaded by {os.path.relpath(path, ROOT)}"
            for match in re.finditer(r"=>\s+(/\S+)", ldd.stdout):
                found.append((match.group(1), where))
            for match in re.finditer(r"^\s*(\S+) => not found", ldd.stdout, re.M):
                found.append((None, f"{match.group(1)} ({where}) is not installed"))
    return found


# --- programs the scripts call ----------------------------------------------

def strip_shell_comment(line):
    return re.sub(r"(^|\s)#.*$", "", line)


def command_words(line):
    """First words of each command in a shell line."""
    words = []
    for part in re.split(r"\|\||&&|[|;&`]|\$\(|\(", line):
        tokens = part.split()
        index = 0
        while index < len(tokens):
            token = tokens[index]
            if re.match(r"^[A-Za-z_][A-Za-z0-9_]*=", token) or token in PREFIX_WORDS:
                index += 1
                continue
            if token in ("timeout",):
                index += 2
                continue
            if token.startswith("-") and index > 0:
                index += 1
                continue
            words.append(token)
            break
    return words


def script_files():
    files = [os.path.join(ROOT, "Makefile")]
    for top in ("bench", "tests", "scripts", "tools", "fuzz"):
        for directory, _, names in os.walk(os.path.join(ROOT, top)):
            for name in sorted(names):
                if name.endswith((".sh", ".py")):
                    files.append(os.path.join(directory, name))
    return files


def called_programs():
    """(program name, where) for the programs the project's scripts run."""
    calls = []
    for path in script_files():
        relative = os.path.relpath(path, ROOT)
        with open(path) as handle:
            lines = handle.read().splitlines()
        # A line continued with a backslash is one command; keep the numbering.
        for index in range(len(lines) - 1):
            if lines[index].endswith("\\"):
                lines[index + 1] = lines[index][:-1] + " " + lines[index + 1].lstrip()
                lines[index] = ""
        if path.endswith(".py"):
            text = "\n".join(lines)
            for pattern in (r"subprocess\.\w+\(\s*\[\s*[\"']([^\"'\s]+)[\"']",
                            r"shutil\.which\(\s*[\"']([^\"'\s]+)[\"']"):
                for match in re.finditer(pattern, text):
                    line = text.count("\n", 0, match.start()) + 1
                    calls.append((match.group(1), f"{relative}:{line}"))
            continue
        is_makefile = os.path.basename(path) == "Makefile"
        functions = set(re.findall(r"^\s*(?:function\s+)?([A-Za-z_][A-Za-z0-9_-]*)\s*\(\)",
                                   "\n".join(lines), re.M))
        in_heredoc = None
        for number, line in enumerate(lines, 1):
            if in_heredoc:
                if line.strip() == in_heredoc:
                    in_heredoc = None
                continue
            heredoc = re.search(r"<<-?\s*'?\"?([A-Za-z_]+)", line)
            if is_makefile and not line.startswith("\t"):
                continue
            code = strip_shell_comment(line.strip())
            code = re.sub(r"'[^']*'|\"[^\"]*\"", "''", code)  # quoted text is data
            code = re.sub(r"\d*[<>]+&?\d*\S*", " ", code)  # redirections
            code = code.lstrip("@-")
            if is_makefile:  # make's own $(...) expansions; $$( is the shell's
                code = code.replace("$$(", "\0")
                while re.search(r"\$\([^()]*\)", code):
                    code = re.sub(r"\$\([^()]*\)", "$MAKEVAR", code)
                code = code.replace("\0", "$(")
            code = re.sub(r"\$\(\(.*?\)\)|\$\{[^}]*\}", "0", code)  # expansions
            code = re.sub(r"^([A-Za-z_][A-Za-z0-9_]*)=\(.*\)", r"\1=", code)  # arrays
            for word in command_words(code):
                word = word.strip("\"'")
                if (not word or word in SHELL_WORDS or word in functions or "$" in word
                        or "/" in word
                        or not re.match(r"^[A-Za-z0-9_.+-]+$", word)):
                    continue
                calls.append((word, f"{relative}:{number}"))
            if heredoc:
                in_heredoc = heredoc.group(1)
    found = []
    for program, where in calls:
        # Debian's own directories: a copy under /usr/local (pip, make
        # install) shadows the packaged one only on this machine.
        resolved = shutil.which(program, path="/usr/sbin:/usr/bin:/sbin:/bin")
        if resolved:
            found.append((resolved, f"{where} runs {program}"))
        elif not (os.path.exists(os.path.join(ROOT, program))):
            found.append((None, f"{where} runs {program}, which is not installed"))
    return found


# --- files opened by absolute path --------------------------------------------

def absolute_paths_in_code():
    """(path, where) for system paths that the code names in a string literal,
    such as the built-in dataset's directory, when they exist here."""
    found = []
    for top in ("src", "include", "tools", "bench", "tests", "Makefile"):
        start = os.path.join(ROOT, top)
        walk = [(ROOT, [], [top])] if os.path.isfile(start) else os.walk(start)
        for directory, _, names in walk:
            for name in names:
                if not name.endswith((".cc", ".h", ".py", ".sh", ".lua")) and name != "Makefile":
                    continue
                path = os.path.join(directory, name)
                with open(path, errors="replace") as handle:
                    text = handle.read()
                for match in re.finditer(r"[\"'](/(?:usr|etc|opt)/[^\"'\s*?]+)[\"']", text):
                    target = match.group(1)
                    if os.path.exists(target):
                        line = text.count("\n", 0, match.start()) + 1
                        found.append((target, f"{os.path.relpath(path, ROOT)}:{line} names it"))
    return found


# --- Python modules ----------------------------------------------------------

def local_modules():
    names = set()
    for directory, subdirs, files in os.walk(ROOT):
        subdirs[:] = [d for d in subdirs if not d.startswith(".") and not d.startswith("build")]
        for name in files:
            if name.endswith(".py"):
                names.add(name[:-3])
            if name.endswith(".proto"):  # grpc_tools generates <stem>_pb2{,_grpc}
                names.update({name[:-6] + "_pb2", name[:-6] + "_pb2_grpc"})
        names.update(subdirs)
    return names


def imported_modules():
    """(top-level module, where) for every absolute import and `-m module`."""
    imports = []
    for path in script_files():
        if not path.endswith(".py"):
            continue
        relative = os.path.relpath(path, ROOT)
        with open(path) as handle:
            source = handle.read()
        try:
            tree = ast.parse(source, path)
        except SyntaxError as error:
            fail(f"{relative}:{error.lineno}: cannot parse: {error.msg}")
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                for alias in node.names:
                    imports.append((alias.name.split(".")[0], f"{relative}:{node.lineno}"))
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                imports.append((node.module.split(".")[0], f"{relative}:{node.lineno}"))
        for match in re.finditer(r"[\"']-m[\"']\s*,\s*[\"']([A-Za-z0-9_.]+)[\"']", source):
            line = source.count("\n", 0, match.start()) + 1
            imports.append((match.group(1).split(".")[0], f"{relative}:{line}"))
    return imports


def module_files(modules):
    """Where the system interpreter finds each module: a path, "builtin" or None."""
    probe = ("import importlib.util, sys\n"
             "for name in sys.argv[1:]:\n"
             "    if name in sys.builtin_module_names:\n"
             "        print(name, 'builtin'); continue\n"
             "    spec = importlib.util.find_spec(name)\n"
             "    origin = None if spec is None else spec.origin\n"
             "    if spec is not None and origin in (None, 'namespace'):\n"
             "        origin = list(spec.submodule_search_locations)[0]\n"
             "    print(name, origin if origin not in (None, 'built-in', 'frozen') else\n"
             "          ('builtin' if spec is not None else 'missing'))\n")
    # -I: no PYTHONPATH, no user site; only what the system interpreter has.
    out = subprocess.run([SYSTEM_PYTHON, "-I", "-c", probe, *sorted(modules)],
                         capture_output=True, text=True, cwd="/")
    if out.returncode != 0:
        fail(f"{SYSTEM_PYTHON} could not look up modules: {out.stderr.strip()}")
    result = {}
    for line in out.stdout.splitlines():
        name, origin = line.split(" ", 1)
        result[name] = None if origin == "missing" else origin
    return result


def python_files():
    local = local_modules()
    imports = [(name, where) for name, where in imported_modules() if name not in local]
    if not os.path.exists(SYSTEM_PYTHON):
        return [(None, f"{where} imports {name}, but {SYSTEM_PYTHON} is missing")
                for name, where in imports]
    locations = module_files({name for name, _ in imports})
    found = []
    for name, where in imports:
        origin = locations.get(name)
        if origin == "builtin":
            continue
        if origin is None:
            found.append((None, f"{where} imports {name}, which {SYSTEM_PYTHON} cannot find"))
        else:
            found.append((origin, f"{where} imports {name}"))
    return found


# --- Debian's view -----------------------------------------------------------

def owners(paths):
    """Maps each path to the package that owns it (None if dpkg knows none)."""
    def candidates(path):
        seen = []
        for base in (path, os.path.realpath(path)):
            for variant in (base, base[4:] if base.startswith("/usr/") else "/usr" + base):
                if variant not in seen:
                    seen.append(variant)
        return seen

    wanted = sorted({c for p in paths for c in candidates(p)})
    owner_of = {}
    for start in range(0, len(wanted), 2000):
        out = subprocess.run(["dpkg-query", "-S", *wanted[start:start + 2000]],
                             capture_output=True, text=True)
        for line in out.stdout.splitlines():
            if line.startswith("diversion by"):
                continue
            packages, _, path = line.partition(": ")
            first = packages.split(",")[0].strip().split(":")[0]
            owner_of.setdefault(path.strip(), first)
    return {p: next((owner_of[c] for c in candidates(p) if c in owner_of), None) for p in paths}


def installed_closure(listed):
    """Packages that are listed, essential or required, plus everything they
    depend on, as dpkg has them installed."""
    out = subprocess.run(
        ["dpkg-query", "-W", "-f=${Package}\t${Status}\t${Essential}\t${Priority}\t"
         "${Provides}\t${Pre-Depends}, ${Depends}\n"], capture_output=True, text=True)
    installed, provides, depends, base = set(), defaultdict(set), {}, set()
    for line in out.stdout.splitlines():
        fields = line.split("\t")
        if len(fields) < 6 or not fields[1].endswith(" installed"):
            continue
        name = fields[0]
        installed.add(name)
        depends[name] = fields[5]
        if fields[2] == "yes" or fields[3] == "required":
            base.add(name)
        for provided in fields[4].split(","):
            provided = provided.strip().split(" ")[0]
            if provided:
                provides[provided].add(name)
    def satisfiers(name):
        # A real package of that name, else the installed providers of it.
        if name in installed:
            return {name}
        return provides.get(name, set()) & installed

    closure, queue = set(), list(listed | base)
    while queue:
        name = queue.pop()
        if name in closure or name not in installed:
            continue
        closure.add(name)
        for clause in depends.get(name, "").split(","):
            # Only the first alternative counts, as apt installs it on a
            # fresh machine: libtorch's "libblas3 | libblas.so.3" pulls in
            # the reference BLAS there, not the OpenBLAS that is listed.
            first = clause.split("|")[0].strip().split(" ")[0].split(":")[0]
            if first:
                queue.extend(satisfiers(first))
    return closure


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--packages", default=os.path.join(ROOT, "scripts",
                                                           "debian-packages.txt"),
                        help="the package list to check (default: scripts/debian-packages.txt)")
    parser.add_argument("--build-dir", action="append", default=[],
                        help="a configured and built tree to read (repeatable; default: build)")
    args = parser.parse_args()
    for tool in ("dpkg-query", "ldd"):
        if not shutil.which(tool):
            fail(f"{tool} is missing: this check runs on Debian")

    listed = read_package_list(args.packages)
    build_dirs = [os.path.abspath(d) for d in (args.build_dir or [os.path.join(ROOT, "build")])]
    needs = []
    for build_dir in build_dirs:
        if not os.path.isfile(os.path.join(build_dir, "CMakeCache.txt")):
            if args.build_dir:
                fail(f"{build_dir} is not a configured build tree (no CMakeCache.txt)")
            print(f"check-deps: no build tree at {build_dir}; checking scripts and Python only")
            continue
        needs.extend(build_tree_files(build_dir, build_dirs))
    needs.extend(called_programs())
    needs.extend(python_files())
    needs.extend(absolute_paths_in_code())

    unresolved = [where for path, where in needs if path is None]
    owner = owners([path for path, _ in needs if path])
    closure = installed_closure(listed)
    missing = defaultdict(list)
    unowned = []
    for path, where in needs:
        if path is None:
            continue
        package = owner[path]
        if package is None:
            unowned.append(f"{path} ({where}) belongs to no Debian package")
        elif package not in closure:
            missing[package].append(f"{path} ({where})")

    problems = 0
    for package in sorted(missing):
        files = missing[package]
        more = f" and {len(files) - 3} more" if len(files) > 3 else ""
        print(f"check-deps: MISSING {package}: needed by {'; '.join(files[:3])}{more}; "
              f"it is neither in {os.path.relpath(args.packages, ROOT)} nor a dependency "
              f"of a package listed there")
        problems += 1
    for line in unresolved + unowned:
        print(f"check-deps: MISSING {line}")
        problems += 1
    checked = len({path for path, _ in needs if path})
    if problems:
        print(f"check-deps: FAILED: {problems} problem(s) among {checked} files")
        return 1
    print(f"check-deps: OK: {checked} files from {len(set(owner.values()) - {None})} packages, "
          f"all covered by the {len(listed)} listed packages and their dependencies")
    return 0


if __name__ == "__main__":
    sys.exit(main())
