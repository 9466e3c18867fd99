#include "cli_common.h"

#include "jobs/machine.h"

#include <ATen/Parallel.h>

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstdlib>
#include <optional>
#include <sstream>
#include <thread>

namespace vitprobe::cli {
namespace {

/// The number in `text` when all of it is one (strtod's syntax, so "nan" and "inf" too); nullopt otherwise,
/// leaving the complaint to CLI11's conversion.
std::optional<double> parse_number(const std::string& text) {
  if (text.empty()) return std::nullopt;
  char* end = nullptr;
  errno = 0;
  const double value = std::strtod(text.c_str(), &end);
  if (end != text.c_str() + text.size()) return std::nullopt;
  return value;  // ERANGE overflow gives +-HUGE_VAL: refused below as not finite
}

std::string format_number(double value) {
  if (std::isinf(value)) return value > 0 ? "inf" : "-inf";
  if (value == std::floor(value) && std::fabs(value) < 1e15) return std::to_string(static_cast<long long>(value));
  std::ostringstream out;
  out << value;
  return out.str();
}

std::string requirement(double lo, double hi, bool lo_open, bool hi_open) {
  const bool has_lo = std::isfinite(lo), has_hi = std::isfinite(hi);
  const std::string low = (lo_open ? "> " : ">= ") + format_number(lo), high = (hi_open ? "< " : "<= ") + format_number(hi);
  if (has_lo && has_hi && !lo_open && !hi_open) return "between " + format_number(lo) + " and " + format_number(hi);
  if (has_lo && has_hi) return low + " and " + high;
  if (has_lo) return low;
  if (has_hi) return high;
  return "finite";
}

std::string check_number(const std::string& text, double lo, double hi, bool lo_open, bool hi_open,
                         const std::string& extra = "") {
  const auto value = parse_number(text);
  if (!value) return "";
  const std::string rule = requirement(lo, hi, lo_open, hi_open);
  if (!std::isfinite(*value)) return text + " is not a finite number" + (rule == "finite" ? "" : " (must be " + rule + ")");
  const bool ok = (lo_open ? *value > lo : *value >= lo) && (hi_open ? *value < hi : *value <= hi);
  return ok ? "" : text + " must be " + rule + extra;
}

}  // namespace

int max_threads() {
  const unsigned hardware = std::thread::hardware_concurrency();
  return hardware == 0 ? 1024 : static_cast<int>(std::min(4u * hardware, 1024u));
}

CLI::Validator number_in(double lo, double hi, bool lo_open, bool hi_open, std::string description) {
  if (description.empty()) {
    if (std::isfinite(lo) && std::isfinite(hi)) {
      description = (lo_open ? "(" : "[") + format_number(lo) + ", " + format_number(hi) + (hi_open ? ")" : "]");
    } else if (lo == 0 && !std::isfinite(hi)) {
      description = lo_open ? "POSITIVE" : "NONNEGATIVE";
    } else {
      description = requirement(lo, hi, lo_open, hi_open) == "finite" ? "FINITE" : requirement(lo, hi, lo_open, hi_open);
    }
  }
  return CLI::Validator([=](std::string& text) { return check_number(text, lo, hi, lo_open, hi_open); }, description);
}

CLI::Validator positive(double hi) { return number_in(0, hi, true, false); }

CLI::Validator non_negative(double hi) { return number_in(0, hi); }

CLI::Validator finite() {
  const double inf = std::numeric_limits<double>::infinity();
  return number_in(-inf, inf);
}

CLI::Validator thread_count(int lo) {
  const std::string extra = " (at most 4x this machine's " + std::to_string(std::thread::hardware_concurrency()) +
                            " hardware threads, and 1024)";
  return CLI::Validator(
      [lo, extra](std::string& text) { return check_number(text, lo, max_threads(), false, false, extra); },
      "[" + std::to_string(lo) + ", 4x CPUs]");
}

CLI::Validator rgb_triplet(bool positive) {
  return CLI::Validator(
      [positive](std::string& text) -> std::string {
        std::stringstream stream(text);
        std::string item;
        int count = 0;
        while (std::getline(stream, item, ',')) {
          ++count;
          const auto value = parse_number(item);
          if (!value) return "'" + text + "' must be three numbers R,G,B";
          if (!std::isfinite(*value)) return "'" + text + "': " + item + " is not a finite number";
          if (positive && *value <= 0) return "'" + text + "': " + item + " must be > 0";
        }
        if (count != 3 || (!text.empty() && text.back() == ',')) return "'" + text + "' must be three numbers R,G,B";
        return "";
      },
      positive ? "POSITIVE R,G,B" : "FINITE R,G,B");
}

void add_device_option(CLI::App& app, std::string& device) {
  app.add_option("--device", device, "Device: cpu, cuda or cuda:N (checked before any work)")
      ->capture_default_str()
      ->check(CLI::Validator([](std::string& value) { return device_problem(value); }, "DEVICE"));
}

void add_load_options(CLI::App& app, LoadOptions& options) {
  app.add_option("--format", options.format, "Checkpoint key map: auto or one of timm, mae, dino, ibot, mocov3, "
                                             "dinov2, ijepa, torchvision, beit (simmim: the same)")
      ->capture_default_str()
      ->check(CLI::IsMember(format_names()));
  app.add_option("--arch", options.arch, "Architecture preset giving the head count, e.g. vit_base_patch16");
  app.add_option("--num-heads,--heads", options.num_heads,
                 "Attention heads (0: from --arch, metadata, or width/64 convention)")
      ->capture_default_str()
      ->check(number_in(0, 4096));
  app.add_option("--img-size", options.img_size, "Input size; pos_embed is resampled when it differs (0: native)")
      ->capture_default_str()
      ->check(number_in(0, kMaxImageSide));
  app.add_option("--dtype", options.dtype, "Compute dtype")->capture_default_str()->check(CLI::IsMember({"fp32", "bf16"}));
  add_device_option(app, options.device);
  app.add_option("--backend", options.backend, "Encoder implementation: auto (fast where built), reference (libtorch), "
                                               "fast (oneDNN)")
      ->capture_default_str()
      ->check(CLI::IsMember({"auto", "reference", "fast"}));
  app.add_flag("--allow-nonfinite", options.allow_nonfinite,
               "Load weights holding NaN or inf instead of refusing the checkpoint");
}

PreprocessSettings PreprocessFlags::settings() const {
  PreprocessSettings settings;
  if (mean_option && mean_option->count()) settings.mean = parse_triplet(mean, "--mean");
  if (std_option && std_option->count()) settings.std = parse_triplet(std, "--std");
  if (resize_option && resize_option->count()) settings.resize = resize;
  if (crop_option && crop_option->count()) settings.crop = crop;
  if (interpolation_option && interpolation_option->count()) settings.interpolation = interpolation;
  return settings;
}

void add_preprocess_options(CLI::App& app, PreprocessFlags& flags) {
  flags.mean_option = app.add_option("--mean", flags.mean, "Normalisation mean R,G,B (else checkpoint metadata)")
                          ->default_str("0.485,0.456,0.406")
                          ->check(rgb_triplet(false));
  flags.std_option = app.add_option("--std", flags.std, "Normalisation std R,G,B (else checkpoint metadata)")
                         ->default_str("0.229,0.224,0.225")
                         ->check(rgb_triplet(true));
  flags.resize_option = app.add_option("--resize", flags.resize, "Resize the short side to N before cropping")
                            ->default_str("crop/0.875 (256 for 224)")
                            ->check(number_in(1, kMaxImageSide));
  flags.crop_option = app.add_option("--crop", flags.crop, "Center crop size")->default_str("model input size (224)")
                          ->check(number_in(1, kMaxImageSide));
  flags.interpolation_option = app.add_option("--interpolation", flags.interpolation, "Resize filter")
                                   ->default_str("bicubic")
                                   ->check(CLI::IsMember({"bicubic", "bilinear"}));
}

CLI::Option* add_analysis_encoder_options(CLI::App& app, LoadOptions& load, PreprocessFlags& preprocess, int& threads) {
  add_load_options(app, load);
  auto* dtype = app.get_option("--dtype");
  dtype->default_str("bf16 where the CPU has avx512_bf16/amx_bf16, else fp32");
  add_preprocess_options(app, preprocess);
  add_threads_option(app, threads);
  return dtype;
}

void add_analysis_data_options(CLI::App& app, DatasetSpec& data, std::string& class_names) {
  app.add_option("--data", data.text, analysis_dataset_help())->required();
  app.add_option("--split", data.split, "Split")->capture_default_str()->check(CLI::IsMember({"train", "val", "test"}));
  app.add_option("--limit", data.limit, "Use N images (seeded shuffle, class-balanced; 0: all)")
      ->capture_default_str()
      ->check(non_negative());
  app.add_option("--seed", data.seed, "Seed of --limit")->capture_default_str();
  app.add_option("--class-names", class_names, "filelist data: file with one class name per integer label");
}

void add_threads_option(CLI::App& app, int& threads) {
  app.add_option("--threads", threads, "Compute threads (0: all cores)")->capture_default_str()->check(thread_count());
}

void apply_threads(int threads) {
  at::set_num_threads(threads > 0 ? threads : default_threads_per_process());
}

void add_dist_options(CLI::App& app, DistOptions& options) {
  const char* group = "Distributed (torchrun-style variables RANK, WORLD_SIZE, MASTER_ADDR, MASTER_PORT work too)";
  app.add_option("--rank", options.rank, "This process's rank")->default_str("$RANK or 0")->check(number_in(0, 65535))->group(group);
  app.add_option("--world-size", options.world_size, "Number of ranks")->default_str("$WORLD_SIZE or 1")->check(number_in(1, 65536))->group(group);
  app.add_option("--master", options.master, "Rendezvous ADDR:PORT of rank 0")
      ->default_str("$MASTER_ADDR:$MASTER_PORT")
      ->group(group);
  app.add_option("--dist-timeout", options.timeout_s, "Seconds to wait for the other ranks (joining, each collective)")
      ->capture_default_str()
      ->check(positive())
      ->group(group);
}

bool prints_output(const DistOptions& options) {
  try {
    return resolve_dist_options(options).rank == 0;
  } catch (const std::exception&) {
    return true;
  }
}

}  // namespace vitprobe::cli
