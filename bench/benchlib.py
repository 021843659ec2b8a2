"""What the benchmarks in bench/ share: where things live, building llama.cpp's tools from the pinned
PyPI source distribution, and describing the machine. Standard library only."""
import os
import shutil
import statistics
import subprocess
import sys
import tarfile
import time
from pathlib import Path

LLAMACPP_VERSION = "0.3.36"  # PyPI llama-cpp-python, the same pin as scripts/make-llamacpp-fixtures
REPO = Path(__file__).resolve().parent.parent
CACHE = Path(os.environ.get("TERN_LLAMACPP_CACHE", Path.home() / ".cache/tern/llamacpp"))
MODELS = Path(os.environ.get("TERN_MODELS", Path.home() / ".cache/tern/models"))
DEFAULT_MODEL = MODELS / "SmolLM2-135M-Instruct.Q4_1.gguf"

_tool = Path(sys.argv[0]).name


def log(msg):
    print(f"{_tool}: {msg}", file=sys.stderr, flush=True)


def fail(msg):
    log(f"error: {msg}")
    sys.exit(1)


def tern_binary(path=None):
    """The tern executable: `path`, else $TERN_BUILD_DIR/bin/tern (relative to the repository), else build/."""
    exe = Path(path) if path else REPO / os.environ.get("TERN_BUILD_DIR", "build") / "bin/tern"
    if not os.access(exe, os.X_OK):
        fail(f"{exe} is not an executable (build tern, or pass --tern)")
    return exe


def llamacpp_source():
    """vendor/llama.cpp of the extracted sdist, downloading and extracting it if needed."""
    root = CACHE / f"llama_cpp_python-{LLAMACPP_VERSION}"
    src = root / "vendor/llama.cpp"
    if (src / "CMakeLists.txt").is_file():
        return src
    CACHE.mkdir(parents=True, exist_ok=True)
    tarball = CACHE / f"llama_cpp_python-{LLAMACPP_VERSION}.tar.gz"
    if not tarball.is_file():
        log(f"downloading the llama-cpp-python=={LLAMACPP_VERSION} source distribution (about 75 MiB)")
        subprocess.run([sys.executable, "-m", "pip", "download", "--quiet", "--disable-pip-version-check",
                        "--no-binary", ":all:", "--no-deps", "-d", str(CACHE),
                        f"llama-cpp-python=={LLAMACPP_VERSION}"], check=True)
    log(f"extracting {tarball.name}")
    with tarfile.open(tarball) as tar:
        if hasattr(tarfile, "data_filter"):
            tar.extractall(CACHE, filter="data")
        else:
            tar.extractall(CACHE)
    if not (src / "CMakeLists.txt").is_file():
        fail(f"{tarball} has no vendor/llama.cpp")
    return src


def build_llamacpp(target, build_dir, jobs, server=False, amx=True):
    """Builds one llama.cpp tool (llama-bench, llama-server) in CACHE/build_dir: Release, GGML_NATIVE,
    static, no network or TLS; amx=False turns ggml's AMX kernels off (in CACHE/build_dir-noamx, see
    llamacpp_peer). Returns the executable."""
    src = llamacpp_source()
    build = CACHE / (build_dir if amx else build_dir + "-noamx")
    # GGML_NATIVE compiles ggml's AMX kernels wherever -march=native enables AMX, whatever the
    # GGML_AMX_* options say: the compiler's AMX flags are turned off (explicit -mno-* win over -march).
    no_amx_flags = "-mno-amx-tile -mno-amx-int8 -mno-amx-bf16"
    no_amx = [] if amx else ["-DGGML_AMX_TILE=OFF", "-DGGML_AMX_INT8=OFF", "-DGGML_AMX_BF16=OFF",
                             f"-DCMAKE_C_FLAGS={no_amx_flags}", f"-DCMAKE_CXX_FLAGS={no_amx_flags}"]
    exe = build / "bin" / target
    if not (build / "CMakeCache.txt").is_file():
        log(f"configuring llama.cpp in {build}")
        gen = ["-G", "Ninja"] if shutil.which("ninja") else []
        subprocess.run(["cmake", "-S", str(src), "-B", str(build), *gen,
                        "-DCMAKE_BUILD_TYPE=Release", "-DGGML_NATIVE=ON", "-DBUILD_SHARED_LIBS=OFF",
                        "-DLLAMA_BUILD_TOOLS=ON", "-DLLAMA_BUILD_COMMON=ON", "-DLLAMA_BUILD_TESTS=OFF",
                        "-DLLAMA_BUILD_EXAMPLES=OFF", f"-DLLAMA_BUILD_SERVER={'ON' if server else 'OFF'}",
                        "-DLLAMA_BUILD_APP=OFF", "-DLLAMA_CURL=OFF", "-DLLAMA_OPENSSL=OFF", *no_amx],
                       check=True, stdout=subprocess.DEVNULL)
    if not exe.is_file():
        log(f"building {target} with -j{jobs} (several minutes on 2 cores)")
    r = subprocess.run(["cmake", "--build", str(build), "-j", str(jobs), "--target", target],
                       stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    if r.returncode != 0:
        sys.stderr.write(r.stdout[-4000:])
        fail(f"building {target} failed")
    return exe


def cpu_has_amx():
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("flags"):
                return "amx_int8" in line.split()
    except OSError:
        pass
    return False


def llamacpp_peer(target, build_dir, jobs, model, server=False):
    """The llama.cpp build to compare with: GGML_NATIVE as built by build_llamacpp, unless this CPU has
    AMX and that build's llama-bench dies on `model` (ggml's AMX matmul segfaults on some Sapphire
    Rapids VMs, ggml-org/llama.cpp#20824, unfixed in the pinned version): then the same build with the
    AMX kernels off, which is what a user of that machine could run. Returns (executable, note or None)."""
    exe = build_llamacpp(target, build_dir, jobs, server)
    if not cpu_has_amx():
        return exe, None
    bench = exe if target == "llama-bench" else build_llamacpp("llama-bench", "bench-build", jobs)
    probe = subprocess.run([str(bench), "-m", str(model), "-p", "8", "-n", "1", "-r", "1", "-t", "1"],
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    if probe.returncode >= 0:
        return exe, None
    note = (f"llama.cpp's AMX build died with signal {-probe.returncode} on {Path(model).name} "
            "(ggml-org/llama.cpp#20824); the peer is the same build with its AMX kernels compiled out")
    log(note)
    return build_llamacpp(target, build_dir, jobs, server, amx=False), note


def summary(values):
    return {"median": statistics.median(values), "min": min(values), "max": max(values), "runs": values}


def busy_cpus(seconds=1.0):
    """CPUs' worth of work other processes did over the last `seconds` (from /proc/stat)."""
    def sample():
        with open("/proc/stat") as f:
            v = [int(x) for x in f.readline().split()[1:]]
        return sum(v), v[3] + v[4]  # total, idle + iowait
    t0, i0 = sample()
    time.sleep(seconds)
    t1, i1 = sample()
    return len(os.sched_getaffinity(0)) * (1 - (i1 - i0) / max(1, t1 - t0))


def cpu_name():
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return "unknown"
