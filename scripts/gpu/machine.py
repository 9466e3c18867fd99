"""What the machine of a gpu-check run has, as JSON on stdout: GPUs and driver (nvidia-smi), torch and what it
sees, the CUDA compiler, CMake, ninja, the C++ compiler, cores, CPU model. A missing tool is recorded as such."""
import json
import os
import platform
import shutil
import subprocess


def first_line(command):
    if shutil.which(command[0]) is None:
        return f"{command[0]}: not found"
    result = subprocess.run(command, capture_output=True, text=True)
    text = (result.stdout or result.stderr).strip().splitlines()
    return text[-1] if command[0] == "nvcc" and text else (text[0] if text else f"exit {result.returncode}")


def cpu_model():
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor()


def torch_info():
    try:
        import torch
    except Exception as error:  # noqa: BLE001 - the finding is that torch does not import
        return {"error": f"import torch: {error}"}
    info = {"version": torch.__version__, "cuda": torch.version.cuda, "cuda_available": torch.cuda.is_available(),
            "cuda_devices": torch.cuda.device_count(), "cmake_prefix_path": torch.utils.cmake_prefix_path,
            "nccl": None, "cudnn": None, "devices": []}
    if info["cuda_available"]:
        info["nccl"] = ".".join(map(str, torch.cuda.nccl.version()))
        info["cudnn"] = torch.backends.cudnn.version()
        for index in range(info["cuda_devices"]):
            props = torch.cuda.get_device_properties(index)
            info["devices"].append({"name": props.name, "capability": f"{props.major}.{props.minor}",
                                    "memory_gib": round(props.total_memory / 2**30, 1),
                                    "multiprocessors": props.multi_processor_count})
    return info


def main():
    out = {
        "host": platform.node(), "cores": os.cpu_count(), "cpu": cpu_model(), "python": platform.python_version(),
        "nvidia_smi": first_line(["nvidia-smi", "--query-gpu=name,driver_version,memory.total", "--format=csv,noheader"]),
        "nvcc": first_line(["nvcc", "--version"]),
        "cmake": first_line(["cmake", "--version"]),
        "ninja": first_line(["ninja", "--version"]),
        "cxx": first_line(["c++", "--version"]),
        "dpkg_deb": first_line(["dpkg-deb", "--version"]),
        "pkg_config": shutil.which("pkg-config") or "not found",
        "torch": torch_info(),
    }
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
