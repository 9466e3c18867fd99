"""Dry run of gpu-check: reads `ninja -t deps` on stdin and fails when the build read a header from /usr that
belongs to none of the packages a compiler-only machine has (libc, the kernel headers, GCC and libstdc++): such
a header would be missing on the GPU machine, where only the unpacked prefix provides the -dev packages."""
import subprocess
import sys

TOOLCHAIN = ("libc6-dev", "linux-libc-dev", "libstdc++", "libgcc", "gcc-", "g++-", "libgomp", "libcrypt-dev")


def main():
    headers = set()
    for line in sys.stdin:
        path = line.strip()
        if path.startswith("/usr/") and not path.startswith("/usr/local/cuda"):
            headers.add(path)
    print(f"check_headers: {len(headers)} headers under /usr (CUDA toolkit excluded)")
    result = subprocess.run(["dpkg", "-S"] + sorted(headers), capture_output=True, text=True)
    owners = {}
    for line in result.stdout.splitlines():
        packages, path = line.split(": ", 1)
        owners[path] = packages
    outside = sorted(f"{path} ({owners.get(path, 'no package')})" for path in headers
                     if not any(owners.get(path, "").startswith(t) or f", {t}" in owners.get(path, "")
                                for t in TOOLCHAIN))
    if outside:
        print(f"check_headers: {len(outside)} headers from /usr outside the toolchain (missing on the GPU machine):")
        print("  " + "\n  ".join(outside[:40]))
        return 1
    print("check_headers: every header from /usr belongs to libc, the kernel headers, GCC or libstdc++")
    return 0


if __name__ == "__main__":
    sys.exit(main())
